"""Quick-Tune's end-game rules (issue #13): shortened horizons, no hopeless steps, short steps end a trial."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hubtune.optim.quicktune import QuickTune, QuickTuneSettings, records_from_scores
from hubtune.optim.quicktune.acquisition import win_probability
from hubtune.optim.quicktune.budget import (
    best_reachable,
    can_win,
    epochs_that_fit,
    fits,
    step_lengths,
)
from hubtune.optim.quicktune.optimizer import effective_status
from hubtune.protocol.steps import Step, StepResult


def test_step_lengths_shorten_to_the_epochs_that_fit_instead_of_refusing():
    # 12 epochs fit: the 16-epoch horizon becomes a 12-epoch step, not dropped
    assert step_lengths(10, 50, (1, 2, 4, 8, 16), None, False, fit=12) == [1, 2, 4, 8, 12]
    assert step_lengths(10, 50, (1, 2, 4, 8, 16), None, False, fit=3) == [1, 2, 3]
    assert step_lengths(10, 50, (1, 2, 4, 8, 16), None, False, fit=0) == []
    assert step_lengths(48, 50, (1, 2, 4, 8, 16), None, False, fit=30) == [1, 2]
    # blackbox runs are all or nothing
    assert step_lengths(0, 20, (1, 2), None, True, fit=5) == [20]


def test_epochs_that_fit_agrees_with_fits_at_the_boundary():
    per_epoch = np.array([10.0, 10.0, 7.0, 1e3])
    overhead = np.array([5.0, 0.0, 1.0, 0.0])
    margin = np.array([1.0, 2.0, 1.3, 1.0])
    k = epochs_that_fit(per_epoch, overhead, margin, 125.0)
    assert k.tolist() == [12, 6, 13, 0]
    assert fits(per_epoch * k + overhead, margin, 125.0).all()
    assert not fits(per_epoch * (k + 1) + overhead, margin, 125.0).any()
    # exactly on the boundary: 100 s of 10 s epochs hold 10 epochs
    assert epochs_that_fit(np.array([10.0]), np.array([0.0]), np.array([1.0]), 100.0).tolist() == [10]


def test_win_probability_closed_form():
    p = win_probability(np.array([0.9, 0.59, 0.5]), np.array([0.1, 0.23, 1e-12]), 0.906)
    assert p[0] == pytest.approx(0.5 * (1 + math.erf(-0.06 / math.sqrt(2))), abs=1e-6)
    # the probe: 59 +- 23 % against an incumbent of 90.6 %
    assert p[1] == pytest.approx(0.0843, abs=1e-3)
    assert p[2] == pytest.approx(0.0, abs=1e-9)


def test_can_win_judges_a_step_by_the_best_epoch_its_trial_can_reach():
    trial = np.array([0, 0, 0, 1, 1, 2])
    p_win = np.array([0.001, 0.01, 0.3, 0.004, 0.01, 0.5])
    reachable = np.array([True, True, True, True, True, False])
    # trial 0's one-epoch step is a path to its 16-epoch chance of 0.3: kept
    assert can_win(p_win, trial, reachable, 0.02).tolist() == [True, True, True, False, False, False]
    assert best_reachable(p_win, trial, reachable)[5] == -np.inf  # trial 2 reaches nothing
    # when trial 0's long step does not fit, its short ones cannot win either
    reachable[2] = False
    assert can_win(p_win, trial, reachable, 0.02).tolist() == [False] * 6


def test_effective_status_ends_a_trial_that_returned_fewer_epochs_than_asked():
    assert effective_status("ok", 4, 1) == "ended"
    assert effective_status("ok", 4, 4) == "ok"
    assert effective_status("ok", None, 1) == "ok"
    assert effective_status("failed", 4, 1) == "failed"


def _space_qt(**settings) -> QuickTune:
    from hubtune.space.searchspace import SearchSpace
    from hubtune.surrogate.cache import load_default_surrogate

    space = SearchSpace(["edgenext_small", "volo_d1_384"])
    return QuickTune(load_default_surrogate(), max_epochs=50, space=space, seed=0,
                     settings=QuickTuneSettings(**settings))


def _tell(qt: QuickTune, step: Step, scores: list[float], sec: float = 10.0, status: str = "ok") -> None:
    n = qt.pool[step.trial_id].epoch
    qt.tell(StepResult(step, records_from_scores(scores, [sec] * len(scores), start_epoch=n), status=status,
                       seconds=sec * len(scores)))


def test_a_short_step_ends_its_trial_and_is_no_cost_evidence():
    qt = _space_qt()
    a, b = qt.ask(), qt.ask()
    _tell(qt, a, [0.5])
    _tell(qt, b, [0.4])
    step = Step(a.trial_id, a.config, to_epoch=5, info={"predicted_seconds": 40.0})
    margin = qt._cost_margin("resume")
    _tell(qt, step, [0.55])  # asked for 4 epochs, the loop returned one ("crashed")
    assert qt.pool[a.trial_id].done
    assert qt._cost_margin("resume") == margin  # 10 s against a 40 s prediction is not evidence
    assert all(s.trial_id != a.trial_id for s in (qt.ask() for _ in range(3)) if s is not None)
    # a full step is evidence, and the journal replays the truncation exactly
    step = Step(b.trial_id, b.config, to_epoch=3, info={"predicted_seconds": 40.0})
    _tell(qt, step, [0.45, 0.5])
    assert qt._cost_margin("resume") != margin
    again = _space_qt()
    again.load_state_dict(qt.state_dict())
    assert again.pool[a.trial_id].done and not again.pool[b.trial_id].done
    assert again._cost_margin("resume") == qt._cost_margin("resume")


def _endgame_state(**settings) -> QuickTune:
    """Both default anchors trained at 10 s per epoch: one to 0.9 at epoch 6, one to 0.2.

    Installments off unless asked for: these cases are about whole steps and what fits
    (with installments a shortened 12-epoch step would run its first 4 epochs first)."""
    settings.setdefault("installment_growth", None)
    qt = _space_qt(cost_quantile=None, **settings)
    a, b = qt.ask(), qt.ask()
    _tell(qt, a, [0.6, 0.75, 0.82, 0.86, 0.88, 0.9])
    _tell(qt, b, [0.2])
    return qt


def test_a_long_continuation_is_shortened_to_what_fits():
    # 125 s left at 10 s per epoch: 12 epochs fit, the incumbent's 16-epoch step is cut to 12
    qt = _endgame_state(win_threshold=None)
    inc = qt.pool.index[qt.incumbent()[0]]
    open_idx = qt.pool.open_indices(50)
    caps, bound = qt._fit_caps(open_idx, qt._cost_per_epoch(), 125.0)
    assert caps[open_idx.index(inc)] == 12 and inc in bound
    steps = [s for s in (qt.ask(budget_left=125.0) for _ in range(6)) if s is not None]
    assert all(s.info["cost"] <= 125.0 for s in steps)
    assert any(s.info["horizon"] not in (1, 2, 4, 8, 16) for s in steps)  # shortened, not refused
    # the old all-or-nothing rule: no horizon but the listed ones
    qt = _endgame_state(fit_horizon=False, win_threshold=None)
    caps, _ = qt._fit_caps(open_idx, qt._cost_per_epoch(), 125.0)
    assert set(caps) == {None}
    steps = [s for s in (qt.ask(budget_left=125.0) for _ in range(6)) if s is not None]
    assert all(s.info["horizon"] in (1, 2, 4, 8) for s in steps)


def test_no_step_is_started_that_cannot_beat_the_incumbent_in_the_budget_left():
    def run(threshold: float | None, left: float) -> list[Step]:
        qt = _endgame_state(win_threshold=threshold)
        steps = []
        for _ in range(6):
            step = qt.ask(budget_left=left)
            if step is None:
                break
            steps.append(step)
        return steps

    # 15 s left: one epoch of anything fits, and no new config's first epoch can reach 0.9
    hopeless = run(None, 15.0)
    assert any(s.info["mean"] + 2 * s.info["std"] < 0.9 for s in hopeless)  # without the rule
    kept = run(0.02, 15.0)
    assert all(s.info["p_win"] >= 0.02 for s in kept)
    assert len(kept) < len(hopeless)
    # with plenty of budget left the rule does not bind
    assert all("p_win" not in s.info for s in run(0.02, 1e5))


def test_default_settings_start_no_end_game_step_with_a_negligible_chance_to_win():
    # The case: the incumbent (0.9, 10 s per epoch) cannot take another epoch in the
    # 9 s left, but a new config's first epoch (about 7 s) fits; its predicted score there
    # (0.1-0.4 +- 0.2) almost surely stays below 0.9.
    def started(**settings) -> list[Step]:
        qt = _endgame_state(**settings)
        steps = []
        while (step := qt.ask(budget_left=9.0)) is not None and len(steps) < 6:
            steps.append(step)
        return steps

    bar = 0.9
    without = started(win_threshold=None)
    hopeless = [s for s in without
                if float(win_probability(np.array([s.info["mean"]]), np.array([s.info["std"]]), bar)[0]) < 0.002]
    assert hopeless  # without the rule such probes are started
    default = QuickTuneSettings().win_threshold
    assert default is not None and default > 0
    kept = started()  # default settings
    assert all(s.info["p_win"] >= default for s in kept)
    assert {s.trial_id for s in hopeless}.isdisjoint(s.trial_id for s in kept)
    assert len(kept) < len(without)
