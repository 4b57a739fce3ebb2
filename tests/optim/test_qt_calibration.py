"""Quick-Tune's per-task calibration of new-config / continuation predictions (issue #13)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hubtune.optim.quicktune import QuickTune, QuickTuneSettings, records_from_scores
from hubtune.optim.quicktune.calibration import (
    MIN_SCALE,
    Z_CLIP,
    apply_calibration,
    fit_calibration,
    predictive_sd,
    standardized_residual,
)
from hubtune.optim.quicktune.optimizer import score_prediction, step_residual
from hubtune.protocol.steps import StepResult
from hubtune.surrogate.features import assemble_rows
from tests.helpers.quicktune import TEST, meta, needs_shared


def test_no_residuals_means_no_correction():
    assert fit_calibration([], 5.0) == (0.0, 1.0)


def test_few_residuals_change_little_the_prior_is_not_forgotten():
    # the new-domain miss: predicted 59 +- 21 %, observed 15 % (z ~ -2.1)
    z = standardized_residual(0.15, 0.59, 0.21)
    assert z == pytest.approx(-2.095, abs=1e-3)
    one = fit_calibration([z], 5.0)
    many = fit_calibration([z] * 40, 5.0)
    # one miss moves the mean by a sixth of the way; forty nearly all the way
    assert one[0] == pytest.approx(z / 6.0)
    assert many[0] == pytest.approx(z * 40 / 45)
    assert abs(one[0]) < abs(many[0]) < abs(z)
    # the scale is the root-mean-square miss: a consistent miss also widens the std
    assert many[1] == pytest.approx(np.sqrt((5.0 + 40 * z * z) / 45.0))
    assert 1.0 < one[1] < many[1]


def test_spread_residuals_widen_and_tight_residuals_narrow_the_std():
    wide = fit_calibration([3.0, -3.0] * 20, 5.0)
    tight = fit_calibration([0.1, -0.1] * 20, 5.0)
    assert wide[0] == pytest.approx(0.0) and wide[1] > 2.5
    assert tight[0] == pytest.approx(0.0) and MIN_SCALE <= tight[1] < 0.5
    # never below the floor, whatever the residuals
    assert fit_calibration([0.0] * 1000, 1.0)[1] == MIN_SCALE
    assert wide[1] == pytest.approx(np.sqrt((5.0 + 40 * 9.0) / 45.0))


def test_one_wild_residual_is_clipped():
    assert standardized_residual(0.9, 0.1, 1e-4) == Z_CLIP
    assert standardized_residual(0.0, 0.9, 1e-4) == -Z_CLIP
    assert standardized_residual(float("nan"), 0.5, 0.1) is None
    assert standardized_residual(0.5, 0.5, 0.0) is None


def test_apply_calibration_only_where_masked():
    mean, std = np.array([0.6, 0.6]), np.array([0.2, 0.02])
    m, s = apply_calibration(mean, std, -1.0, 1.5, np.array([True, False]))
    assert m.tolist() == pytest.approx([0.4, 0.6]) and s.tolist() == pytest.approx([0.3, 0.02])


def test_a_steps_residual_is_taken_at_its_target_epoch_with_observation_noise():
    info = {"mean": 0.5, "std": 0.03, "noise_std": 0.04}
    pred = score_prediction(info)
    assert pred == pytest.approx((0.5, 0.05))
    assert predictive_sd(0.03, 0.04 ** 2) == pytest.approx(0.05)
    records = [(3, 0.2, 1.0), (4, 0.4, 1.0)]
    assert step_residual(records, 4, pred) == pytest.approx(-2.0)
    # a step that stopped short of its target has no residual at the target
    assert step_residual(records, 6, pred) is None
    assert step_residual(records, 4, None) is None
    # the calibration is fitted on the GP's own predictions, not the calibrated ones
    assert score_prediction({"mean": 0.3, "std": 0.1, "gp_mean": 0.5, "gp_std": 0.03})[0] == 0.5
    assert score_prediction({"why": "anchor"}) is None


def _optimizer(**settings) -> QuickTune:
    from hubtune.surrogate.cache import load_default_surrogate

    runs = meta()[TEST]
    return QuickTune(load_default_surrogate(), max_epochs=50,
                     candidates=list(zip(runs.run_ids, runs.configs, strict=True)),
                     meta_features=runs.meta_features, descriptors={}, seed=0,
                     settings=QuickTuneSettings(**settings))


def _tell_miss(qt: QuickTune, step, by: float) -> None:
    """Tell ``step`` as scoring ``by`` predictive stds below its prediction at every epoch."""
    mean, sd = score_prediction(step.info)
    k = step.to_epoch - qt.pool[step.trial_id].epoch
    score = float(np.clip(mean - by * sd, 0.0, 1.0))
    rec = records_from_scores([score] * k, [10.0] * k, qt.pool[step.trial_id].epoch)
    qt.tell(StepResult(step, rec, "ok", seconds=10.0 * k))


@needs_shared
def test_a_consistent_miss_moves_this_tasks_new_config_predictions():
    # On this table the GP's new-config predictions are low (about 0.2 +- 0.23): a task
    # where every config's first step scores 1.5 predictive stds above its prediction
    # (and its continuations fall short, so the search keeps starting new configs)
    qt = _optimizer(calibrate_new=5.0, calibrate_continue=None)
    off = _optimizer(calibrate_new=None, calibrate_continue=None)
    for _ in range(40):
        if len(qt._residuals["start"]) >= 4:
            break
        step = qt.ask()
        assert step is not None
        _tell_miss(qt, step, -1.5 if qt.pool[step.trial_id].epoch == 0 else 2.0)
    offset, scale = qt.calibration("start")
    res = qt._residuals["start"]
    n = len(res)
    assert n >= 4 and res == pytest.approx([1.5] * n, abs=1e-6)
    # shrunk: n residuals against 5 pseudo-residuals of a calibrated GP
    assert offset == pytest.approx(1.5 * n / (n + 5.0)) and scale == pytest.approx(
        np.sqrt((5.0 + n * 2.25) / (n + 5.0)))
    assert qt.calibration("resume") == (0.0, 1.0)  # continuations: not switched on
    assert off.calibration("start") == (0.0, 1.0)
    # on by default, weight 5 (with installments, the leave-one-out replay's choice)
    assert (QuickTuneSettings().calibrate_new, QuickTuneSettings().calibrate_continue) == (5.0, 5.0)
    # a new-config prediction is now the GP's, moved up by offset GP-stds and widened
    x = qt.pool.static[:3]
    rows = assemble_rows(x, np.zeros(3, dtype=int), np.ones(3, dtype=int),
                         np.stack([t.curve for t in qt.pool.trials[:3]]), None)
    gm, gs = qt.surrogate.predict(*qt._observations(), rows.astype(np.float32))
    m, s = qt._calibrated(np.minimum(gm, 1.0), gs, np.zeros(3, dtype=bool))
    assert m == pytest.approx(np.minimum(np.minimum(gm, 1.0) + offset * gs, 1.0))
    assert s == pytest.approx(scale * gs)
    nxt = qt.ask()
    if qt.pool[nxt.trial_id].epoch == 0:
        assert nxt.info["mean"] == pytest.approx(min(nxt.info["gp_mean"] + offset * nxt.info["gp_std"], 1.0))


@needs_shared
def test_calibration_is_rebuilt_exactly_on_resume():
    qt = _optimizer(calibrate_new=5.0, calibrate_continue=5.0)
    for i in range(8):
        _tell_miss(qt, qt.ask(), 1.5 if i % 2 else -0.5)
    state = json.loads(json.dumps(qt.state_dict()))
    assert all("prediction" in e for e in state["journal"])
    again = _optimizer(calibrate_new=5.0, calibrate_continue=5.0)
    again.load_state_dict(state)
    for kind in ("start", "resume"):
        assert again.calibration(kind) == qt.calibration(kind)
    a, b = qt.ask(), again.ask()
    assert (a.trial_id, a.to_epoch, a.info["mean"]) == (b.trial_id, b.to_epoch, b.info["mean"])


@pytest.mark.parametrize("anchor_residuals", [False, True])
def test_anchor_steps_carry_a_prediction_but_add_no_residual_by_default(anchor_residuals):
    from hubtune.space.searchspace import SearchSpace
    from hubtune.surrogate.cache import load_default_surrogate

    qt = QuickTune(load_default_surrogate(), max_epochs=10, space=SearchSpace(["edgenext_small"]), seed=0,
                   settings=QuickTuneSettings(calibrate_new=5.0, anchor_residuals=anchor_residuals))
    step = qt.ask()
    assert step.info["why"].startswith("default config") and step.info["anchor"] is True
    assert 0.0 < step.info["mean"] <= 1.0 and step.info["std"] > 0 and step.info["noise_std"] > 0
    rec = records_from_scores([step.info["mean"] - 3 * step.info["std"]], [5.0])
    qt.tell(StepResult(step, rec, "ok", seconds=5.0))
    if anchor_residuals:
        assert qt.calibration("start")[0] < 0  # the anchor's miss counts as a new-config residual
    else:  # started whatever it predicted: its miss says nothing of this task's new configs
        assert qt._residuals["start"] == [] and qt.calibration("start") == (0.0, 1.0)
    # a resumed run rebuilds the same calibration from the journal (the flag is journaled)
    again = QuickTune(load_default_surrogate(), max_epochs=10, space=SearchSpace(["edgenext_small"]), seed=0,
                      settings=QuickTuneSettings(calibrate_new=5.0, anchor_residuals=anchor_residuals))
    again.load_state_dict(json.loads(json.dumps(qt.state_dict())))
    assert again._residuals == qt._residuals


@needs_shared
@pytest.mark.parametrize("skip", [None, 0.5])
def test_a_diverged_step_is_no_calibration_evidence_when_skip_collapse_is_set(skip):
    """A run that collapses (0.6 at epoch 1, 0.02 at epoch 2) is a failure of that run; with
    ``skip_collapse`` its miss does not widen every later continuation's std."""
    qt = _optimizer(calibrate_new=5.0, calibrate_continue=5.0, skip_collapse=skip)
    first = qt.ask()
    qt.tell(StepResult(first, records_from_scores([0.6], [10.0]), "ok", seconds=10.0))
    from hubtune.protocol.steps import Step

    tid = first.trial_id
    cont = Step(trial_id=tid, config=qt.pool[tid].config, to_epoch=2,
                info={"gp_mean": 0.62, "gp_std": 0.03, "noise_std": 0.0})
    qt.tell(StepResult(cont, records_from_scores([0.02], [10.0], 1), "ok", seconds=10.0))
    if skip is None:
        assert qt._residuals["resume"] == [pytest.approx(-3.0)]  # clipped at Z_CLIP
        assert qt.calibration("resume")[1] > 1.2
    else:
        assert qt._residuals["resume"] == [] and qt.calibration("resume") == (0.0, 1.0)
    assert qt.pool[tid].scores == [0.6, 0.02]  # the scores themselves are kept either way
