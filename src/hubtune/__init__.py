"""hubtune: which pretrained model to finetune, and how, by meta-learned gray-box Bayesian optimisation.

The public API, importable from here (heavy modules load on first use)::

    from hubtune import HubTuner, load, SearchResult
    result = HubTuner(hub="offline", budget="10m", out="runs/x").fit("fashion-mnist:1000")
    result = load("runs/x")            # later: the same run's result (finished or interrupted)
    result.predict(["photo.jpg"])      # classify with its exported model
    result.leaderboard()               # one row per trial

See docs/api.md.
"""

from __future__ import annotations

import importlib
from typing import Any

from hubtune.space.config import Config, ConfigError

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily: `import hubtune` stays cheap)
_LAZY = {
    "HubTuner": "hubtune.tuner.hubtuner",
    "SearchResult": "hubtune.tuner.results",
    "load": "hubtune.tuner.results",
    "RunSettings": "hubtune.tuner.hubtuner",
    "RunError": "hubtune.core.errors",
    "SearchSpace": "hubtune.space.searchspace",
    "get_method": "hubtune.optim.registry",
    "list_methods": "hubtune.optim.registry",
    "load_metadata": "hubtune.metadata",
}

__all__ = ["Config", "ConfigError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hubtune' has no attribute {name!r}")
