"""Fault-injection suite (issue #14): a real run killed at 20 seeded random moments,
its journal torn, its optimizer snapshot and one checkpoint damaged and a second
writer started on it;
after the final resume every invariant of the run folder holds.

The campaign itself lives in ``benchmarks/fault_injection.py`` (run it there for
more kills); this test prints its figure (faults injected / survived).
"""

from __future__ import annotations

import sys

from tests.helpers.paths import BENCHMARKS

sys.path.insert(0, str(BENCHMARKS))

from fault_injection import report, run_campaign  # noqa: E402


def test_twenty_random_kills_plus_torn_damaged_and_concurrent_cases(tmp_path):
    campaign = run_campaign(tmp_path, kills=20, seed=7, budget=120.0, max_delay=4.0)
    print("\n" + report(campaign))
    assert campaign.injected.get("kill -9", 0) >= 15  # a few sessions may finish first
    assert campaign.injected.get("torn journal tail", 0) >= 1
    assert campaign.injected.get("damaged optimizer_state.json", 0) >= 1
    assert campaign.injected.get("concurrent second writer", 0) == 1
    assert campaign.injected.get("corrupt trial checkpoint", 0) <= 1  # needs two checkpoints
    assert campaign.violations == []
    assert campaign.figures["epochs"] >= 1  # (a loaded machine spends most sessions starting up)
