"""Simulated benchmark: replay evaluator, runner clock rules, leakage guard, metrics, CLI."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from hubtune.bench.metrics import (
    average_ranks,
    bootstrap_ci,
    iqm,
    mean_stat,
    rank_rows,
    regret_curve,
    time_to_regret,
)
from hubtune.bench.runner import (
    BenchmarkError,
    LeakageError,
    Trajectory,
    fold_train_metadata,
    make_folds,
    normalized_regret,
    run_one,
)
from hubtune.bench.simulator import SimulatedEvaluator, SimulationError
from hubtune.cli import app
from hubtune.core.units import DurationError, format_duration, parse_duration
from hubtune.metadata import DatasetRuns, MetaDataset
from hubtune.optim.registry import register_method, unregister_method
from hubtune.protocol.steps import Step
from hubtune.space.config import Config
from tests.helpers.paths import QT_EXTENDED
from tests.helpers.scripted import Scripted, ScriptedMethods

SHARED = QT_EXTENDED


def make_runs(name: str = "toy") -> DatasetRuns:
    """Three runs: 'a' (3 epochs of 100 s), 'b' ends after 2 epochs, 'c' a slow single good epoch."""
    configs = [Config(model="m1", lr=1e-3), Config(model="m1", lr=1e-4), Config(model="m2")]
    return DatasetRuns.from_curves(
        name,
        ["a", "b", "c"],
        configs,
        [[0.2, 0.5, 0.6], [0.1, 0.3], [0.9]],
        [[100.0, 100.0, 100.0], [50.0, 50.0], [300.0]],
        max_epochs=3,
    )


@pytest.fixture
def scripted():
    """Register a scripted method; yields ``register(plan, **kw) -> name``."""
    methods = ScriptedMethods("scripted")
    yield lambda plan, **kw: methods.register(plan, **kw)[0]
    methods.close()


# ------------------------------------------------------------------ budget
def test_parse_duration_forms_and_errors():
    assert parse_duration("3600") == 3600
    assert parse_duration("30m") == 1800
    assert parse_duration("4h") == 4 * 3600
    assert parse_duration("1h30m") == 5400
    assert parse_duration(90) == 90
    assert format_duration(16 * 3600) == "16h"
    for bad in ("", "abc", "-5", "0", "4x", "1h x"):
        with pytest.raises(DurationError):
            parse_duration(bad)


# ------------------------------------------------------------------ simulator
def test_simulator_charges_start_and_resume_overheads():
    runs = make_runs()
    ev = SimulatedEvaluator(runs, resume_overhead=7.0, start_overhead=20.0)
    r1 = ev.advance(Step("a", runs.configs[0], 1))
    assert [r.epoch for r in r1.records] == [1]
    assert r1.seconds == pytest.approx(120.0)
    assert r1.records[0].checkpoint_seconds == 20.0 and r1.records[0].score == 0.2
    assert r1.status == "ok"
    r2 = ev.advance(Step("a", runs.configs[0], 3))
    assert [r.epoch for r in r2.records] == [2, 3]  # continued, not restarted
    assert [r.score for r in r2.records] == [0.5, 0.6]
    assert r2.seconds == pytest.approx(207.0)
    assert sum(r.seconds for r in r2.records) == pytest.approx(r2.seconds)
    assert r2.status == "ended"  # reached the end of its curve (= max_epochs)


def test_simulator_early_ending_curve_and_errors():
    runs = make_runs()
    ev = SimulatedEvaluator(runs)
    res = ev.advance(Step("b", runs.configs[1], 3))
    assert [r.epoch for r in res.records] == [1, 2]
    assert res.status == "ended" and "ends at epoch 2" in res.reason
    again = ev.advance(Step("b", runs.configs[1], 3))  # nothing left: no records
    assert again.records == [] and again.status == "ended"
    ev.advance(Step("a", runs.configs[0], 2))
    with pytest.raises(SimulationError, match="already stands at epoch 2"):
        ev.advance(Step("a", runs.configs[0], 1))
    with pytest.raises(SimulationError, match="unknown trial"):
        ev.advance(Step("zzz", runs.configs[0], 1))
    # a '#tag' trial restarts the same run from scratch and pays again
    restart = ev.advance(Step("a#r1", runs.configs[0], 2))
    assert [r.epoch for r in restart.records] == [1, 2] and restart.seconds == 200.0
    with pytest.raises(ValueError, match="resume_overhead"):
        SimulatedEvaluator(runs, resume_overhead=-1)


# ------------------------------------------------------------------ runner clock
def test_runner_truncates_at_budget_and_counts_epochs_as_they_finish(scripted):
    runs = make_runs()
    name = scripted([("a", 3)])
    traj = run_one(name, runs, seed=0, budget_seconds=250, overhead_clock="none",
                   budget_rules=False)
    assert traj.times == [100.0, 200.0]  # epoch 3 would finish at 300 > 250
    assert traj.scores == [0.2, 0.5]
    assert traj.end_reason == "budget" and traj.end_time == 250
    assert traj.regrets[-1] == pytest.approx((0.9 - 0.5) / (0.9 - 0.1))
    # With the budget rules: the first step, measured by nothing, runs too (and is cut off).
    ruled = run_one(scripted([("a", 3)]), runs, seed=0, budget_seconds=250,
                    overhead_clock="none")
    assert ruled.times == [100.0, 200.0] and ruled.end_time == 250


def test_runner_overheads_and_exhaustion(scripted):
    runs = make_runs()
    name = scripted([("a", 1), ("c", 1), ("a", 2)])
    traj = run_one(name, runs, seed=0, budget_seconds=10_000, start_overhead=10,
                   resume_overhead=5, overhead_clock="none")
    # a:1 ends 110; c:1 ends 110+310=420 (new best 0.9); a:2 resumes: 420+5+100=525 (0.5 < 0.9)
    assert traj.times == [110.0, 420.0]
    assert traj.end_reason == "exhausted" and traj.end_time == pytest.approx(525.0)
    assert traj.final_regret == 0.0
    assert traj.steps == 3 and traj.epochs == 3 and traj.trials == 2


def test_runner_charges_optimizer_time(scripted):
    runs = make_runs()
    name = scripted([("a", 1)], sleep=0.05)
    traj = run_one(name, runs, seed=0, budget_seconds=1000, overhead_clock="wall")
    assert traj.times[0] >= 100.05
    assert traj.overhead.decisions == 2 and traj.overhead.max_seconds >= 0.05
    assert traj.overhead.clock == "wall"


def test_offline_prepare_is_not_charged_but_building_is():
    runs = make_runs()
    prepared = []

    def prepare(ctx):
        time.sleep(0.3)
        prepared.append(ctx.dataset)

    def build(ctx):
        time.sleep(0.05)
        return Scripted(ctx, [("a", 1)])

    register_method("prepared_method", build, prepare=prepare)
    try:
        traj = run_one("prepared_method", runs, seed=0, budget_seconds=1000,
                       overhead_clock="wall")
    finally:
        unregister_method("prepared_method")
    assert prepared == ["toy"]
    assert 100.05 <= traj.times[0] < 100.25


def test_runner_async_workers_run_steps_concurrently(scripted):
    runs = make_runs()
    serial = run_one(scripted([("c", 1), ("a", 1)]), runs, seed=0, budget_seconds=1000,
                     overhead_clock="none")
    name = scripted([("c", 1), ("a", 1)], supports_async=True)
    parallel = run_one(name, runs, seed=0, budget_seconds=1000, workers=2,
                       overhead_clock="none", budget_rules=False)
    assert serial.times == [300.0]  # a's 0.2 at 400 is no improvement
    assert parallel.times == [100.0, 300.0]  # a finishes first on the second worker
    # The budget rules (default) start both workers at once too.
    guarded = run_one(scripted([("c", 1), ("a", 1)], supports_async=True), runs, seed=0,
                      budget_seconds=1000, workers=2, overhead_clock="none")
    assert guarded.times == [100.0, 300.0] and guarded.end_time == 300.0
    with pytest.raises(BenchmarkError, match="does not support several workers"):
        run_one(scripted([("a", 1)]), runs, seed=0, budget_seconds=10, workers=2)
    bad = scripted([("a", 1), ("a", 2)], supports_async=True)
    with pytest.raises(BenchmarkError, match="while it is pending"):
        run_one(bad, runs, seed=0, budget_seconds=1000, workers=2, overhead_clock="none",
                budget_rules=False)


def test_runner_pending_epochs_before_budget_still_count(scripted):
    runs = make_runs()
    name = scripted([("c", 1), ("a", 3)], supports_async=True)
    traj = run_one(name, runs, seed=0, budget_seconds=250, workers=2, overhead_clock="none",
                   budget_rules=False)
    # c (300 s) never finishes; a's epochs 1 and 2 finish at 100 and 200
    assert traj.times == [100.0, 200.0] and traj.end_reason == "budget"


# ------------------------------------------------------------------ leakage
def _meta(names):
    return MetaDataset([make_runs(n) for n in names])


def test_leakage_guard(scripted):
    meta = _meta(["A", "B", "C", "D"])
    name = scripted([("a", 1)], needs_metadata=True)
    with pytest.raises(LeakageError, match="contains it"):
        run_one(name, meta["A"], seed=0, budget_seconds=100, train_metadata=meta)
    with pytest.raises(BenchmarkError, match="needs meta-training data"):
        run_one(name, meta["A"], seed=0, budget_seconds=100)
    train = fold_train_metadata(meta, "A")
    assert train.datasets == ["B", "C", "D"]
    traj = run_one(name, meta["A"], seed=0, budget_seconds=1000, train_metadata=train)
    assert traj.scores == [0.2]
    folds = make_folds(meta.datasets, 2)
    assert folds == [["A", "C"], ["B", "D"]]
    assert fold_train_metadata(meta, "A", folds=2).datasets == ["B", "D"]
    # the test dataset is removed by name even from another meta-dataset
    assert fold_train_metadata(_meta(["A", "X"]), "A", ["A", "B"]).datasets == ["X"]


# ------------------------------------------------------------------ metrics
def test_regret_and_metrics_on_hand_made_runs():
    runs = make_runs()
    assert (runs.best, runs.worst) == (0.9, 0.1)
    assert normalized_regret(0.5, runs.best, runs.worst) == pytest.approx(0.5)
    assert normalized_regret(None, 0.9, 0.1) == 1.0
    traj = Trajectory("m", "toy", 0, 1000, times=[100.0, 400.0], scores=[0.5, 0.9],
                      regrets=[0.5, 0.0])
    assert traj.regret_at(50) == 1.0 and traj.regret_at(100) == 0.5 and traj.regret_at(999) == 0
    assert regret_curve(traj, np.array([50.0, 100.0, 399.0, 400.0])).tolist() == [1, 0.5, 0.5, 0]
    assert time_to_regret(traj, 0.05) == 400.0
    assert math.isinf(time_to_regret(traj, -1))
    assert iqm(np.array([0.0, 1.0, 2.0, 3.0, 100.0, -100.0, 1.5, 2.5])) == pytest.approx(1.75)
    assert rank_rows(np.array([0.3, 0.1, 0.3])).tolist() == [2.5, 1.0, 2.5]
    ranks = average_ranks({"x": np.array([[0.1], [0.5]]), "y": np.array([[0.2], [0.5]])})
    assert ranks["x"].ravel().tolist() == [1.0, 1.5] and ranks["y"].ravel().tolist() == [2.0, 1.5]
    values = np.random.default_rng(0).normal(size=200)
    est, lo, hi = bootstrap_ci(values, mean_stat, n_boot=300)
    assert lo < est < hi and hi - lo < 0.5


# ------------------------------------------------------------------ CLI
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared meta-dataset absent: {SHARED}")


@needs_shared
def test_bench_cli_writes_results_summary_plots_and_reuses_cells(tmp_path):
    cli = CliRunner()
    out = tmp_path / "out"
    args = ["bench", "--metadata", str(SHARED), "--datasets", "APL,BCT", "--seeds", "2",
            "--budget", "1h", "--methods", "random,asha,best_on_average", "--out", str(out)]
    res = cli.invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "results.json").read_text())
    assert set(doc["methods"]) == {"random", "asha", "best_on_average"}
    cell = doc["methods"]["asha"]["APL"]["1"]
    assert cell["trajectory"] and all(len(p) == 3 for p in cell["trajectory"])
    assert all(0 <= p[1] <= 1 and p[0] <= 3600 for p in cell["trajectory"])
    assert cell["overhead"]["decisions"] > 0
    summary = (out / "summary.md").read_text()
    assert "| asha |" in summary and "Average rank" in summary and "1h" in summary
    assert (out / "regret.png").stat().st_size > 1000 and (out / "rank.png").is_file()
    assert len(list((out / "cells").glob("*.json"))) == 12
    again = cli.invoke(app, args)
    assert again.exit_code == 0 and "12 cells reused" in again.output
    rerun = cli.invoke(app, [*args, "--rerun", "asha"])
    assert rerun.exit_code == 0 and "8 cells reused" in rerun.output
    assert "hubtune" in json.loads((out / "results.json").read_text())["code_version"]


@needs_shared
def test_bench_cli_bad_input_gives_one_line_errors(tmp_path):
    cli = CliRunner()
    base = ["bench", "--metadata", str(SHARED), "--out", str(tmp_path / "o")]
    res = cli.invoke(app, [*base, "--budget", "soon"])
    assert res.exit_code == 2 and "invalid duration 'soon'" in res.output
    res = cli.invoke(app, [*base, "--methods", "nope"])
    assert res.exit_code == 2 and "unknown method 'nope'" in res.output and "random" in res.output
    res = cli.invoke(app, [*base, "--datasets", "XYZ"])
    assert res.exit_code == 2 and "unknown dataset(s) XYZ" in res.output
    res = cli.invoke(app, ["bench", "--metadata", str(tmp_path / "missing"), "--out", "o"])
    assert res.exit_code == 2 and "error:" in res.output and "Traceback" not in res.output


@needs_shared
def test_random_replay_of_full_grid_is_fast(tmp_path):
    from hubtune.bench.suite import BenchSettings, run_grid
    from hubtune.metadata import load_metadata

    meta = load_metadata(SHARED)
    settings = BenchSettings(metadata=str(SHARED), budget=16 * 3600)
    t0 = time.perf_counter()
    trajs, failures, reused = run_grid(settings, ["random"], meta.datasets, range(10), tmp_path)
    elapsed = time.perf_counter() - t0
    assert not failures and len(trajs) == 200 and reused == 0
    assert elapsed < 30, f"replaying random search on 20 x 10 x 16 h took {elapsed:.1f} s"
