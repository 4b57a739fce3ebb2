"""One real tiny ``hubtune run --ensemble 3``: the report's "Ensemble" section, and one
leaderboard rule for ``result.leaderboard()``, ``leaderboard.csv`` and the report's table.

Three timm test models at 32 px from random init, the ``defaults`` optimizer (each
model's default config to 2 epochs: three trials with checkpoints), as in
tests/tuner/test_ensemble.py.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from hubtune import load
from hubtune.tuner.report import build_report, export_order, summarize
from tests.helpers.chromium import ARTIFACTS, needs_chromium, render
from tests.helpers.run import finished_run

MODELS = "test_resnet,test_efficientnet,test_vit"


def run_args(data: Path, out: Path) -> list[str]:
    return ["run", str(data), "--out", str(out), "--budget", "120", "--hub", "test",
            "--models", MODELS, "--max-epochs", "2", "--image-size", "32",
            "--optimizer", "defaults", "--no-pretrained", "--threads", "1", "--log", "plain",
            "--ensemble", "3"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return finished_run(tmp_path_factory.mktemp("report-ensemble"), run_args,
                        per_class=16, size=32)[1]


def _section(html: str) -> str:
    start = html.index('<section id="ensemble">')
    return html[start:html.index("</section>", start)]


def _table_rows(block: str, table_id: str) -> list[list[str]]:
    table = block[block.index(f'id="{table_id}"'):].split("</table>")[0]
    return [re.findall(r"<td>(.*?)</td>", row) for row in table.split("<tr>")[2:]]


def test_report_shows_the_ensemble_beside_the_single_model(run):
    html = (run / "report.html").read_text()
    metrics = json.loads((run / "best" / "metrics.json").read_text())
    spec = json.loads((run / "best" / "ensemble.json").read_text())
    ens = metrics["ensemble"]
    block = _section(html)
    assert html.index('<section id="ensemble">') < html.index("<h2>Leaderboard")
    # members: trial, hub model, epoch, weight, as exported
    members = _table_rows(block, "ensemble-members")
    assert len(members) == len(spec["members"]) == ens["num_members"]
    for row, m in zip(members, spec["members"], strict=True):
        assert row[0].startswith(m["trial_id"]) and row[1] == m["model"]
        assert row[2] == str(m["epoch"]) and row[3] == f"{m['weight']:.3f}"
        assert ("(the single model)" in row[0]) == (m["trial_id"] == metrics["trial_id"])
    assert sum(float(r[3]) for r in members) == pytest.approx(1.0, abs=2e-3)
    # scores: single model and ensemble on val and test, in percent
    scores = {(r[0], r[1]): r[2:] for r in _table_rows(block, "ensemble-scores")}
    for split in ("val", "test"):
        assert scores[(("validation" if split == "val" else "test"), "single model")][0] == \
            f"{100 * metrics[split]['top1']:.2f}"
        assert scores[(("validation" if split == "val" else "test"), "ensemble")][0] == \
            f"{100 * ens[split]['top1']:.2f}"
    # cost: params, measured latency and the ratio
    single, ensemble = _table_rows(block, "ensemble-cost")
    assert single[2] == str(ens["single"]["params"]) and ensemble[2] == str(ens["params"])
    assert single[3] == f"{ens['single']['latency_ms']:.2f}"
    assert ensemble[3] == f"{ens['latency_ms']:.2f}" and ensemble[4] == f"{ens['latency_ratio']:.2f}"
    assert ens["params"] >= ens["single"]["params"] > 0 and ens["latency_ms"] > 0


def test_a_run_without_an_ensemble_has_no_ensemble_section(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    metrics = json.loads((copy / "best" / "metrics.json").read_text())
    del metrics["ensemble"]  # as a run without --ensemble exports it
    (copy / "best" / "metrics.json").write_text(json.dumps(metrics))
    (copy / "best" / "ensemble.json").unlink()
    html = build_report(copy).read_text()
    assert 'id="ensemble"' not in html and 'id="headline"' in html


def test_leaderboard_csv_and_report_use_one_rule_and_rank_1_is_exported(run):
    exported = json.loads((run / "best" / "hubtune.json").read_text())["trial_id"]
    board = load(run).leaderboard()
    rows = board.to_dict("records") if hasattr(board, "to_dict") else board
    trials, _ = summarize(run / "journal.jsonl")
    assert len(rows) == len(trials) >= 3
    rule = [t.trial_id for t in export_order(trials)]
    assert [r["trial_id"] for r in rows] == rule
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    lasts = [r["last_score"] for r in rows]
    assert lasts == sorted(lasts, reverse=True)  # latest epoch's score, what export ranks by
    assert rows[0]["trial_id"] == exported and rows[0]["exported"]
    assert [r["trial_id"] for r in rows if r["exported"]] == [exported]
    with open(run / "leaderboard.csv", newline="") as fh:
        csv_rows = list(csv.DictReader(fh))
    assert [r["trial_id"] for r in csv_rows] == rule and csv_rows[0]["exported"] == "yes"
    html = (run / "report.html").read_text()
    table = html[html.index('<table id="leaderboard">'):].split("</table>")[0]
    assert re.findall(r"<tr[^>]*><td>\d+</td><td>[^<]*</td><td>([^<]+)</td>", table) == rule
    assert f'<tr class="exported"><td>1</td><td>&#9733; exported</td><td>{exported}' in table


@needs_chromium
def test_ensemble_section_renders_in_chromium(run, tmp_path):
    shot = ARTIFACTS / "report-ensemble.png"
    probe, errors, requests = render(run / "report.html", shot, tmp_path / "profile")
    assert errors == [] and requests == []
    ens = probe["ensemble"]
    metrics = json.loads((run / "best" / "metrics.json").read_text())
    assert ens and ens["width"] > 200 and ens["height"] > 100
    assert ens["members"] == metrics["ensemble"]["num_members"]
    assert "latency ratio" in ens["text"]
    assert shot.stat().st_size > 10_000
