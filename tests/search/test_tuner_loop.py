"""The journaled search loop: budget, crash-resume, checkpoint quota, report (on a replayed table)."""

from __future__ import annotations

import json

import pytest

from hubtune.bench.simulator import SimulatedEvaluator
from hubtune.core.units import QuotaError, parse_size
from hubtune.metadata import load_metadata
from hubtune.optim.registry import get_method
from hubtune.protocol.context import Candidate, TaskContext
from hubtune.search.journal import Journal, replay
from hubtune.search.loop import SearchLoop
from hubtune.tuner.report import build_report
from hubtune.tuner.store import CheckpointStore
from tests.helpers.paths import QT_EXTENDED

SHARED = QT_EXTENDED


@pytest.fixture(scope="module")
def runs():
    if not SHARED.exists():
        pytest.skip(f"shared meta-dataset absent: {SHARED}")
    md = load_metadata(SHARED)
    return md["MED_LF"]


def _optimizer(runs, method="asha", seed=0):
    ctx = TaskContext(
        max_epochs=runs.scores.shape[1],
        seed=seed,
        candidates=[Candidate(r, c) for r, c in zip(runs.run_ids, runs.configs, strict=True)],
        meta_features=runs.meta_features,
    )
    return get_method(method).load()(ctx)


class Crash(RuntimeError):
    pass


class CrashingEvaluator:
    """Replays the table but dies (like a killed process) on the n-th step."""

    def __init__(self, inner, crash_at):
        self.inner, self.crash_at, self.calls = inner, crash_at, 0

    def advance(self, step):
        self.calls += 1
        if self.calls == self.crash_at:
            raise Crash("killed mid-step")
        return self.inner.advance(step)


def _trace(results):
    return [(r.trial_id, r.step.to_epoch, [rec.epoch for rec in r.records]) for r in results]


def test_resume_after_crash_matches_uninterrupted_run(tmp_path, runs):
    steps = 40
    ref = SearchLoop(tmp_path / "ref", _optimizer(runs), SimulatedEvaluator(runs), budget=1e9,
                     max_steps=steps).run()

    out = tmp_path / "crashy"
    loop = SearchLoop(out, _optimizer(runs), CrashingEvaluator(SimulatedEvaluator(runs), 17),
                      budget=1e9, max_steps=steps)
    with pytest.raises(Crash):
        loop.run()
    history = replay(Journal(out / "journal.jsonl"))
    assert len(history.results) == 16
    assert len(history.interrupted) == 1  # the step that was running

    # The simulator of the resumed process must stand where the checkpoints stood.
    sim = SimulatedEvaluator(runs)
    for res in history.results:
        sim.epochs[res.trial_id] = max(sim.epochs.get(res.trial_id, 0), res.last_epoch)
    resumed = SearchLoop(out, _optimizer(runs), sim, budget=1e9, max_steps=steps - 16).run()
    assert _trace(resumed.results) == _trace(ref.results)
    assert resumed.incumbent.score == ref.incumbent.score
    # nothing lost, nothing duplicated in the journal
    final = replay(Journal(out / "journal.jsonl"))
    assert _trace(final.results) == _trace(ref.results)
    assert final.interrupted == []


def test_budget_is_summed_across_sessions(tmp_path, runs):
    out = tmp_path / "run"
    out.mkdir()
    (out / "journal.jsonl").write_text(
        json.dumps({"event": "start", "t": 100.0, "settings": {}}) + "\n"
        + json.dumps({"event": "end", "t": 130.0, "why": "crash"}) + "\n"
    )
    loop = SearchLoop(out, _optimizer(runs), SimulatedEvaluator(runs), budget=25.0)
    outcome = loop.run()
    assert outcome.why == "budget"
    assert outcome.steps == 0  # 30 s already used of a 25 s budget
    assert outcome.elapsed >= 30.0


def test_declines_a_step_predicted_to_overrun(tmp_path, runs):
    class Greedy:
        def __init__(self, inner):
            self.inner = inner

        def ask(self, budget_left=None):
            step = self.inner.ask(budget_left)
            step.info["predicted_seconds"] = 1e12
            return step

        def __getattr__(self, name):
            return getattr(self.inner, name)

    outcome = SearchLoop(tmp_path, Greedy(_optimizer(runs)), SimulatedEvaluator(runs),
                         budget=3600).run()
    assert outcome.steps == 0 and outcome.why == "budget"
    notes = Journal(tmp_path / "journal.jsonl").events("note")
    assert notes and notes[0]["what"] == "declined"


def test_report_from_journal(tmp_path, runs):
    SearchLoop(tmp_path, _optimizer(runs), SimulatedEvaluator(runs), budget=1e9, max_steps=25).run()
    html = build_report(tmp_path).read_text()
    for png in ("learning_curves.png", "incumbent.png"):  # asha makes no predictions
        assert (tmp_path / png).stat().st_size > 1000
        assert f'data-file="{png}"' in html and "data:image/png;base64," in html
    assert not (tmp_path / "predicted_vs_observed.png").exists()
    rows = (tmp_path / "leaderboard.csv").read_text().splitlines()
    assert rows[0].startswith("rank,trial_id,model")
    assert len(rows) > 2


def test_checkpoint_quota_evicts_least_promising_first(tmp_path):
    store = CheckpointStore(tmp_path, quota="2500B")
    for i, name in enumerate(["a", "b", "c", "d"]):
        d = store.trial_dir(name)
        d.mkdir()
        (d / "checkpoint.json").write_text("{}")
        (d / f"tensors-1-{i}.safetensors").write_bytes(b"x" * 1000)
        (d / "records.jsonl").write_text("{}\n")
    evicted = store.enforce_quota({"a": 0.9, "b": 0.1, "c": 0.5, "d": 0.2}, protected={"b"})
    assert [e.trial_id for e in evicted] == ["d", "c"]
    assert store.has_checkpoint("b") and store.has_checkpoint("a")
    assert not store.has_checkpoint("d")
    assert (store.trial_dir("d") / "records.jsonl").exists()  # records are kept
    assert store.usage() <= 2500


def test_parse_size():
    assert parse_size("2GB") == 2 * 10**9
    assert parse_size("1GiB") == 2**30
    with pytest.raises(QuotaError, match="cannot read disk size"):
        parse_size("lots")


class RecordingOptimizer:
    """Forwards to ``inner``; keeps every step it handed out, with a copy of its ``info``."""

    def __init__(self, inner):
        self.inner, self.asked = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def ask(self, budget_left=None):
        step = self.inner.ask(budget_left=budget_left)
        if step is not None:
            self.asked.append((step, dict(step.info)))
        return step


class DeadlineSeenEvaluator:
    """Replays the table; records the ``stop_at`` deadline each step carried."""

    def __init__(self, inner):
        self.inner, self.deadlines = inner, []

    def advance(self, step):
        self.deadlines.append(step.info.get("stop_at"))
        return self.inner.advance(step)


def test_deadline_reaches_trainer_without_mutating_the_optimizers_step(tmp_path, runs):
    opt = RecordingOptimizer(_optimizer(runs))
    ev = DeadlineSeenEvaluator(SimulatedEvaluator(runs))
    SearchLoop(tmp_path / "run", opt, ev, budget=1e9, max_steps=5).run()
    assert len(opt.asked) == 5 and len(ev.deadlines) == 5
    assert all(d is not None for d in ev.deadlines)  # the trainer still gets the deadline
    for step, info_at_ask in opt.asked:
        assert "stop_at" not in step.info
        assert step.info == info_at_ask
