"""The budget as a contract (issue #14): each rule of hubtune.search.budget, and the loop keeping it."""

from __future__ import annotations

import math

import pytest

from hubtune.bench.simulator import SimulatedEvaluator
from hubtune.core.records import EpochRecord
from hubtune.metadata import DatasetRuns, load_metadata
from hubtune.optim.registry import get_method
from hubtune.protocol.context import Candidate, TaskContext
from hubtune.protocol.steps import Step, StepResult
from hubtune.search.budget import (
    BudgetGuard,
    batch_scaled,
    epoch_estimate,
    epochs_that_fit,
    export_allowance,
    learned_margin,
    nothing_fits,
    recent_overhead,
    result_costs,
)
from hubtune.search.clock import SimClock
from hubtune.search.journal import Journal
from hubtune.search.loop import SearchLoop
from hubtune.search.simexec import SimExecutor
from hubtune.space.config import Config
from tests.helpers.paths import QT_EXTENDED

SHARED = QT_EXTENDED
CFG = Config(model="m1")


def _result(trial="t", epochs=((1, 100.0),), total=None, eval_s=0.0, batch=None, model="m1",
            to_epoch=None, status="ok"):
    records = [EpochRecord(epoch=e, score=0.5, train_seconds=s, eval_seconds=eval_s,
                           batch_size=batch) for e, s in epochs]
    seconds = total if total is not None else sum(r.seconds for r in records)
    step = Step(trial, Config(model=model), to_epoch or (epochs[-1][0] if epochs else 1))
    return StepResult(step, records, status=status, seconds=seconds)


# ------------------------------------------------------------ pure rules
def test_result_costs_split_epochs_from_step_overhead():
    per_epoch, overhead = result_costs(_result(epochs=((1, 90.0), (2, 110.0)), total=230.0,
                                               eval_s=5.0))
    assert per_epoch == pytest.approx(105.0) and overhead == pytest.approx(20.0)
    assert result_costs(_result(epochs=())) is None


def test_batch_scaled_only_slows_smaller_batches():
    assert batch_scaled(100.0, 128, 32) == pytest.approx(200.0)
    assert batch_scaled(100.0, 32, 128) == 100.0  # a larger batch is not assumed faster
    assert batch_scaled(100.0, None, 32) == 100.0


def test_learned_margin_early_then_upper_quantile_within_bounds():
    assert learned_margin([]) == 1.25
    assert learned_margin([1.4]) == 1.4  # early: the worst ratio seen
    assert learned_margin([0.9] * 20) == 1.05  # never below base
    ratios = [1.0] * 9 + [2.0]
    assert learned_margin(ratios) == pytest.approx(1.1)  # 90% quantile, interpolated
    assert learned_margin([50.0] * 10) == 4.0  # capped


def test_epochs_that_fit():
    assert epochs_that_fit(1000, 100, 0, 1.0, 50) == 10
    assert epochs_that_fit(1000, 100, 50, 1.25, 50) == 7  # 800 - 50 = 750 -> 7 epochs
    assert epochs_that_fit(1000, 100, 0, 1.0, 3) == 3
    assert epochs_that_fit(99, 100, 0, 1.0, 3) == 0
    assert epochs_that_fit(10, 0, 0, 1.0, 3) == 3


def test_recent_overhead_is_the_median_of_its_kind():
    assert recent_overhead([9.0, 1.0, 1.2], [0.2], first_step=True) == 1.2  # warm-up ignored
    assert recent_overhead([9.0], [0.2, 0.4], first_step=False) == pytest.approx(0.3)
    assert recent_overhead([], [0.5], first_step=True) == 0.5
    assert recent_overhead([], [], first_step=False) == 0.0


def test_nothing_fits():
    assert nothing_fits(100, 90, 1.25)
    assert not nothing_fits(120, 90, 1.25)
    assert not nothing_fits(0.1, None, 1.25)  # nothing measured: the first step must run


def test_export_allowance_is_two_evaluations_plus_loading():
    assert export_allowance([]) == 5.0
    res = [_result(eval_s=12.0), _result(eval_s=30.0)]
    assert export_allowance(res) == pytest.approx(65.0)


def test_epoch_estimate_prefers_trial_then_model_then_prior():
    assert epoch_estimate((50.0, 32), (80.0, 32), 300.0, 32) == (50.0, "trial")
    assert epoch_estimate(None, (80.0, 64), 300.0, 32) == (pytest.approx(80.0 * math.sqrt(2)),
                                                           "model")
    assert epoch_estimate(None, None, 300.0, 32, prior_margin=1.5) == (450.0, "prior")
    assert epoch_estimate(None, None, None, 32) == (None, "none")


# ------------------------------------------------------------ the guard
def test_guard_runs_unmeasured_steps_then_shortens_and_declines():
    guard = BudgetGuard()
    assert guard.vet(Step("t", CFG, 1), left=10.0).action == "run"  # nothing measured yet
    probe = guard.vet(Step("t", CFG, 50), left=10.0)  # ...but only its first epoch
    assert probe.action == "shorten" and probe.step.to_epoch == 1 and probe.step.info["probe"]
    guard.observe(_result("t", ((1, 100.0),)))
    verdict = guard.vet(Step("t", CFG, 50), left=1000.0)
    assert verdict.action == "shorten"
    assert verdict.step.to_epoch == 1 + 8  # 1000 / 1.25 = 800 s -> 8 more epochs
    assert verdict.step.info["shortened_from"] == 50
    assert guard.vet(Step("t", CFG, 3), left=1000.0).action == "run"
    declined = guard.vet(Step("t", CFG, 2), left=100.0)
    assert declined.action == "decline" and "100s left" in declined.why
    # an unseen model: the slowest measured epoch times the prior margin (150 s)
    other = Step("u", Config(model="m2"), 1)
    assert guard.vet(other, left=180.0).action == "decline"
    assert guard.vet(other, left=190.0).action == "run"
    # a several-epoch step of an unseen trial: one epoch first (by default always)...
    probe = guard.vet(Step("v", Config(model="m1"), 3), left=10_000.0)
    assert probe.action == "shorten" and probe.step.to_epoch == 1 and probe.step.info["probe"]
    # ...or only when its estimate exceeds a share of what is left
    guard.probe_share = 0.5
    assert guard.vet(Step("v", Config(model="m1"), 3), left=10_000.0).action == "run"
    assert guard.vet(Step("v", Config(model="m1"), 3), left=500.0).action == "shorten"


def test_guard_honours_the_optimizers_own_prediction_and_learns_its_margin():
    guard = BudgetGuard()
    step = Step("t", CFG, 1, {"predicted_seconds": 500.0})
    assert guard.vet(step, left=400.0).action == "decline"
    for i in range(10):
        guard.observe(_result(f"t{i}", ((1, 100.0),), total=150.0), predicted=100.0)
    assert guard.margin() == pytest.approx(1.5)


# ------------------------------------------------------------ clock and executor
def test_sim_executor_is_asynchronous_on_the_simulated_clock():
    runs = DatasetRuns.from_curves("toy", ["a", "c"], [CFG, Config(model="m2")],
                                   [[0.2, 0.5], [0.9]], [[100.0, 100.0], [300.0]])
    clock = SimClock()
    ex = SimExecutor(SimulatedEvaluator(runs), clock, workers=2)
    ex.submit(Step("c", runs.configs[1], 1))
    ex.submit(Step("a", runs.configs[0], 1))
    first = ex.wait()[0]
    assert first.step.trial_id == "a" and clock.now() == 100.0 and first.worker == 1
    assert ex.free_slots() == 1
    assert ex.wait()[0].step.trial_id == "c" and clock.now() == 300.0
    cut = SimExecutor(SimulatedEvaluator(runs), SimClock(), workers=1, deadline=50.0)
    cut.submit(Step("a", runs.configs[0], 2))
    assert cut.wait() == [] and cut.clock.now() == 50.0 and cut.running() == {}


def test_sim_clock_charges_optimizer_work():
    ticks = iter([1.0, 3.5])
    clock = SimClock(lambda: next(ticks))
    with clock.charged() as charge:
        pass
    assert charge.seconds == 2.5 and clock.now() == 2.5


# ------------------------------------------------------------ the loop keeps the budget
@pytest.fixture(scope="module")
def runs():
    if not SHARED.exists():
        pytest.skip(f"shared meta-dataset absent: {SHARED}")
    return load_metadata(SHARED)["MED_LF"]


def _defaults_table(runs: DatasetRuns) -> DatasetRuns:
    """One run per model of ``runs``, relabelled as that model's default config (what
    the ``defaults`` method proposes)."""
    seen: dict[str, int] = {}
    for i, cfg in enumerate(runs.configs):
        seen.setdefault(cfg.model, i)
    configs = [Config(model=m) for m in seen]
    rows = list(seen.values())
    return DatasetRuns.from_curves(
        runs.dataset, [c.key() for c in configs], configs,
        [[s for s in runs.scores[i] if not math.isnan(s)] for i in rows],
        [[s for s in runs.seconds[i] if not math.isnan(s)] for i in rows],
        max_epochs=runs.scores.shape[1],
    )


def _simulate(runs, method, budget, rules, workers=1, out=None, allowance=None):
    ctx = TaskContext(
        max_epochs=runs.scores.shape[1], seed=0,
        candidates=[Candidate(r, c) for r, c in zip(runs.run_ids, runs.configs, strict=True)],
        meta_features=runs.meta_features,
    )
    optimizer = get_method(method).load()(ctx)
    clock = SimClock()
    evaluator = SimulatedEvaluator(runs)
    executor = SimExecutor(evaluator, clock, workers)
    loop = SearchLoop(out, optimizer, evaluator, budget, executor=executor, clock=clock,
                      budget_rules=rules, export_allowance=allowance)
    return loop.run()


@pytest.mark.parametrize("method,budget,workers", [
    ("asha", 7200.0, 1), ("random", 7200.0, 1), ("defaults", 3600.0, 1), ("asha", 7200.0, 4),
])
def test_the_loop_ends_within_the_budget_for_every_optimizer(runs, method, budget, workers):
    table = _defaults_table(runs) if method == "defaults" else runs
    before = _simulate(table, method, budget, rules=False, workers=workers)
    assert before.elapsed > budget  # without the rules a step runs past the budget
    after = _simulate(table, method, budget, rules=True, workers=workers)
    assert after.elapsed <= budget * 1.02, (method, after.elapsed)
    assert after.why == "budget" and after.steps > 0
    assert after.elapsed >= 0.8 * budget  # ...and the budget is still used


def test_declined_steps_are_journaled_and_told_and_the_export_allowance_is_kept(tmp_path, runs):
    out = _simulate(runs, "asha", 7200.0, rules=True, out=tmp_path, allowance=600.0)
    assert out.elapsed <= (7200.0 - 600.0) * 1.02
    notes = Journal(tmp_path / "journal.jsonl").events("note")
    kinds = {n["what"] for n in notes}
    assert kinds & {"declined", "shortened"}
    for n in notes:
        if n["what"] == "declined":
            assert n["left"] <= 7200.0 - 600.0 and n["why"]


def test_only_one_step_runs_until_an_epoch_is_measured(runs):
    starts = []
    ctx = TaskContext(max_epochs=50, seed=0,
                      candidates=[Candidate(r, c) for r, c in zip(runs.run_ids, runs.configs,
                                                                     strict=True)])
    clock = SimClock()
    evaluator = SimulatedEvaluator(runs)
    loop = SearchLoop(None, get_method("asha").load()(ctx), evaluator, 3600.0,
                      executor=SimExecutor(evaluator, clock, 4), clock=clock,
                      on_event=lambda e, p: starts.append(p["elapsed"]) if e == "step" else None)
    loop.run()
    assert starts[0] == 0.0 and starts[1] > 0.0  # the second step waited for the first epoch
    assert starts[2] == starts[1]  # then the workers fill at once


def test_a_probe_is_continued_and_told_as_the_step_that_was_asked_for(runs):
    told = []
    ctx = TaskContext(max_epochs=50, seed=0,
                      candidates=[Candidate(r, c) for r, c in zip(runs.run_ids, runs.configs,
                                                                     strict=True)])
    inner = get_method("random").load()(ctx)

    class Spy:
        def ask(self, budget_left=None):
            return inner.ask(budget_left)

        def tell(self, result):
            told.append(result)
            inner.tell(result)

        def state_dict(self):
            return inner.state_dict()

        def load_state_dict(self, state):
            inner.load_state_dict(state)

    clock = SimClock()
    evaluator = SimulatedEvaluator(runs)
    loop = SearchLoop(None, Spy(), evaluator, 1e6, executor=SimExecutor(evaluator, clock, 1),
                      clock=clock, max_steps=3)
    loop.run()
    assert evaluator.steps == 6  # each trial: a one-epoch probe, then the rest
    for res in told:
        assert res.step.to_epoch == 50 and [r.epoch for r in res.records][:2] == [1, 2]
        assert "probe" not in res.step.info


def test_the_loop_stops_after_max_declines_in_a_row(tmp_path, runs):
    class Greedy:
        """Always proposes a step the optimizer itself predicts to overrun."""

        def __init__(self, inner):
            self.inner, self.told = inner, []

        def ask(self, budget_left=None):
            step = self.inner.ask(budget_left)
            if step is not None:
                step.info["predicted_seconds"] = 1e12
            return step

        def tell(self, result):
            self.told.append(result)
            self.inner.tell(result)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    ctx = TaskContext(max_epochs=50, seed=0,
                      candidates=[Candidate(r, c) for r, c in zip(runs.run_ids, runs.configs,
                                                                     strict=True)])
    greedy = Greedy(get_method("random").load()(ctx))
    out = SearchLoop(tmp_path, greedy, SimulatedEvaluator(runs), 3600.0,
                     guard=BudgetGuard(max_declines=7)).run()
    assert out.steps == 0 and out.why == "budget"
    assert len(greedy.told) == 7
    assert all(r.status == "failed" and r.reason.startswith("declined:") for r in greedy.told)
