"""benchmarks/prediction_replay.py: replaying a run's journal reproduces the predictions it made."""

from __future__ import annotations

import sys
from functools import partial

import pytest

from tests.helpers.paths import BENCHMARKS
from tests.helpers.run import finished_run, quicktune_run_args

sys.path.insert(0, str(BENCHMARKS))

from calibration import read_points  # noqa: E402
from prediction_replay import PAUSED, final_scores, replay  # noqa: E402


@pytest.mark.slow  # a real 60 s run
def test_replay_reproduces_the_journaled_predictions_and_a_what_if_noise_changes_them(tmp_path):
    _, run = finished_run(tmp_path, partial(quicktune_run_args, budget="60"), per_class=12, size=24)
    journaled, _ = read_points(run / "journal.jsonl")
    replayed = replay(run, None)
    assert len(journaled) >= 2 and len(replayed) == len(journaled)
    for a, b in zip(replayed, journaled, strict=True):
        assert (a.kind, a.observed, a.observed_before) == (b.kind, b.observed, b.observed_before)
        assert a.mean == pytest.approx(b.mean, abs=1e-5) and a.std == pytest.approx(b.std, abs=1e-5)
        assert a.noise_std == pytest.approx(b.noise_std, abs=1e-5)
    # the what-if noise changes the predictions after the first observation
    changed = replay(run, None, noise_sd=0.2)
    assert any(abs(a.std - b.std) > 1e-4 for a, b in zip(changed[1:], replayed[1:], strict=True))

    # --final-truth: the run is its own truth for the trials it trained to the last epoch; every
    # paused state of such a trial is predicted at that epoch and compared with the score it reached
    truth = final_scores([run])
    assert truth and all(seed == 0 for seed, _ in truth)
    with_paused = replay(run, None, truth=truth)
    paused = [p for p in with_paused if p.kind == PAUSED]
    assert [p for p in with_paused if p.kind != PAUSED] == replayed
    assert paused, "no trial was paused before the epoch it finished at"
    assert all(p.observed in truth.values() and p.std > 0 for p in paused)
