"""benchmarks/calibration.py: predicted vs observed scores of a run folder's journal (issue #13)."""

from __future__ import annotations

import json
import math
import sys

import pytest

from tests.helpers.paths import BENCHMARKS
from tests.helpers.run import finished_run, quicktune_run_args

sys.path.insert(0, str(BENCHMARKS))

from calibration import main, read_points  # noqa: E402


def _event(kind: str, trial: str, to_epoch: int, info: dict | None = None,
           records: list[tuple[int, float]] | None = None) -> str:
    step = {"trial_id": trial, "config": {"model": "m"}, "to_epoch": to_epoch, "info": info or {}}
    entry: dict = {"event": kind, "t": 0.0, "step": step}
    if kind == "result":
        entry.update(status="ok", seconds=1.0,
                     records=[{"epoch": e, "score": s, "train_seconds": 1.0} for e, s in records or []])
    return json.dumps(entry)


def test_figures_of_a_hand_written_journal(tmp_path, capsys):
    p = {"mean": 0.6, "std": 0.1, "noise_std": 0.05}
    lines = [
        # trial a: new config, observed 0.55 (inside +-1 std), then a continuation to epoch 3
        _event("ask", "a", 1, p), _event("result", "a", 1, p, [(1, 0.55)]),
        # trial b: new config, observed 0.2 (40 points below, outside)
        _event("ask", "b", 1, p), _event("result", "b", 1, p, [(1, 0.2)]),
        _event("ask", "a", 3, {"mean": 0.7, "std": 0.01}),
        _event("result", "a", 3, {"mean": 0.7, "std": 0.01}, [(2, 0.6), (3, 0.68)]),
        # a default-config anchor of an older journal: no prediction
        _event("ask", "c", 1, {"why": "default"}), _event("result", "c", 1, {"why": "default"}, [(1, 0.5)]),
        # new config asked after 5 observed epochs, observed 0.7 (+10 points, on the edge)
        _event("ask", "d", 2, p), _event("result", "d", 2, p, [(1, 0.65), (2, 0.7)]),
        # a step that ended before its target epoch has nothing to compare
        _event("ask", "e", 4, p), _event("result", "e", 4, p, [(1, 0.1)]),
        '{"event": "result", "t": 0, "step": {"trial_id": "tor',  # torn last line
    ]
    run = tmp_path / "run"
    run.mkdir()
    (run / "journal.jsonl").write_text("\n".join(lines) + "\n")
    points, missing = read_points(run / "journal.jsonl")
    assert missing == 1 and [pt.kind for pt in points] == ["new", "new", "continuation", "new"]
    assert [pt.observed_before for pt in points] == [0, 1, 2, 5]
    out = main([str(run)])["runs"][str(run)]
    new, cont = out["new"], out["continuation"]
    assert new["n"] == 3 and new["inside_1std"] == pytest.approx(2 / 3)
    assert new["mean_signed_error_points"] == pytest.approx((-5 - 40 + 10) / 3)
    assert new["mean_abs_error_points"] == pytest.approx((5 + 40 + 10) / 3)
    # with the noise (sd 0.112) the 40-point miss is still outside
    assert new["inside_1sd_noise"] == pytest.approx(2 / 3)
    assert cont["n"] == 1 and cont["inside_1std"] == 0.0 and cont["inside_1sd_noise"] is None
    assert cont["mean_signed_error_points"] == pytest.approx(-2.0)
    warm = out["new_after_5_observations"]
    assert warm["n"] == 1 and warm["mean_signed_error_points"] == pytest.approx(10.0)
    assert out["all"]["n"] == 4 and out["no_prediction"] == 1
    text = capsys.readouterr().out
    assert "new after 5 observations" in text and "67%" in text


def test_a_real_quicktune_run_folder(tmp_path):
    _, run = finished_run(tmp_path, quicktune_run_args, per_class=12, size=24)
    results = [json.loads(line) for line in (run / "journal.jsonl").read_text().splitlines()
               if '"event": "result"' in line]
    reached = [r for r in results if any(rec["epoch"] == r["step"]["to_epoch"] for rec in r["records"])]
    out = main([str(run), str(run), "--json", str(tmp_path / "cal.json")])
    rep = out["runs"][str(run)]
    # every step is a prediction: quicktune records one for its default-config anchors too
    assert rep["no_prediction"] == 0 and rep["all"]["n"] == len(reached) >= 2
    trials = {r["step"]["trial_id"] for r in reached if r["records"][0]["epoch"] == 1}
    assert rep["new"]["n"] == len(trials) and rep["new"]["n"] + rep["continuation"]["n"] == len(reached)
    for group in ("new", "all"):
        s = rep[group]
        assert 0.0 <= s["inside_1std"] <= s["inside_1sd_noise"] <= 1.0
        assert math.isfinite(s["mean_signed_error_points"]) and s["mean_abs_error_points"] >= 0
    assert json.loads((tmp_path / "cal.json").read_text())["pooled"]["all"]["n"] == 2 * len(reached)
