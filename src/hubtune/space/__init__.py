"""The typed Config schema and the search space it is sampled from.

``SearchSpace`` (which needs ConfigSpace) loads on first use, so importing the
Config schema stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from hubtune.space.config import Config, ConfigError, hyperparameter_names

__all__ = ["Config", "ConfigError", "SearchSpace", "V6_CHOICES", "hyperparameter_names"]


def __getattr__(name: str) -> Any:
    if name in ("SearchSpace", "V6_CHOICES"):
        return getattr(importlib.import_module("hubtune.space.searchspace"), name)
    raise AttributeError(f"module 'hubtune.space' has no attribute {name!r}")
