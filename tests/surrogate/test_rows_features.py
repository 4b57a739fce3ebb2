"""One builder for every surrogate row: the optimizer's online rows, meta-training's and evaluation's agree."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from hubtune.core.metafeatures import DatasetMetaFeatures
from hubtune.metadata import DatasetRuns
from hubtune.optim.quicktune import QuickTune, QuickTuneSettings, records_from_scores
from hubtune.protocol.steps import Step, StepResult
from hubtune.space.config import Config
from hubtune.surrogate.cache import load_default_surrogate
from hubtune.surrogate.evaluate import _rows as evaluate_rows
from hubtune.surrogate.features import (
    N_CURVE,
    REFERENCE_EPOCHS,
    FeatureError,
    curve_features,
    curve_table,
    fidelity_block,
    fidelity_features,
)
from hubtune.surrogate.metatrain import MetaTrainSettings, _episode, _prepare

SCORES = [0.31, 0.42, 0.5, 0.5, 0.57, 0.61, 0.6, 0.66, 0.7, 0.71, 0.69, 0.74]
CONFIG = Config(model="resnet18", lr=3e-4, batch_size=64)
META = DatasetMetaFeatures(5000, 20, 128.0, 3)


def _reference_curve(prefix: list[float], scale: float) -> np.ndarray:
    """The curve statistics written out one by one (the definition the table vectorises)."""
    out = np.zeros(N_CURVE, dtype=np.float32)
    if not prefix:
        return out
    s = np.asarray(prefix, dtype=np.float64)
    back = min(3, len(s) - 1)
    out[:5] = [1.0, s[-1], s.max(), s[0], s[-3:].mean()]
    out[5] = (s[-1] - s[-1 - back]) / back * 10.0 if back else 0.0
    out[5] /= scale
    return out


@pytest.mark.parametrize("schedule", [None, 8, 20, 100])
def test_curve_table_equals_the_per_prefix_statistics_bit_for_bit(schedule):
    rng = np.random.default_rng(0)
    scale = 1.0 if schedule is None else REFERENCE_EPOCHS / schedule
    curves = rng.random((20, 30))
    table = curve_table(curves, schedule)
    assert table.shape == (20, 31, N_CURVE) and table.dtype == np.float32
    for i in range(20):
        for p in range(31):
            ref = _reference_curve(list(curves[i, :p]), scale)
            assert table[i, p].tobytes() == ref.tobytes()
    assert curve_features(curves[3, :7], schedule).tobytes() == table[3, 7].tobytes()


def test_curve_table_counts_non_finite_scores_as_zero():
    with_nan = curve_table(np.array([0.5, np.nan, 0.7, np.inf]))
    assert np.array_equal(with_nan, curve_table(np.array([0.5, 0.0, 0.7, 0.0])))


def test_fidelity_block_is_the_scaled_formula():
    rows = fidelity_block([0, 3, 7], [1, 4, 8], schedule_epochs=8)
    for (p, t), row in zip([(0, 1), (3, 4), (7, 8)], rows, strict=True):
        e, q = t * 6.25, p * 6.25
        want = np.asarray([e / 50, math.log(max(e, 1.0)) / math.log(50), q / 50, (e - q) / 50], dtype=np.float32)
        assert row.tobytes() == want.tobytes()
    # epochs below one meta-dataset epoch (a 100-epoch schedule) clamp the log at 0
    assert fidelity_block(0, 1, schedule_epochs=100)[0, 1] == 0.0
    with pytest.raises(FeatureError):
        fidelity_features(2, 2)


def _online_rows(schedule: int | None, prefix: int, target: int) -> tuple[np.ndarray, np.ndarray]:
    """QuickTune's own rows after being told ``prefix`` epochs: the query row of a step
    to ``target`` (its only horizon) and its observation rows."""
    qt = QuickTune(load_default_surrogate(), max_epochs=len(SCORES), candidates=[("r0", CONFIG)],
                   meta_features=META, descriptors={"resnet18": None},
                   settings=QuickTuneSettings(schedule_epochs=schedule, horizons=(target - prefix,)))
    if prefix:
        step = Step("r0", CONFIG, prefix)
        qt.tell(StepResult(step, records_from_scores(SCORES[:prefix], [10.0] * prefix), "ok", 10.0 * prefix))
    step = qt.ask()
    assert step is not None and step.to_epoch == target
    x_obs, _ = qt._observations()
    return qt.pool.trials[0].belief[1], x_obs


@pytest.mark.parametrize("schedule", [None, 20])
def test_online_meta_training_and_evaluation_rows_are_identical(schedule):
    runs = DatasetRuns.from_curves("toy", ["r0"], [CONFIG], [SCORES], [[10.0] * len(SCORES)],
                                   meta_features=META, schedule_epochs=schedule)
    sur = load_default_surrogate()
    prep = _prepare("toy", runs, sur.features, {"resnet18": None})
    x, _ = _episode(np.random.default_rng(0), prep, MetaTrainSettings(runs_per_episode=1, pairs_per_run=40))
    x = x.numpy()
    dim = prep.static.shape[1]
    scale = 1.0 if schedule is None else REFERENCE_EPOCHS / schedule
    pairs = {(round(r[dim + 2] * 50 / scale), round(r[dim] * 50 / scale)): r for r in x}
    assert len(pairs) >= 8
    for (p, t), row in sorted(pairs.items())[:12]:
        online_query, online_obs = _online_rows(schedule, p, t)
        assert online_query.tobytes() == row.tobytes(), (p, t)
        ev = evaluate_rows(sur, runs, np.array([0]), np.array([p]), np.array([t]), lambda m: None)
        assert ev[0].tobytes() == row.tobytes(), (p, t)
        if t == p + 1 and p > 0:
            # the observed epoch p was asked for after p - 1 epochs, as meta-training's (p - 1, p)
            obs = evaluate_rows(sur, runs, np.array([0]), np.array([p - 1]), np.array([p]), lambda m: None)
            assert any(r.tobytes() == obs[0].tobytes() for r in online_obs)


def test_evaluation_rows_zero_non_finite_scores_as_the_optimizer_does():
    """A NaN inside a prefix is recorded as 0 online; held-out evaluation used to put NaN in the row."""
    sur = load_default_surrogate()
    scores = np.array([[0.4, np.nan, 0.6, 0.65, np.nan]])
    runs = SimpleNamespace(configs=[CONFIG], scores=scores, meta_features=META, schedule_epochs=None)
    ev = evaluate_rows(sur, runs, np.array([0]), np.array([4]), np.array([5]), lambda m: None)
    assert np.isfinite(ev).all()
    qt = QuickTune(sur, max_epochs=5, candidates=[("r0", CONFIG)], meta_features=META,
                   descriptors={"resnet18": None}, settings=QuickTuneSettings(horizons=(1,)))
    qt.tell(StepResult(Step("r0", CONFIG, 4), records_from_scores(scores[0, :4], [1.0] * 4), "ok", 4.0))
    qt.ask()
    assert qt.pool.trials[0].belief[1].tobytes() == ev[0].tobytes()
