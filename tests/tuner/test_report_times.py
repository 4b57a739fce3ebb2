"""The report's time axis is the budget clock (wall clock summed over sessions), not summed step seconds."""

from __future__ import annotations

import json

from hubtune.search.journal import Journal
from hubtune.tuner.report import result_times


def test_result_times_follow_the_budget_clock_across_resumes_and_parallel_steps(tmp_path):
    path = tmp_path / "journal.jsonl"
    events = [
        {"event": "start", "t": 100.0},
        {"event": "ask", "t": 101.0},
        {"event": "ask", "t": 101.5},
        # two steps of 30 s each ran at once on two workers: both done 31 s in
        {"event": "result", "t": 131.0, "seconds": 30.0},
        {"event": "result", "t": 131.5, "seconds": 30.0},
        {"event": "ask", "t": 132.0},  # then the driver died
        {"event": "start", "t": 500.0},  # resumed much later: the gap is not budget
        {"event": "result", "t": 520.0, "seconds": 20.0},
        {"event": "end", "t": 521.0},
    ]
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    assert result_times(Journal(path)) == [31.0, 31.5, 32.0 + 20.0]
