"""Leaderboard, plots and the HTML report of a search, rebuilt from its files alone.

``hubtune report runs/NAME`` calls :func:`build_report`; ``hubtune run`` calls it
when the search ends. It reads ``journal.jsonl``, ``run.json`` and (when present)
``best/hubtune.json``, ``best/metrics.json`` and ``best/ensemble.json``, so a report can be rebuilt at
any time, also for a run that crashed. ``report.html`` is self-contained (plots
embedded as base64 PNG, no scripts, no network) and is described in docs/report.md.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from hubtune.tuner.report.ensemble import ensemble_html
from hubtune.tuner.report.facts import (
    LEADERBOARD_KEYS,
    RunFacts,
    TrialSummary,
    export_order,
    gather,
    per_model_best,
    result_times,
    summarize,
)
from hubtune.tuner.report.front import constraints_html, front_plot
from hubtune.tuner.report.headline import headline_html
from hubtune.tuner.report.plots import all_plots
from hubtune.tuner.report.tables import (
    decisions_html,
    failures_html,
    leaderboard_html,
    per_model_html,
    times_html,
    write_leaderboard,
)

__all__ = ["LEADERBOARD_KEYS", "RunFacts", "TrialSummary", "build_report", "export_order",
           "per_model_best", "result_times", "summarize", "write_leaderboard"]

STYLE = """body{font-family:system-ui,sans-serif;max-width:1150px;margin:1.5em auto;padding:0 1em;
color:#222;line-height:1.4}h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;margin-top:1.6em}
table{border-collapse:collapse;font-size:13px;margin:.4em 0}td,th{border:1px solid #ccc;
padding:3px 6px;text-align:left}th{background:#f3f3f3}tr.exported td{background:#fff6d5;
font-weight:600}tr.failed td{color:#a33}.headline{background:#f7faff;border:1px solid #cde;
padding:.6em 1em;border-radius:6px}.chosen{font-size:1.25em;margin:.2em 0 .5em}
.alert{padding:.6em 1em;border-radius:6px;margin:.6em 0}.fail{background:#fde8e8;
border:1px solid #e99;font-size:1.1em}.warn{background:#fff4d6;border:1px solid #e7c36a}
.note{font-size:12px;color:#666}figure{display:inline-block;margin:0 1em 1em 0;vertical-align:top}
figure img{max-width:540px;height:auto;border:1px solid #eee}figcaption{font-size:12px;
color:#555;max-width:540px}.bar{height:10px;background:#4a7fc1}details{margin:.6em 0}
summary{cursor:pointer;font-weight:600}code{background:#f3f3f3;padding:0 3px}"""


def _figures(plots: list[tuple[Path, str]]) -> str:
    out = []
    for path, caption in plots:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        out.append(f'<figure class="plot" id="plot-{path.stem}"><img data-file="{path.name}" '
                   f'alt="{path.stem.replace("_", " ")}" src="data:image/png;base64,{data}">'
                   f"<figcaption>{html.escape(caption)} (also <code>{path.name}</code>)"
                   "</figcaption></figure>")
    return "".join(out)


def _sections(trials: dict[str, TrialSummary], log: list[dict], facts: RunFacts,
              plots: list[tuple[Path, str]]) -> str:
    exported = facts.exported_trial
    parts = []
    if plots:
        missing = ""
        if not any(p.stem == "predicted_vs_observed" for p, _ in plots):
            missing = (f"<p class='note'>No predicted-vs-observed plot: the optimizer "
                       f"({html.escape(str(facts.settings.get('optimizer', '?')))}) made no "
                       "predictions.</p>")
        parts.append(f"<h2>Plots</h2>{_figures(plots)}{missing}")
    if trials:
        parts.append("<h2>Leaderboard (validation)</h2><p>Ranked as the export ranks: by the "
                     "score of each candidate's latest epoch (what its checkpoint holds); the "
                     "best epoch's score is shown too. The exported row is highlighted. "
                     "Also in <code>leaderboard.csv</code> and <code>result.leaderboard()"
                     "</code> (the same order).</p>"
                     + leaderboard_html(trials, exported))
        parts.append("<h2>Per model</h2>" + per_model_html(trials))
    parts.append("<h2>Where the time went</h2>" + times_html(facts))
    failures = failures_html(trials, log, facts)
    if failures:
        parts.append("<h2>Failures</h2>" + failures)
    parts.append("<h2>Settings</h2><details><summary>run.json</summary><pre>"
                 + html.escape(json.dumps(facts.settings, indent=2, default=str))
                 + "</pre></details>")
    if log:
        parts.append(
            f"<h2>Decision log</h2><details id='decision-log'><summary>{len(log)} steps: why "
            "each was taken (the optimizer's predicted score, mean &plusmn; std in %, its "
            "predicted cost in s and acquisition value) and what was observed</summary>"
            + decisions_html(log) + "</details>")
    return "".join(parts)


def build_report(run_dir: str | Path) -> Path:
    """(Re)build ``leaderboard.csv``, the PNG plots and ``report.html`` in ``run_dir``."""
    run = Path(run_dir)
    if not (run / "journal.jsonl").exists():
        raise FileNotFoundError(f"{run} has no journal.jsonl: not a hubtune run folder")
    trials, log, facts = gather(run)
    write_leaderboard(trials, run / "leaderboard.csv", facts.exported_trial)
    metric = str(facts.settings.get("metric") or "top1")
    plots = all_plots(trials, log, facts.exported_trial,
                      float(facts.settings.get("budget") or 0.0) or None, metric, run)
    plots += front_plot(trials, facts.exported_trial, metric, facts.settings, run)
    data = html.escape(str(facts.settings.get("data") or run.name))
    doc = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
           f'<meta name="viewport" content="width=device-width, initial-scale=1">'
           f"<title>hubtune report: {data}</title><style>{STYLE}</style></head><body>"
           f"<h1>hubtune search report: {data}</h1>"
           f'<p class="note">Run folder <code>{html.escape(str(run.resolve()))}</code> &middot; '
           f"optimizer {html.escape(str(facts.settings.get('optimizer', '?')))}</p>"
           f"{headline_html(trials, facts)}{ensemble_html(trials, facts, run)}{constraints_html(run)}"
           f"{_sections(trials, log, facts, plots)}"
           "</body></html>\n")
    path = run / "report.html"
    path.write_text(doc, encoding="utf-8")
    return path
