"""Quick-Tune's budget rules and acquisition pieces, one pure function at a time."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from hubtune.optim.quicktune import COST_ERROR_PRIOR_STD
from hubtune.optim.quicktune.acquisition import cost_scaled, improvement_bar, tie_break
from hubtune.optim.quicktune.budget import (
    can_finish_from_scratch,
    cooled_power,
    cost_margin,
    endgame,
    finish_reserve,
    fits,
    keeps_reserve,
    last_chance,
    reserve,
    step_lengths,
)


def test_step_lengths_cap_at_the_epochs_left_and_the_growth_rule():
    assert step_lengths(0, 50, (1, 2, 4, 8, 16), None, False) == [1, 2, 4, 8, 16]
    assert step_lengths(45, 50, (1, 2, 4, 8, 16), None, False) == [1, 2, 4, 5]
    # growth 1.0: at most double the epochs; a never-started config is probed for one epoch
    assert step_lengths(0, 50, (1, 2, 4, 8), 1.0, False) == [1]
    assert step_lengths(3, 50, (1, 2, 4, 8), 1.0, False) == [1, 2, 3]
    # blackbox: one full run from scratch, nothing once started
    assert step_lengths(0, 20, (1, 2), None, True) == [20]
    assert step_lengths(1, 20, (1, 2), None, True) == []


def test_cost_margin_starts_from_the_prior_and_learns_the_runs_errors():
    q90 = NormalDist().inv_cdf(0.9)
    assert cost_margin([], None) == 1.0
    assert cost_margin([], 0.9) == pytest.approx(math.exp(q90 * COST_ERROR_PRIOR_STD))
    # steps that always took 1.5x their prediction: the margin moves towards 1.5x
    many = cost_margin([math.log(1.5)] * 200, 0.9)
    assert 1.5 < many < 1.5 * math.exp(q90 * 0.05)
    # two such steps: the mean has moved less, but the prior's uncertainty still widens it
    assert cost_margin([math.log(1.5)] * 2, 0.9) > many
    assert cost_margin([math.log(1.5)] * 2, 0.5) < cost_margin([math.log(1.5)] * 200, 0.5)


def test_fits_and_endgame():
    cost, margin = np.array([10.0, 50.0, 100.0]), np.array([1.2, 1.0, 1.0])
    assert fits(cost, margin, 60.0).tolist() == [True, True, False]
    started = np.array([True, False, False])
    per_epoch = np.array([100.0, 10.0, 30.0])
    # 60 s left, the incumbent's best epoch is 3: a new config needs 3 epochs in 60 s
    assert endgame(started, per_epoch, 60.0, 3).tolist() == [True, True, False]


def test_finish_reserve_keeps_the_most_promising_finishable_trial():
    epochs, per_epoch = np.array([5, 8, 9]), np.array([10.0, 10.0, 10.0])
    final = np.array([0.9, 0.8, 1.3])  # predictions above 1 are capped
    # trial 0 (5 epochs left: 50 s + 5 s resume, x1.1) cannot finish in 60 s; trial 2 scores highest
    assert finish_reserve(60.0, epochs, final, per_epoch, 10, 5.0, 1.1, None) == (2, pytest.approx(16.5))
    assert finish_reserve(100.0, epochs, np.array([0.95, 0.8, 0.7]), per_epoch, 10, 5.0, 1.0, None) == (0, 55.0)
    # a finished trial already as good as the prediction: nothing reserved
    assert finish_reserve(100.0, epochs, final, per_epoch, 10, 5.0, 1.0, 1.0) is None
    assert finish_reserve(10.0, epochs, final, per_epoch, 10, 5.0, 1.0, None) is None
    assert finish_reserve(10.0, np.array([], dtype=int), np.array([]), np.array([]), 10, 0.0, 1.0, None) is None


def test_keeps_reserve_lets_only_the_reserved_trial_eat_into_it():
    cost, margin = np.array([30.0, 30.0, 5.0]), np.ones(3)
    mask = keeps_reserve(np.array([True, False, False]), cost, margin, 40.0, 20.0)
    assert mask.tolist() == [True, False, True]


def test_acquisition_pieces():
    assert cost_scaled(np.array([1.0]), np.array([4.0]), 0.5)[0] == pytest.approx(0.5)
    assert cost_scaled(np.array([1.0]), np.array([0.0]), 0.0)[0] == 1.0
    assert improvement_bar(np.array([0.7, 1.2]), 0.9, np.array([0.1])) == 1.0
    assert improvement_bar(None, 0.9, np.array([0.1])) == 0.9
    assert improvement_bar(None, None, np.array([0.1, 0.2, 0.6])) == pytest.approx(0.2)
    # ties go to a seeded random one; -inf (not allowed) never wins
    acq = np.array([-np.inf, 1.0, 1.0, 1.0])
    picks = {tie_break(acq, np.random.default_rng(s))[0] for s in range(20)}
    assert picks <= {1, 2, 3} and len(picks) > 1
    assert tie_break(acq, np.random.default_rng(0))[0] == tie_break(acq, np.random.default_rng(0))[0]


def test_a_new_config_is_allowed_only_if_it_could_reach_max_epochs_alone():
    per_epoch = np.array([5.0, 10.0, 20.0])
    # 8 epochs + 10 s start, times the 1.5 start margin: 75, 135 and 255 s
    assert can_finish_from_scratch(per_epoch, 8, 10.0, 1.5, 135.0).tolist() == [True, True, False]
    assert not can_finish_from_scratch(per_epoch, 8, 10.0, 1.5, 74.0).any()


def test_last_chance_is_the_most_promising_started_trial_unless_a_finished_one_is_as_good():
    final = np.array([0.7, 0.9, 0.8])
    assert last_chance(final, None) == 1
    assert last_chance(final, 0.85) == 1
    assert last_chance(final, 0.9) is None
    assert last_chance(np.array([]), None) is None


def test_reserve_keeps_a_finishable_trial_else_gives_everything_to_the_last_chance():
    epochs, final, per_epoch = np.array([3, 6]), np.array([0.8, 0.7]), np.array([10.0, 10.0])
    # 55 s left: the first needs 50 s to finish (8 epochs, no overhead), the second 20 s
    assert reserve(55.0, epochs, final, per_epoch, 8, 0.0, 1.0, None) == (0, 50.0)
    # 15 s left: neither can be finished; every step goes to the one predicted to end best
    assert reserve(15.0, epochs, final, per_epoch, 8, 0.0, 1.0, None) == (0, 15.0)
    assert reserve(15.0, epochs, final, per_epoch, 8, 0.0, 1.0, 0.85) is None  # a finished trial is better
    # finishable, but a finished trial is already as good: no reserve, no last chance
    assert reserve(55.0, epochs, final, per_epoch, 8, 0.0, 1.0, 0.9) is None


def test_cost_cooling_lets_an_expensive_step_win_once_the_budget_is_spent():
    ei, cost = np.array([0.01, 0.04]), np.array([10.0, 1000.0])  # cheap and small, dear and large
    fresh = cooled_power(0.75, 0.0, 1000.0, 1000.0)
    spent = cooled_power(0.75, 0.0, 100.0, 1000.0)
    assert fresh == 0.75 and spent == pytest.approx(0.075)
    assert np.argmax(cost_scaled(ei, cost, fresh)) == 0
    assert np.argmax(cost_scaled(ei, cost, spent)) == 1
    assert cooled_power(0.75, 0.5, 0.0, 1000.0) == pytest.approx(0.375)
    # off, or no known budget: the configured power throughout
    assert cooled_power(0.75, None, 100.0, 1000.0) == 0.75
    assert cooled_power(0.75, 0.0, None, None) == 0.75
