"""Greedy ensemble selection (Caruana et al. 2004) on synthetic probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from hubtune.tuner.ensemble import greedy_selection, score_probs, weighted_average


def _onehot(pred: list[int], c: int, confidence: float = 0.9) -> np.ndarray:
    p = np.full((len(pred), c), (1 - confidence) / (c - 1))
    p[np.arange(len(pred)), pred] = confidence
    return p


LABELS = np.array([0, 1, 2, 0, 1, 2])


def test_picks_the_better_member_and_repeats_it():
    bad = _onehot([1, 2, 0, 1, 2, 0], 3)  # always wrong
    good = _onehot(LABELS.tolist(), 3)  # always right
    w = greedy_selection([bad, good], LABELS, rounds=4)
    assert w == [0.0, 1.0]  # chosen in every round: with replacement
    assert sum(w) == pytest.approx(1.0)


def test_combines_complementary_members_and_beats_each_of_them():
    labels = np.zeros(3, dtype=int)
    members = []
    for i in range(3):  # member i is wrong only on image i
        p = np.tile([0.9, 0.1], (3, 1))
        p[i] = [0.4, 0.6]
        members.append(p)
    w = greedy_selection(members, labels, rounds=3)
    assert sum(w) == pytest.approx(1.0)
    assert sum(x > 0 for x in w) >= 2
    ens = score_probs(weighted_average(members, w), labels)["top1"]
    assert ens == 1.0 > max(score_probs(p, labels)["top1"] for p in members)


def test_ties_go_to_the_lower_loss():
    sure = _onehot(LABELS.tolist(), 3, confidence=0.95)
    unsure = _onehot(LABELS.tolist(), 3, confidence=0.5)
    assert greedy_selection([unsure, sure], LABELS, rounds=1) == [0.0, 1.0]


def test_weights_are_counts_over_rounds():
    a = _onehot([0, 1, 2, 0, 1, 0], 3)
    b = _onehot([0, 1, 1, 0, 1, 2], 3)
    w = greedy_selection([a, b], LABELS, rounds=5)
    assert all(abs(x * 5 - round(x * 5)) < 1e-12 for x in w)
    assert sum(w) == pytest.approx(1.0)


def test_other_metrics_and_bad_rounds():
    a = _onehot(LABELS.tolist(), 3)
    assert greedy_selection([a], LABELS, rounds=2, metric="macro_f1") == [1.0]
    s = score_probs(a, LABELS)
    assert s["top1"] == s["balanced_accuracy"] == s["macro_f1"] == 1.0
    with pytest.raises(ValueError):
        greedy_selection([a], LABELS, rounds=0)
    with pytest.raises(ValueError):
        greedy_selection([], LABELS, rounds=1)


def test_next_candidate_is_only_started_if_it_and_the_test_passes_would_end_in_time():
    from hubtune.tuner.ensemble import next_candidate_fits

    assert next_candidate_fits(10.0, [4.0, 9.0])  # the slowest so far fits
    assert not next_candidate_fits(8.9, [4.0, 9.0])
    assert not next_candidate_fits(10.0, [4.0, 9.0], reserve=1.5)  # room kept for test passes
    assert next_candidate_fits(3.0, [], estimate=2.0)  # nothing measured: the search's estimate
    assert not next_candidate_fits(3.0, [], estimate=2.0, reserve=1.5)
    assert next_candidate_fits(0.1, [])  # nothing to estimate from: while time is left
    assert not next_candidate_fits(0.0, [])  # no time left: not even the first candidate
