"""report.html and leaderboard.csv of real tiny runs: the headline (chosen model, its
scores with sampling errors, the best default config, time and why the run ended), the
leaderboard's export rule, self-contained plots, the time breakdown, and a run where
every candidate failed; both pages rendered in a real headless Chromium
(tests/helpers/chromium.py), their screenshots kept in test-artifacts/.
"""

from __future__ import annotations

import csv
import html as html_lib
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hubtune.cli import app
from hubtune.protocol.steps import step_prediction
from hubtune.search.journal import Journal, replay
from hubtune.tuner.report import TrialSummary, export_order
from hubtune.tuner.report.facts import binomial_se
from hubtune.tuner.report.headline import why_text
from tests.helpers.chromium import ARTIFACTS, needs_chromium, render


def tiny_run(out: Path, *extra: str, budget: str = "40") -> int:
    """A real run on 200 digits with two timm test models at 32 px (exit code)."""
    args = ["run", "digits:200", "--out", str(out), "--hub", "test", "--image-size", "32",
            "--max-epochs", "2", "--threads", "1", "--log", "plain", "--budget", budget, *extra]
    res = CliRunner().invoke(app, args)
    assert (out / "report.html").exists(), res.output
    return res.exit_code


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "tiny"
    assert tiny_run(out, "--models", "test_resnet,test_efficientnet", "--no-pretrained") == 0
    return out


@pytest.fixture(scope="module")
def all_failed(tmp_path_factory) -> tuple[Path, int]:
    # timm test models have no offline pretrained weights: every candidate fails
    out = tmp_path_factory.mktemp("report") / "all-failed"
    return out, tiny_run(out, "--models", "test_resnet,test_vit")


def _leaderboard(out: Path) -> list[dict[str, str]]:
    with open(out / "leaderboard.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_headline_names_the_model_its_scores_with_sampling_errors_and_the_run(tiny):
    html = (tiny / "report.html").read_text()
    metrics = json.loads((tiny / "best" / "metrics.json").read_text())
    meta = json.loads((tiny / "best" / "hubtune.json").read_text())
    n_val = metrics["split_sizes"]["val"]
    assert n_val > 0 and metrics["split_sizes"]["test"] > 0
    head = html[html.index('id="headline"'):html.index("<h2>")]
    assert f"Chosen model: <b>{meta['model']}</b>" in head and meta["trial_id"] in head
    p = metrics["val"]["top1"]
    assert f"{100 * p:.2f} &plusmn; {100 * binomial_se(p, n_val):.1f}" in head
    assert f"<td>{n_val}</td>" in head
    assert f"<th>lr</th><td>{meta['config']['lr']:.3g}</td>" in head
    end = Journal(tiny / "journal.jsonl").events("end")[-1]
    assert f"search ended because {html_lib.escape(why_text(end['why']))}." in head
    assert re.search(r"Used <b>[\d.]+ s</b> of a 40 s budget", head)
    # quicktune starts from each model's default config: compared with the chosen one
    assert "Best default config:" in head
    if metrics.get("near_chance"):
        assert 'id="near-chance"' in head


def test_leaderboard_ranks_by_the_export_rule_and_marks_the_exported_row(tiny):
    rows = _leaderboard(tiny)
    meta = json.loads((tiny / "best" / "hubtune.json").read_text())
    lasts = [float(r["last_val_score"]) for r in rows if r["last_val_score"]]
    assert lasts == sorted(lasts, reverse=True)
    assert all(float(r["best_val_score"]) >= float(r["last_val_score"])
               for r in rows if r["last_val_score"])
    exported = [r for r in rows if r["exported"] == "yes"]
    assert [r["trial_id"] for r in exported] == [meta["trial_id"]]
    assert exported[0]["rank"] == "1"  # every trial kept its checkpoint: export took the top
    assert any(r["default_config"] == "yes" for r in rows)
    html = (tiny / "report.html").read_text()
    assert f'<tr class="exported"><td>1</td><td>&#9733; exported</td><td>{meta["trial_id"]}' in html


def test_export_order_is_the_latest_epoch_not_the_best_epoch():
    peaked = TrialSummary("peaked", {"model": "a"}, epochs=[1, 2], scores=[0.9, 0.5])
    steady = TrialSummary("steady", {"model": "b"}, epochs=[1, 2], scores=[0.6, 0.7])
    failed = TrialSummary("failed", {"model": "c"}, status="failed", reason="boom")
    order = export_order({t.trial_id: t for t in (failed, peaked, steady)})
    assert [t.trial_id for t in order] == ["steady", "peaked", "failed"]
    assert binomial_se(0.5, 100) == pytest.approx(0.05) and binomial_se(0.5, None) is None


def test_page_is_self_contained_with_legible_plots_and_a_collapsed_decision_log(tiny):
    html = (tiny / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html) and "<script" not in html
    figures = re.findall(r'<img data-file="([a-z_]+\.png)"[^>]*src="data:image/png;base64,', html)
    assert {"learning_curves.png", "incumbent.png"} <= set(figures)
    predicted = [r for r in replay(Journal(tiny / "journal.jsonl")).results
                 if step_prediction(r.step, "mean") is not None and r.records]
    assert ("predicted_vs_observed.png" in figures) == bool(predicted)
    for name in figures:
        assert (tiny / name).stat().st_size > 5000
    assert "<details id='decision-log'><summary>" in html  # collapsed: no open attribute
    assert 'id="per-model"' in html and "test_resnet" in html


def test_time_breakdown_and_the_report_command_rebuilds_with_export_time(tiny, tmp_path):
    html = (tiny / "report.html").read_text()
    times = html[html.index('id="times"'):]
    for part in ("start-up and data loading", "training (epochs)", "validation (per epoch)",
                 "checkpoint I/O", "optimizer (telling results"):
        assert part in times
    res = CliRunner().invoke(app, ["report", str(tiny)])
    assert res.exit_code == 0, res.output
    rebuilt = (tiny / "report.html").read_text()
    assert "export of best/ and this report" in rebuilt  # the exported note is journaled now
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "not a hubtune run folder" in res.output


def test_all_failed_run_says_why_and_draws_no_empty_plots(all_failed):
    out, rc = all_failed
    assert rc == 1
    html = (out / "report.html").read_text()
    reason = [n["reason"] for n in Journal(out / "journal.jsonl").events("note")
              if n["what"] == "no_model"][-1]
    assert "failed" in reason
    block = html[html.index('id="no-model"'):]
    assert "No model was exported." in block
    assert block.index(html_lib.escape(reason)[:60]) < block.index("<h2>")
    assert "<figure" not in html and not list(out.glob("*.png"))
    failures = html[html.index('id="failures"'):].split("</table>")[0]
    results = Journal(out / "journal.jsonl").events("result")
    assert results and failures.count("<tr>") == len(results) + 1
    assert all(r["status"] == "failed" and r["reason"] for r in results)
    rows = _leaderboard(out)
    assert rows and all(r["status"] == "failed" and r["reason"] and not r["exported"]
                        for r in rows)


@needs_chromium
def test_tiny_run_report_renders_in_chromium_with_every_plot_visible(tiny, tmp_path):
    shot = ARTIFACTS / "report-tiny-run.png"
    probe, errors, requests = render(tiny / "report.html", shot, tmp_path / "profile")
    assert errors == [] and requests == []  # no console errors; nothing fetched
    assert probe["headline"] and probe["noModel"] is None and probe["log"]
    ids = {p["id"] for p in probe["plots"]}
    assert {"plot-learning_curves", "plot-incumbent"} <= ids
    for p in probe["plots"]:
        assert p["complete"] and p["natural"] > 200, p
        assert p["visible"] and p["width"] > 200 and p["height"] > 150, p
    assert shot.stat().st_size > 10_000


@needs_chromium
def test_all_failed_run_report_renders_in_chromium_with_the_reason(all_failed, tmp_path):
    out, _rc = all_failed
    shot = ARTIFACTS / "report-all-failed.png"
    probe, errors, requests = render(out / "report.html", shot, tmp_path / "profile")
    assert errors == [] and requests == []
    assert probe["plots"] == [] and not probe["headline"]
    assert "No model was exported" in probe["noModel"] and "failed" in probe["noModel"]
    assert "--no-pretrained" in probe["noModel"]
    assert shot.stat().st_size > 5_000
