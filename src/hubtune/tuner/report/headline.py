"""The top of the report: the chosen model and its scores, or why there is none."""

from __future__ import annotations

import html
import math
from typing import Any

from hubtune.tuner.report.facts import RunFacts, TrialSummary, binomial_se, export_order
from hubtune.tuner.report.tables import fmt

SCORES = (("top1", "top-1"), ("balanced_accuracy", "balanced accuracy"), ("macro_f1", "macro F1"))

WHY = {
    "budget": "the time budget was spent",
    "exhausted": ("the optimizer had nothing left to try that fits in the budget left and could beat "
                  "the best so far (or no candidates left)"),
    "max_steps": "the step limit was reached",
}


def why_text(why: str | None) -> str:
    """Why the search ended, in words."""
    if why is None:
        return "the journal has no end event: the run was interrupted (or is still running)"
    return WHY.get(why, why)


def _score_cell(p: Any, n: int | None) -> str:
    if not isinstance(p, (int, float)) or not math.isfinite(p):
        return "<td>n/a</td>"
    se = binomial_se(float(p), n)
    err = f" &plusmn; {100 * se:.1f}" if se is not None else ""
    return f"<td>{100 * p:.2f}{err}</td>"


def scores_html(metrics: dict[str, Any]) -> str:
    """Validation and test scores of the exported model, each ± its binomial standard error."""
    sizes = metrics.get("split_sizes") or {}
    rows = []
    for split, label in (("val", "validation (selection)"), ("test", "test (held out)")):
        m = metrics.get(split)
        if not isinstance(m, dict):
            continue
        n = sizes.get(split)
        cells = "".join(_score_cell(m.get(k), n) for k, _ in SCORES)
        rows.append(f"<tr><td>{label}</td><td>{n if n else 'unknown'}</td>{cells}</tr>")
    head = "".join(f"<th>{name} (%)</th>" for _, name in SCORES)
    note = ("&plusmn;: one binomial standard error, &radic;(p(1&minus;p)/n), from the split size "
            "(exact for top-1, a rough guide for the other two)." if sizes else
            "The split sizes are not in best/metrics.json (an older export): no sampling errors.")
    return (f'<table id="scores"><tr><th>split</th><th>images</th>{head}</tr>{"".join(rows)}'
            f'</table><p class="note">{note}</p>')


def default_html(trials: dict[str, TrialSummary], chosen: str | None, metric: str) -> str:
    """The best default-config candidate next to the chosen one (search-time scores)."""
    defaults = [t for t in export_order(trials) if t.default and math.isfinite(t.last)]
    if not defaults:
        return ('<p id="default-config">No candidate was a model\'s default config (this '
                "optimizer did not start from the defaults), so there is no default to "
                "compare with.</p>")
    d = defaults[0]
    mine = trials.get(chosen or "")
    text = (f"Best default config: <b>{fmt(d.config.get('model'))}</b> (trial "
            f"{fmt(d.trial_id)}) scored <b>{100 * d.last:.2f}%</b> validation {fmt(metric)} at "
            f"epoch {d.last_epoch}")
    if mine is not None and math.isfinite(mine.last):
        gain = 100 * (mine.last - d.last)
        text += (f"; the chosen candidate scored {100 * mine.last:.2f}% at epoch "
                 f"{mine.last_epoch} ({gain:+.2f} points)")
        if d.trial_id == mine.trial_id:
            text += ": the chosen candidate is this default config"
    return f'<p id="default-config">{text}.</p>'


def config_html(config: dict[str, Any]) -> str:
    """The chosen hyperparameters as a compact two-pair-per-row table (unset ones left out)."""
    items = [(k, v) for k, v in config.items() if v is not None and k != "model"]
    cells = [f"<th>{html.escape(k)}</th><td>{fmt(v)}</td>" for k, v in items]
    rows = ["<tr>" + "".join(cells[i:i + 3]) + "</tr>" for i in range(0, len(cells), 3)]
    return f'<table id="config">{"".join(rows)}</table>'


def headline_html(trials: dict[str, TrialSummary], facts: RunFacts) -> str:
    """The first thing a reader sees: the chosen model or the failure, then the run's totals."""
    metric = str(facts.settings.get("metric") or facts.metrics.get("metric") or "top1")
    budget = float(facts.settings.get("budget") or 0.0)
    share = f" ({100 * facts.elapsed / budget:.0f}%)" if budget else ""
    totals = (f'<p id="totals">Used <b>{facts.elapsed:.1f} s</b> of a {budget:g} s budget'
              f"{share} &middot; {facts.steps} steps over {len(trials)} candidates &middot; "
              f"search ended because {html.escape(why_text(facts.why))}.</p>")
    if not facts.metrics:
        reason = facts.no_model or ("no best/ folder: the run has not exported a model "
                                    "(interrupted, or still running)")
        return (f'<div class="alert fail" id="no-model"><b>No model was exported.</b> '
                f"{html.escape(reason)}</div>{totals}")
    m, meta = facts.metrics, facts.meta
    chance = ""
    if m.get("near_chance"):
        level = (m.get("chance_level") or {}).get("val")
        lvl = f" ({100 * level:.1f}% on validation)" if isinstance(level, (int, float)) else ""
        chance = ('<div class="alert warn" id="near-chance"><b>Warning: the exported model '
                  f"scores at or near chance level</b>{lvl}, i.e. always predicting the most "
                  "frequent class. It has not learned the task: give a larger budget, more "
                  "data or pretrained weights.</div>")
    title = (f'<p class="chosen">Chosen model: <b>{fmt(m.get("model"))}</b> &middot; trial '
             f"{fmt(facts.exported_trial)} &middot; epoch {fmt(meta.get('epoch', m.get('epoch')))}"
             f" &middot; selected by validation {fmt(metric)} &middot; exported to "
             "<code>best/</code></p>")
    return (f'<div class="headline" id="headline">{title}{chance}{scores_html(m)}'
            f"{default_html(trials, facts.exported_trial, metric)}{totals}"
            f"<h3>Its hyperparameters</h3>{config_html(meta.get('config') or {})}</div>")
