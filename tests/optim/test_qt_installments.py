"""Quick-Tune's installments (issue #13): a step valued for where it leads runs in growing parts."""

from __future__ import annotations

import json

from hubtune.optim.quicktune import QuickTune, QuickTuneSettings, records_from_scores
from hubtune.optim.quicktune.budget import first_installment, installment
from hubtune.protocol.steps import Step, StepResult


def test_installment_caps_the_chosen_length_at_growth_times_the_epochs_so_far():
    lengths = [1, 2, 4, 8, 16]
    # a new config that won for its 16-epoch score is seen after one epoch first
    assert installment(16, 0, lengths, 1.0) == 1
    # then the step grows with the curve: at epoch 3, at most 3 epochs (the longest listed: 2)
    assert installment(16, 3, lengths, 1.0) == 2
    assert installment(16, 8, lengths, 1.0) == 8
    assert installment(16, 20, lengths, 1.0) == 16
    # a short winner is never lengthened, and growth 2 allows twice the epochs so far
    assert installment(2, 10, lengths, 1.0) == 2
    assert installment(16, 4, lengths, 2.0) == 8
    # off: the chosen length
    assert installment(16, 0, lengths, None) == 16
    # lengths shortened by the budget (fit_horizon) are respected
    assert installment(12, 30, [1, 2, 4, 8, 12], 1.0) == 12
    # the smallest installment: two epochs of a new config (one of a warm-up is often at chance)
    assert installment(16, 0, lengths, 1.0, first=2) == 2
    assert installment(16, 1, lengths, 1.0, first=2) == 2
    assert installment(16, 6, lengths, 1.0, first=2) == 4
    assert installment(1, 0, lengths, 1.0, first=2) == 1


def test_a_parallel_search_takes_a_shorter_first_look():
    assert first_installment(2, 1, others_pending=False) == 2  # one worker: never another step running
    assert first_installment(2, 1, others_pending=True) == 1
    assert first_installment(2, None, others_pending=True) == 2  # switched off


def _space_qt(**settings) -> QuickTune:
    from hubtune.space.searchspace import SearchSpace
    from hubtune.surrogate.cache import load_default_surrogate

    space = SearchSpace(["edgenext_small", "volo_d1_384"])
    return QuickTune(load_default_surrogate(), max_epochs=50, space=space, seed=0,
                     settings=QuickTuneSettings(start_with_defaults=False, **settings))


def _tell(qt: QuickTune, step: Step, score: float) -> None:
    n = qt.pool[step.trial_id].epoch
    k = step.to_epoch - n
    scores = [score] * k
    qt.tell(StepResult(step, records_from_scores(scores, [10.0] * k, start_epoch=n), seconds=10.0 * k))


def _after_a_strong_start(**settings) -> QuickTune:
    """Two configs seen, one at 0.8: a new config's first epoch can hardly beat it. EI alone
    (``cost_power=0``) then values every new config by its longest step."""
    qt = _space_qt(cost_power=0.0, **settings)
    a, b = qt.ask(), qt.ask()
    _tell(qt, a, 0.8)
    _tell(qt, b, 0.3)
    return qt


def test_a_long_step_from_scratch_runs_its_first_installment_first_and_resumes_identically():
    plain = _after_a_strong_start(installment_growth=None)
    long_steps = [s for s in (plain.ask() for _ in range(8)) if s.to_epoch > 1 and s.info["horizon"] == s.to_epoch]
    assert long_steps  # without installments new configs start with several epochs
    qt = _after_a_strong_start(installment_growth=1.0)
    asked = [qt.ask() for _ in range(8)]
    steps = [s for s in asked if qt.pool[s.trial_id].epoch == 0]
    assert len(steps) >= 6
    first, parallel = QuickTuneSettings().installment_first, QuickTuneSettings().installment_first_parallel
    # every new config runs its first installment: the sequential one when nothing else is
    # running (the first ask), the parallel one while the earlier asks are still running
    assert [s.to_epoch for s in steps] == [first if s is asked[0] else parallel for s in steps]
    assert all(s.info["valued_horizon"] > s.to_epoch for s in steps)  # though chosen for a longer step
    for i, s in enumerate(asked):
        _tell(qt, s, 0.3 + 0.05 * i)
    decisions = []
    again = _space_qt(cost_power=0.0, installment_growth=1.0)
    again.load_state_dict(json.loads(json.dumps(qt.state_dict())))
    for opt in (qt, again):
        seq = []
        for _ in range(6):
            s = opt.ask()
            seq.append((s.trial_id, s.to_epoch))
            n = opt.pool[s.trial_id].epoch
            assert s.to_epoch - n <= max(first, n)  # growth 1
            _tell(opt, s, 0.5)
        decisions.append(seq)
    assert decisions[0] == decisions[1]
