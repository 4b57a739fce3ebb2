"""search/recovery.py: resuming a session from the run folder, and the worker-loss rule."""

from __future__ import annotations

import pytest

from hubtune.bench.simulator import SimulatedEvaluator
from hubtune.metadata import load_metadata
from hubtune.optim.registry import get_method
from hubtune.protocol.context import Candidate, TaskContext
from hubtune.protocol.steps import Step
from hubtune.search.executor import Completion
from hubtune.search.journal import Journal
from hubtune.search.loop import SearchLoop
from hubtune.search.recovery import WorkerLosses, resume_session
from hubtune.space.config import Config
from tests.helpers.paths import QT_EXTENDED


@pytest.fixture(scope="module")
def runs():
    if not QT_EXTENDED.exists():
        pytest.skip(f"shared meta-dataset absent: {QT_EXTENDED}")
    return load_metadata(QT_EXTENDED)["MED_LF"]


def _optimizer(runs):
    ctx = TaskContext(max_epochs=runs.scores.shape[1], seed=0,
                      candidates=[Candidate(r, c) for r, c in zip(runs.run_ids, runs.configs, strict=True)],
                      meta_features=runs.meta_features)
    return get_method("asha").load()(ctx)


class Told:
    """Wraps an optimizer, counting the results it is told."""

    def __init__(self, inner):
        self.inner, self.told = inner, 0

    def tell(self, result):
        self.told += 1
        self.inner.tell(result)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_resume_tells_only_results_after_the_snapshot_and_repairs_a_torn_line(tmp_path, runs):
    out = tmp_path / "run"
    SearchLoop(out, _optimizer(runs), SimulatedEvaluator(runs), budget=1e9, max_steps=6).run()
    journal = Journal(out / "journal.jsonl")
    with open(journal.path, "ab") as fh:
        fh.write(b'{"event": "result", "t": 1')  # a line cut by a kill
    opt = Told(_optimizer(runs))
    state = resume_session(journal, out / SearchLoop.SNAPSHOT, opt)
    assert len(state.results) == 6 and state.pending == {}
    assert opt.told == 0  # the snapshot had been told all six
    assert len(state.recovered) == 1 and "torn" in state.recovered[0]

    (out / SearchLoop.SNAPSHOT).write_text("{not json")
    opt = Told(_optimizer(runs))
    state = resume_session(journal, out / SearchLoop.SNAPSHOT, opt)
    assert opt.told == 6  # rebuilt from the journal: told every result
    assert len(state.recovered) == 1 and "damaged" in state.recovered[0]


def test_a_step_is_given_up_after_its_worker_died_limit_times():
    step = Step("t1", Config(model="m"), to_epoch=2)
    losses = WorkerLosses(limit=3)
    counts = [losses.record(step) for _ in range(3)]
    assert counts == [1, 2, 3]
    assert [losses.give_up(n) for n in counts] == [False, False, True]
    assert losses.record(Step("t1", Config(model="m"), to_epoch=3)) == 1  # another step
    done = Completion(step=step, worker=0, result=None, error="node died", started=10.0,
                      finished=12.5)
    res = WorkerLosses.failed(done, 3)
    assert res.status == "failed" and res.seconds == 2.5 and "node died" in res.reason
