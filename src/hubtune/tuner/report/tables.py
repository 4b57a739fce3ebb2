"""The report's tables: leaderboard (CSV and HTML), per-model summary, time breakdown,
failures and the decision log."""

from __future__ import annotations

import csv
import html
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from hubtune.tuner.report.facts import LEADERBOARD_KEYS, RunFacts, TrialSummary, export_order


def fmt(v: Any, pct: bool = False) -> str:
    """A cell: floats to 3 significant digits (or percent with 2 decimals), NaN/None empty."""
    if isinstance(v, float):
        if not math.isfinite(v):
            return ""
        return f"{100 * v:.2f}" if pct else f"{v:.3g}"
    return html.escape("" if v is None else str(v))


def _score(v: float) -> str:
    return f"{v:.4f}" if math.isfinite(v) else ""


def write_leaderboard(trials: dict[str, TrialSummary], path: Path,
                      exported: str | None = None) -> None:
    """``leaderboard.csv``: one row per candidate, in the export's order (best latest-epoch
    score first, see :func:`export_order`), with best and latest epoch scores; the
    ``exported`` column marks the trial in ``best/``."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["rank", "trial_id", "model", *LEADERBOARD_KEYS, "epochs_trained",
                    "best_epoch", "best_val_score", "last_epoch", "last_val_score",
                    "exported", "default_config", "seconds", "status", "reason"])
        for i, t in enumerate(export_order(trials), 1):
            w.writerow([
                i, t.trial_id, t.config.get("model"),
                *[t.config.get(k) for k in LEADERBOARD_KEYS],
                t.last_epoch, t.best_epoch or "", _score(t.best), t.last_epoch or "",
                _score(t.last), "yes" if t.trial_id == exported else "",
                "yes" if t.default else "", f"{t.seconds:.1f}", t.status, t.reason or "",
            ])


def _reason_cell(reason: str | None, limit: int = 160) -> str:
    text = (reason or "").strip()
    short = text.splitlines()[0] if text else ""
    short = short if len(short) <= limit else short[: limit - 1] + "…"
    return f'<span title="{html.escape(text)}">{html.escape(short)}</span>'


def leaderboard_html(trials: dict[str, TrialSummary], exported: str | None) -> str:
    """The leaderboard table (export order; the exported row marked)."""
    rows = []
    for i, t in enumerate(export_order(trials), 1):
        mark = t.trial_id == exported
        cls = ' class="exported"' if mark else (' class="failed"' if t.status in (
            "failed", "diverged") else "")
        rows.append(
            f"<tr{cls}><td>{i}</td><td>{'&#9733; exported' if mark else ''}</td>"
            f"<td>{fmt(t.trial_id)}</td><td>{fmt(t.config.get('model'))}</td>"
            f"<td>{fmt(t.config.get('opt'))}</td><td>{fmt(t.config.get('lr'))}</td>"
            f"<td>{fmt(t.config.get('batch_size'))}</td>"
            f"<td>{fmt(t.config.get('weight_decay'))}</td>"
            f"<td>{fmt(t.config.get('pct_to_freeze'))}</td>"
            f"<td>{'yes' if t.default else ''}</td>"
            f"<td>{t.best_epoch or ''}</td><td>{fmt(t.best, pct=True)}</td>"
            f"<td>{t.last_epoch or ''}</td><td><b>{fmt(t.last, pct=True)}</b></td>"
            f"<td>{t.seconds:.1f}</td><td>{fmt(t.status)}</td>"
            f"<td>{_reason_cell(t.reason, 60) if t.status != 'ok' else ''}</td></tr>")
    return (
        '<table id="leaderboard"><tr><th>#</th><th></th><th>trial</th><th>model</th>'
        "<th>opt</th><th>lr</th><th>batch</th><th>wd</th><th>freeze</th><th>default cfg</th>"
        "<th>best epoch</th><th>best val (%)</th><th>last epoch</th><th>last val (%)</th>"
        "<th>seconds</th><th>status</th><th>reason</th></tr>" + "".join(rows) + "</table>")


def per_model_html(trials: dict[str, TrialSummary]) -> str:
    """One row per model: candidates, steps, failures, best and latest-epoch scores, time."""
    by: dict[str, list[TrialSummary]] = defaultdict(list)
    for t in trials.values():
        by[str(t.config.get("model", "?"))].append(t)

    def key(item: tuple[str, list[TrialSummary]]) -> float:
        bests = [t.best for t in item[1] if math.isfinite(t.best)]
        return -max(bests) if bests else math.inf

    rows = []
    for model, ts in sorted(by.items(), key=key):
        bests = [t.best for t in ts if math.isfinite(t.best)]
        lasts = [t.last for t in ts if math.isfinite(t.last)]
        failed = sum(t.status in ("failed", "diverged") for t in ts)
        rows.append(
            f"<tr><td>{fmt(model)}</td><td>{len(ts)}</td><td>{sum(t.steps for t in ts)}</td>"
            f"<td>{failed}</td><td>{sum(len(t.epochs) for t in ts)}</td>"
            f"<td>{fmt(max(bests) if bests else math.nan, pct=True)}</td>"
            f"<td>{fmt(max(lasts) if lasts else math.nan, pct=True)}</td>"
            f"<td>{fmt(sum(lasts) / len(lasts) if lasts else math.nan, pct=True)}</td>"
            f"<td>{sum(t.seconds for t in ts):.1f}</td></tr>")
    return ('<table id="per-model"><tr><th>model</th><th>candidates</th><th>steps</th>'
            "<th>failed</th><th>epochs trained</th><th>best val (%)</th>"
            "<th>best last-epoch val (%)</th><th>mean last-epoch val (%)</th><th>seconds</th>"
            "</tr>" + "".join(rows) + "</table>")


TIME_LABELS = {
    "setup": "start-up and data loading (before the search loop)",
    "train": "training (epochs)",
    "eval": "validation (per epoch)",
    "checkpoint": "checkpoint I/O",
    "step_overhead": "per-step overhead (building models, loading checkpoints)",
    "optimizer": "optimizer (telling results, asking for the next step)",
    "export_and_report": "export of best/ and this report",
}


def times_html(facts: RunFacts) -> str:
    """The time breakdown with a bar per part; what the parts leave out is 'other'."""
    parts = dict(facts.times)
    total = max(facts.elapsed, 1e-9)
    parts["other"] = max(0.0, facts.elapsed - sum(parts.values()))
    rows = []
    for k, v in parts.items():
        share = 100 * v / total
        rows.append(
            f"<tr><td>{html.escape(TIME_LABELS.get(k, 'other (journal, waiting, rest)'))}</td>"
            f"<td>{v:.1f}</td><td>{share:.0f}%</td><td><div class='bar' "
            f"style='width:{min(share, 100) * 3:.0f}px'></div></td></tr>")
    budget = float(facts.settings.get("budget") or 0.0)
    return (f"<p>{facts.elapsed:.1f} s used of a {budget:g} s budget. Parallel runs overlap "
            "steps, so their parts can add up to more than the time used.</p>"
            '<table id="times"><tr><th>part</th><th>seconds</th><th>share</th><th></th></tr>'
            + "".join(rows) + "</table>")


def failures_html(trials: dict[str, TrialSummary], log: list[dict[str, Any]],
                  facts: RunFacts) -> str:
    """Failed or diverged steps and broken checkpoints, with their reasons ('' if none)."""
    rows = [
        f"<tr><td>{e['time']:.0f}</td><td>{fmt(e['trial_id'])}</td><td>{fmt(e['model'])}</td>"
        f"<td>{e['to_epoch']}</td><td>{fmt(e['status'])}</td>"
        f"<td>{_reason_cell(e['reason'], 400)}</td></tr>"
        for e in log if e["status"] in ("failed", "diverged")
    ]
    rows += [
        f"<tr><td></td><td>{fmt(n.get('trial_id'))}</td><td></td><td></td>"
        f"<td>broken checkpoint</td><td>{_reason_cell(n.get('reason'), 400)}</td></tr>"
        for n in facts.notes if n.get("what") == "broken_checkpoint"
    ]
    if not rows:
        return ""
    return ('<table id="failures"><tr><th>t (s)</th><th>trial</th><th>model</th>'
            "<th>to epoch</th><th>status</th><th>reason</th></tr>" + "".join(rows) + "</table>")


def decisions_html(log: list[dict[str, Any]]) -> str:
    """The decision log: per step, the optimizer's prediction and reason, then the outcome."""
    rows = "".join(
        f"<tr><td>{e['time']:.0f}</td><td>{fmt(e['trial_id'])}</td><td>{fmt(e['model'])}</td>"
        f"<td>{e['to_epoch']}</td><td>{fmt(e['predicted_mean'], pct=True)}</td>"
        f"<td>{fmt(e['predicted_std'], pct=True)}</td><td>{fmt(e['predicted_seconds'])}</td>"
        f"<td>{fmt(e['acquisition'])}</td><td>{fmt(e['why'])}</td>"
        f"<td>{fmt(e['observed'], pct=True)}</td><td>{e['seconds']:.1f}</td>"
        f"<td>{fmt(e['status'])}</td></tr>"
        for e in log
    )
    return ('<table id="decisions"><tr><th>t (s)</th><th>trial</th><th>model</th>'
            "<th>to epoch</th><th>pred. mean</th><th>pred. std</th><th>pred. s</th><th>acq.</th>"
            "<th>why</th><th>observed</th><th>s</th><th>status</th></tr>" + rows + "</table>")
