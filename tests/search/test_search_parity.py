"""One search engine (issue #16): ``run_one`` replays through SearchLoop with the trajectories of main.

``tests/fixtures/search_parity_main.json`` holds trajectories computed by
main's own ``run_one`` (its separate heap-of-pending-steps runner) before it
went through :class:`~hubtune.search.loop.SearchLoop`. Without the budget
rules the loop must reproduce them exactly; with them (the default) every
improvement up to the first time a rule acts (a step shortened or declined,
or asking stopped because nothing fits) is the same, and the run never
trains past its budget.
"""

from __future__ import annotations

import json
import math

import pytest

from hubtune.bench.runner import fold_train_metadata, run_one
from hubtune.metadata import load_metadata
from hubtune.optim.registry import get_method
from tests.helpers.paths import FIXTURES, QT_EXTENDED

SHARED = QT_EXTENDED
FIXTURE = FIXTURES / "search_parity_main.json"
KEYS = ("times", "scores", "end_time", "end_reason", "steps", "epochs", "trials")


@pytest.fixture(scope="module")
def meta():
    if not SHARED.exists():
        pytest.skip(f"shared meta-dataset absent: {SHARED}")
    return load_metadata(SHARED)


def _cases():
    return json.loads(FIXTURE.read_text())["trajectories"]


def _run(meta, case, **kw):
    train = (fold_train_metadata(meta, case["dataset"])
             if get_method(case["method"]).needs_metadata else None)
    return run_one(case["method"], meta[case["dataset"]], seed=case["seed"],
                   budget_seconds=case["budget"], workers=case["workers"],
                   overhead_clock="none", train_metadata=train, **kw)


def _ids(case):
    return f"{case['dataset']}-{case['method']}-w{case['workers']}-s{case['seed']}"


@pytest.mark.parametrize("case", _cases(), ids=_ids)
def test_loop_without_budget_rules_reproduces_main(meta, case):
    traj = _run(meta, case, budget_rules=False)
    got = traj.to_dict()
    assert {k: got[k] for k in KEYS} == {k: case[k] for k in KEYS}


@pytest.mark.parametrize("case", _cases(), ids=_ids)
def test_budget_rules_change_nothing_before_they_act(meta, case):
    acted = [math.inf]

    def hook(event, payload):
        step = payload.get("step")
        if event == "declined" or (event == "step" and "shortened_from" in step.info):
            acted[0] = min(acted[0], payload["elapsed"])
        if event == "end" and payload["why"] == "budget" and payload["elapsed"] < case["budget"]:
            acted[0] = min(acted[0], payload["elapsed"])  # stopped asking: nothing fits

    traj = _run(meta, case, on_event=hook)
    before = [(t, s) for t, s in zip(case["times"], case["scores"], strict=True) if t <= acted[0]]
    now = [(t, s) for t, s in zip(traj.times, traj.scores, strict=True) if t <= acted[0]]
    assert now == before
    assert traj.end_time <= case["budget"]
