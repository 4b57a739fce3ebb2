"""Parallel benchmark: the event-driven multi-worker clock, asynchronous baselines, the report."""

from __future__ import annotations

import json
import math
from functools import lru_cache

import numpy as np
import pytest

from hubtune.bench.parallel import (
    main,
    paired_difference,
    parallel_summary,
    per_cell_time_to_base,
    render_parallel_md,
    speedup_ci,
    time_to_mean_regret,
)
from hubtune.bench.runner import BenchmarkError, Trajectory, run_one
from hubtune.metadata import DatasetRuns
from hubtune.optim.registry import get_method, register_method, unregister_method
from hubtune.protocol.steps import Step
from hubtune.space.config import Config
from tests.helpers.paths import QT_EXTENDED
from tests.helpers.scripted import ScriptedMethods

SHARED = QT_EXTENDED
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared meta-dataset absent: {SHARED}")


def make_runs() -> DatasetRuns:
    """'a': 3 epochs of 100 s; 'b': 2 epochs of 25 s; 'c': one slow (300 s) good epoch."""
    configs = [Config(model="m1", lr=1e-3), Config(model="m1", lr=1e-4), Config(model="m2")]
    return DatasetRuns.from_curves(
        "toy", ["a", "b", "c"], configs,
        [[0.2, 0.5, 0.6], [0.1, 0.3], [0.9]],
        [[100.0, 100.0, 100.0], [25.0, 25.0], [300.0]],
        max_epochs=3,
    )


@pytest.fixture
def recorder():
    """Register a scripted method; yields ``make(plan, **kw) -> (name, instances)``."""
    methods = ScriptedMethods("recorder")
    yield lambda plan, sleep=0.0, **kw: methods.register(plan, sleep, supports_async=True, **kw)
    methods.close()


# ------------------------------------------------------------------ the event-driven clock
def test_two_workers_overlap_and_the_run_ends_at_the_last_finish(recorder):
    runs = make_runs()
    name, _ = recorder([("a", 2), ("c", 1)])
    serial = run_one(name, runs, seed=0, budget_seconds=10_000, overhead_clock="none")
    assert serial.end_time == 500.0 and serial.times == [100.0, 200.0, 500.0]
    name, _ = recorder([("a", 2), ("c", 1)])
    par = run_one(name, runs, seed=0, budget_seconds=10_000, workers=2, overhead_clock="none")
    # both steps start at 0: a's epochs finish at 100 and 200, c's at 300
    assert par.times == [100.0, 200.0, 300.0] and par.scores == [0.2, 0.5, 0.9]
    assert par.end_reason == "exhausted" and par.end_time == 300.0  # max of finish times, not sum
    assert par.epochs == 3 and par.steps == 2


def test_results_are_told_in_finish_order_and_a_freed_worker_asks_at_once(recorder):
    runs = make_runs()
    name, made = recorder([("c", 1), ("a", 1), ("b", 2)])
    traj = run_one(name, runs, seed=0, budget_seconds=1000, workers=2, overhead_clock="none")
    rec = made[0]
    # c (0-300) and a (0-100) start together; b starts when a's worker frees (100-150)
    assert [r.trial_id for r in rec.told] == ["a", "b", "c"]
    # asks at 0, 0, 100 (a told), 150 (b told: plan empty), 300 (c told: still empty)
    assert rec.budget_left == [1000, 1000, 900, 850, 700]
    assert traj.times == [100.0, 150.0, 300.0] and traj.end_time == 300.0  # b's 0.1 at 125 is no gain


def test_optimizer_time_is_charged_serially_with_several_workers(recorder):
    runs = make_runs()
    name, _ = recorder([("a", 1), ("c", 1)], sleep=0.05)
    traj = run_one(name, runs, seed=0, budget_seconds=1000, workers=2, overhead_clock="wall")
    # one controller: a starts after one decision, c after two
    assert 100.05 <= traj.times[0] < 100.05 + 0.5
    assert 300.10 <= traj.times[1] < 300.10 + 0.5
    assert traj.overhead.decisions == 4  # two steps, then "nothing" after each tell


def test_in_flight_steps_are_truncated_at_the_budget(recorder):
    runs = make_runs()
    name, made = recorder([("c", 1), ("a", 3), ("b", 2)])
    traj = run_one(name, runs, seed=0, budget_seconds=250, workers=3, overhead_clock="none")
    # b: 25, 50; a: 100, 200 (its third epoch and c's only one would end at 300)
    assert traj.times == [25.0, 50.0, 200.0] and traj.scores == [0.1, 0.3, 0.5]
    assert traj.epochs == 4
    assert traj.end_reason == "budget" and traj.end_time == 250.0
    assert [r.trial_id for r in made[0].told] == ["b"]  # a and c were still running when the budget ran out


def test_a_trial_is_never_pending_twice(recorder):
    runs = make_runs()
    name, _ = recorder([("a", 1), ("a", 2)])
    with pytest.raises(BenchmarkError, match="while it is pending"):
        run_one(name, runs, seed=0, budget_seconds=1000, workers=2, overhead_clock="none")
    name, _ = recorder([("a", 1), ("a", 2)])  # one worker: a is told before it is proposed again
    assert run_one(name, runs, seed=0, budget_seconds=1000, overhead_clock="none").steps == 2


# ------------------------------------------------------------------ real asynchronous methods
@lru_cache(maxsize=1)
def shared_runs() -> DatasetRuns:
    from hubtune.metadata import load_metadata

    return load_metadata(SHARED)["TEX_DTD"]


class Watch:
    """Wraps a real optimizer: checks it never proposes a pending trial, records concurrency."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.pending: dict[str, Step] = {}
        self.max_pending = 0
        self.idle_asks = 0  # asks answered None while a worker was free
        self.early_promotions = 0  # promotions proposed while lower-rung steps were still running

    def ask(self, budget_left=None):
        step = self.inner.ask(budget_left)
        if step is None:
            self.idle_asks += 1
            return None
        assert step.trial_id not in self.pending, f"{step.trial_id} proposed while pending"
        if step.info.get("reason") == "promotion" and any(
                s.info.get("rung", 0) < step.info["rung"] for s in self.pending.values()):
            self.early_promotions += 1
        self.pending[step.trial_id] = step
        self.max_pending = max(self.max_pending, len(self.pending))
        return step

    def tell(self, result):
        del self.pending[result.trial_id]
        self.inner.tell(result)

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)


@needs_shared
@pytest.mark.parametrize("method", ["asha", "random"])
def test_async_baselines_keep_every_worker_busy_with_distinct_trials(method):
    runs = shared_runs()
    watches: list[Watch] = []

    def factory(ctx):
        watches.append(Watch(get_method(method).make(ctx)))
        return watches[-1]

    register_method("watched", factory, supports_async=True, replace=True)
    try:
        traj = run_one("watched", runs, seed=0, budget_seconds=4 * 3600.0, workers=8,
                       overhead_clock="none")
    finally:
        unregister_method("watched")
    w = watches[0]
    assert w.max_pending == 8 and w.idle_asks == 0  # never waits while candidates remain
    assert traj.end_reason == "budget" and traj.steps > 8
    if method == "asha":
        # asynchronous promotions (Li et al. 2020): no rung barrier
        assert w.early_promotions > 0


@needs_shared
def test_asha_with_workers_is_no_worse_at_the_same_simulated_time_on_average():
    runs = shared_runs()
    budget = 4 * 3600.0
    one = [run_one("asha", runs, seed=s, budget_seconds=budget, overhead_clock="none")
           for s in range(3)]
    four = [run_one("asha", runs, seed=s, budget_seconds=budget, workers=4,
                    overhead_clock="none") for s in range(3)]
    assert sum(t.epochs for t in four) > 3 * sum(t.epochs for t in one)
    assert np.mean([t.final_regret for t in four]) <= np.mean([t.final_regret for t in one])


# ------------------------------------------------------------------ report
def _traj(method, dataset, seed, times, regrets, budget=100.0) -> Trajectory:
    return Trajectory(method=method, dataset=dataset, seed=seed, budget=budget, times=list(times),
                      scores=[1 - r for r in regrets], regrets=list(regrets), end_time=budget)


def test_time_to_mean_regret_is_exact_on_step_functions():
    a = _traj("m", "d1", 0, [10, 50], [0.4, 0.0])
    b = _traj("m", "d2", 0, [20], [0.2])
    # mean: 1 before 10, 0.7 from 10, 0.3 from 20, 0.1 from 50
    assert time_to_mean_regret([a, b], 0.3) == 20.0
    assert time_to_mean_regret([a, b], 0.1) == 50.0
    assert time_to_mean_regret([a, b], 0.05) == math.inf


def test_speedup_against_the_one_worker_target():
    base = {("d1", 0): _traj("m", "d1", 0, [40, 100], [0.5, 0.1]),
            ("d2", 0): _traj("m", "d2", 0, [80], [0.1])}
    fast = {("d1", 0): _traj("m", "d1", 0, [10, 25], [0.5, 0.1]),
            ("d2", 0): _traj("m", "d2", 0, [20], [0.1])}
    s = speedup_ci(base, fast, budget=100.0, n_boot=50)
    assert s["target_regret"] == pytest.approx(0.1)
    assert s["time"] == 25.0 and s["speedup"] == pytest.approx(4.0)
    assert s["time_low"] <= 25.0 + 1e-9 and s["time_high"] >= 20.0
    assert per_cell_time_to_base(base, fast, 100.0) == {"median": 22.5, "reached": 1.0}
    slow = {k: _traj("m", k[0], 0, [99], [0.3]) for k in base}
    assert speedup_ci(base, slow, budget=100.0, n_boot=20)["time"] == math.inf


def test_paired_difference_and_summary_tables(tmp_path):
    ref = {("d", s): _traj("q", "d", s, [5], [0.0]) for s in range(3)}
    other = {("d", s): _traj("o", "d", s, [50], [0.2]) for s in range(3)}
    diff = paired_difference(ref, other, [100.0], np.array([1.0, 10.0, 60.0]), n_boot=20)
    assert diff["difference"]["1m40s"]["value"] == pytest.approx(-0.2)
    assert diff["ahead_share"] == pytest.approx(2 / 3) and diff["behind_share"] == 0.0
    runs = {w: [_traj(m, "d", s, [t / w], [r]) for s in range(3)
                for m, t, r in (("quicktune", 40.0, 0.0), ("asha", 20.0, 0.1))] for w in (1, 4)}
    summary = parallel_summary(runs, budget=100.0, n_boot=20, grid_points=20)
    q4 = summary["methods"]["quicktune"]["4"]
    assert q4["to_base_target"]["time"] == 10.0 and q4["to_base_target"]["speedup"] == 10.0
    assert summary["comparisons"]["asha"]["4"]["difference"]["1m40s"]["value"] == pytest.approx(-0.1)
    md = render_parallel_md(summary)
    assert "| quicktune | 4 | 3 |" in md and "10.0x" in md and "| asha | 4 | 3 |" in md
    json.dumps(summary)  # JSON-compatible


@needs_shared
def test_parallel_command_writes_the_report(tmp_path):
    out = tmp_path / "report"
    rc = main(["--metadata", str(SHARED), "--methods", "asha,random", "--workers", "1,2",
               "--datasets", "TEX_DTD", "--seeds", "2", "--seeds-for", "random=1",
               "--budget", "1h", "--cells", str(tmp_path / "cells"), "--out", str(out),
               "--reference", "asha"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["workers"] == [1, 2] and set(summary["methods"]) == {"asha", "random"}
    assert (out / "regret_parallel.png").stat().st_size > 10_000
    assert "| random | 2 | 1 |" in (out / "summary.md").read_text()
    assert set(json.loads((out / "results.json").read_text())) == {"1", "2"}
    assert (tmp_path / "cells" / "w2" / "cells" / "asha__TEX_DTD__1.json").is_file()
    assert summary["methods"]["random"]["2"]["cells"] == 1  # --seeds-for random=1
    assert main(["--metadata", str(SHARED), "--workers", "0", "--cells", str(tmp_path),
                 "--out", str(out)]) == 2
    assert main(["--metadata", str(SHARED), "--methods", "nope", "--cells", str(tmp_path),
                 "--out", str(out)]) == 2
