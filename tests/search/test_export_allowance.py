"""The time kept back from the search for the end of the run (``export_allowance`` with an
``ExportPlan``): the export of the best model and, with ``--ensemble K``, the ensemble."""

from __future__ import annotations

import math

import pytest

from hubtune.core.records import EpochRecord
from hubtune.protocol.steps import Step, StepResult
from hubtune.search.budget import (
    ExportPlan,
    candidate_count,
    eval_seconds_per_image,
    export_allowance,
    load_seconds,
)
from hubtune.space.config import Config


def _result(trial: str, eval_s: float = 1.0, epochs: int = 1, overhead: float = 0.5) -> StepResult:
    """A step of ``epochs`` epochs (10 s training + ``eval_s`` each) and ``overhead`` s beyond."""
    records = [EpochRecord(epoch=e, score=0.5, train_seconds=10.0, eval_seconds=eval_s)
               for e in range(1, epochs + 1)]
    return StepResult(Step(trial, Config(model="m1"), epochs), records, status="ok",
                      seconds=(10.0 + eval_s) * epochs + overhead)


def _manual(per_image: float, n_val: int, n_test: int, k: int, c: int, plan: ExportPlan) -> float:
    """The rule written out once more, for the tests below."""
    single = 2 * plan.load_seconds + per_image * (n_val + n_test)
    ens = 0.0
    if k:
        m = min(k, c)
        ens = (c * (plan.load_seconds + per_image * n_val) + m * (plan.load_seconds + per_image * n_test)
               + 2 * m * plan.load_seconds + (m + 1) * plan.latency_calls * 5 * per_image)
        ens = min(ens, plan.ensemble_share * plan.budget)
    return plan.margin * (single + plan.extra + ens)


def test_without_a_plan_the_rule_is_unchanged():
    assert export_allowance([]) == 5.0
    assert export_allowance([_result("a", 12.0), _result("b", 30.0)]) == pytest.approx(65.0)


def test_seconds_per_image_is_the_slowest_validation_pass():
    res = [_result("a", 2.0), _result("b", 5.0)]
    assert eval_seconds_per_image(res, 500) == pytest.approx(0.01)
    assert eval_seconds_per_image([], 500) is None
    assert eval_seconds_per_image(res, 0) is None
    assert eval_seconds_per_image([StepResult(Step("c", Config(model="m1"), 1), [])], 10) is None


def test_checkpoint_loads_are_timed_by_the_steps_overheads():
    """The median step overhead, the run's first (warm-up) step left out."""
    assert load_seconds([]) is None and load_seconds([_result("a", overhead=9.0)]) is None
    res = [_result("a", overhead=9.0), _result("b", overhead=0.2), _result("c", overhead=0.4),
           _result("d", overhead=3.0)]
    assert load_seconds(res) == pytest.approx(0.4)
    plan = ExportPlan(n_val=300, n_test=300, ensemble=5, budget=3600.0)
    measured = [_result(t, 3.0, overhead=2.0) for t in "abc"]
    assert plan(measured) == pytest.approx(
        _manual(0.01, 300, 300, 5, 3, ExportPlan(n_val=300, load_seconds=2.0, budget=3600.0)))


def test_nothing_measured_keeps_the_fixed_part_only():
    plan = ExportPlan(n_val=300, n_test=300, ensemble=5, budget=600.0)
    assert export_allowance([], plan=plan) == plan.extra
    assert plan([]) == plan.extra  # the plan is the loop's allowance callable


def test_a_large_test_split_is_provided_for():
    """Test taken from the split sizes, not as large as validation: 10,000 test images
    behind 300 validation ones cost 34x the validation pass, not 2x."""
    res = [_result("a", 3.0)]  # 0.01 s per image
    small = ExportPlan(n_val=300, n_test=300)
    large = ExportPlan(n_val=300, n_test=10_000)
    assert export_allowance(res, plan=small) == pytest.approx(_manual(0.01, 300, 300, 0, 1, small))
    assert export_allowance(res, plan=large) == pytest.approx(_manual(0.01, 300, 10_000, 0, 1, large))
    assert export_allowance(res, plan=large) - export_allowance(res, plan=small) == \
        pytest.approx(1.25 * 0.01 * 9_700)
    assert export_allowance(res, plan=large) > export_allowance(res)  # the old rule fell short


def test_the_ensemble_share_grows_with_the_candidates_and_is_capped():
    plan = ExportPlan(n_val=300, n_test=300, ensemble=5, budget=3600.0)
    one = [_result("a", 3.0)]
    six = [_result(t, 3.0) for t in "abcdef"]
    assert candidate_count(six + [StepResult(Step("z", Config(model="m1"), 1), [])]) == 6
    assert plan(one) == pytest.approx(_manual(0.01, 300, 300, 5, 1, plan))
    assert plan(six) == pytest.approx(_manual(0.01, 300, 300, 5, 6, plan))
    assert plan(six) > plan(one) > ExportPlan(n_val=300, n_test=300, budget=3600.0)(one)
    many = [_result(f"t{i}", 3.0) for i in range(40)]  # only max_candidates are candidates
    assert plan(many) == pytest.approx(_manual(0.01, 300, 300, 5, 25, plan))
    short = ExportPlan(n_val=300, n_test=300, ensemble=5, budget=60.0)  # cap: 20% of 60 s
    assert short(many) == pytest.approx(1.25 * (2 * short.load_seconds + 0.01 * 600 + 5.0 + 12.0))


def test_ensemble_zero_keeps_only_the_single_export():
    res = [_result(t, 3.0) for t in "abc"]
    assert ExportPlan(n_val=300, n_test=300, ensemble=0, budget=600.0)(res) == \
        pytest.approx(_manual(0.01, 300, 300, 0, 3, ExportPlan(n_val=300)))


def test_tail_is_writing_the_members_their_latency_and_the_report():
    plan = ExportPlan(n_val=300, n_test=300, ensemble=5)
    assert plan.tail_seconds(0.01, 3) == pytest.approx(3 * 2 * plan.load_seconds + 4 * 23 * 5 * 0.01 + 5.0)
    assert plan.tail_seconds(0.0, 0) == plan.extra
    assert math.isinf(plan.budget)


def test_the_loop_keeps_the_plans_allowance_back():
    """SearchLoop with an ExportPlan: steps may use the budget less the plan's allowance."""
    from hubtune.search.loop import SearchLoop

    plan = ExportPlan(n_val=100, n_test=1000, ensemble=3, budget=1000.0)
    loop = SearchLoop(None, object(), object(), 1000.0, export_allowance=plan)  # type: ignore[arg-type]
    loop.results = [_result(t, 2.0) for t in "abcd"]
    loop._update_reserve()
    assert loop.reserve() == pytest.approx(plan(loop.results))
    assert loop.left_for_steps() == pytest.approx(1000.0 - loop.elapsed() - loop.reserve(), abs=0.5)
