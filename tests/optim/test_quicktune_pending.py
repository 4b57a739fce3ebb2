"""Quick-Tune with steps still running: "kriging believer" fantasies for pending steps."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from hubtune.bench.simulator import SimulatedEvaluator
from hubtune.optim.quicktune import QuickTune, QuickTuneSettings
from tests.helpers.quicktune import SHARED, TEST, needs_shared


@lru_cache(maxsize=1)
def _runs():
    from hubtune.metadata import load_metadata

    return load_metadata(SHARED)[TEST]


def _optimizer(**settings) -> QuickTune:
    from hubtune.surrogate.cache import load_default_surrogate

    runs = _runs()
    return QuickTune(
        load_default_surrogate(), max_epochs=50,
        candidates=list(zip(runs.run_ids, runs.configs, strict=True)),
        meta_features=runs.meta_features, descriptors={}, seed=0,
        settings=QuickTuneSettings(**settings),
    )


def _warm(qt: QuickTune, steps: int = 6) -> SimulatedEvaluator:
    ev = SimulatedEvaluator(_runs())
    for _ in range(steps):
        qt.tell(ev.advance(qt.ask()))
    return ev


@needs_shared
def test_pending_step_is_believed_at_its_predicted_mean():
    qt = _optimizer()
    ev = _warm(qt)
    x, y = qt._observations()
    assert qt._believe_pending(x, y)[0] is x  # nothing pending: unchanged
    step = qt.ask()
    xb, yb = qt._believe_pending(x, y)
    assert len(yb) == len(y) + 1 and yb[-1] == pytest.approx(step.info.get("gp_mean", step.info["mean"]))
    row = xb[-1:]
    _, std_before = qt.surrogate.predict(x, y, row)
    mean_after, std_after = qt.surrogate.predict(xb, yb, row)
    # the GP now treats the running step as observed (down to its noise level), same mean
    assert std_after[0] < 0.8 * std_before[0]
    assert mean_after[0] == pytest.approx(step.info["mean"], abs=0.02)
    # a second pending step adds a second fantasy; a told step has none
    second = qt.ask()
    assert second.trial_id != step.trial_id
    assert len(qt._believe_pending(x, y)[1]) == len(y) + 2
    qt.tell(ev.advance(step))
    x2, y2 = qt._observations()
    assert len(qt._believe_pending(x2, y2)[1]) == len(y2) + 1


@needs_shared
def test_believer_can_be_switched_off():
    qt = _optimizer(believe_pending=False)
    _warm(qt, 3)
    x, y = qt._observations()
    qt.ask()
    assert len(qt._believe_pending(x, y)[1]) == len(y)
    assert np.isfinite(qt.ask().info["acq"])  # still proposes while a step is pending
