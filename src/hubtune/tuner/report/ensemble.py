"""The report's "Ensemble" section (runs with ``--ensemble K``).

Everything comes from ``best/metrics.json`` → ``ensemble`` (members, weights,
val/test scores, total parameters, measured latency and its ratio to the single
model's) and, for each member's hub model, ``best/ensemble.json`` (see
docs/ensemble.md). A run without an exported ensemble has no such section.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from hubtune.tuner.report.facts import RunFacts, TrialSummary
from hubtune.tuner.report.headline import SCORES
from hubtune.tuner.report.tables import fmt


def _pct(v: Any) -> str:
    return (f"{100 * float(v):.2f}" if isinstance(v, (int, float)) and math.isfinite(v)
            else "n/a")


def _ms(v: Any) -> str:
    return f"{float(v):.2f}" if isinstance(v, (int, float)) and math.isfinite(v) else "n/a"


def _members_models(best: Path) -> dict[str, str]:
    """Hub model per member trial from ``best/ensemble.json`` (``{}`` when unreadable)."""
    try:
        spec = json.loads((best / "ensemble.json").read_text())
        return {str(m["trial_id"]): str(m["model"]) for m in spec["members"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def ensemble_html(trials: dict[str, TrialSummary], facts: RunFacts, run: Path) -> str:
    """The ensemble beside the single exported model: members (trial, model, epoch,
    weight), val/test scores, parameters, latency and the latency ratio (``""`` when
    the run exported no ensemble)."""
    ens = facts.metrics.get("ensemble")
    if not isinstance(ens, dict) or not ens.get("members"):
        return ""
    models = _members_models(run / "best")
    metric = str(ens.get("metric") or facts.settings.get("metric") or "top1")
    exported = facts.exported_trial
    members = []
    for m in ens["members"]:
        tid = str(m.get("trial_id"))
        model = models.get(tid) or (trials[tid].config.get("model") if tid in trials else None)
        mark = " (the single model)" if tid == exported else ""
        members.append(f"<tr><td>{fmt(tid)}{mark}</td><td>{fmt(model)}</td>"
                       f"<td>{fmt(m.get('epoch'))}</td><td>{float(m.get('weight', 0)):.3f}</td>"
                       f"<td>{fmt(m.get('count'))}</td></tr>")
    head = "".join(f"<th>{name} (%)</th>" for _, name in SCORES)
    scores = []
    for split, label in (("val", "validation"), ("test", "test")):
        single, both = facts.metrics.get(split), ens.get(split)
        for who, vals in (("single model", single), ("ensemble", both)):
            if isinstance(vals, dict):
                cells = "".join(f"<td>{_pct(vals.get(k))}</td>" for k, _ in SCORES)
                scores.append(f"<tr><td>{label}</td><td>{who}</td>{cells}</tr>")
    single_cost = ens.get("single") or {}
    ratio = ens.get("latency_ratio")
    runs = ens.get("latency_runs")
    device = ens.get("latency_device") or facts.settings.get("device") or "?"
    cost = (f"<tr><td>single model</td><td>1</td><td>{fmt(single_cost.get('params'))}</td>"
            f"<td>{_ms(single_cost.get('latency_ms'))}</td><td>1</td></tr>"
            f"<tr><td>ensemble</td><td>{fmt(ens.get('num_members', len(ens['members'])))}</td>"
            f"<td>{fmt(ens.get('params'))}</td><td>{_ms(ens.get('latency_ms'))}</td>"
            f"<td>{_ms(ratio) if ratio is not None else 'n/a'}</td></tr>")
    cache = ens.get("cache") or {}
    return (
        '<section id="ensemble"><h2>Ensemble</h2>'
        f"<p>Greedy ensemble selection with replacement ({fmt(ens.get('rounds'))} rounds, "
        f"Caruana et al. 2004) over {fmt(ens.get('candidates'))} trained candidates, weights "
        f"chosen on validation {html.escape(metric)} (so its validation score is optimistic: "
        "compare on test). <code>hubtune predict</code> uses it; <code>--single</code> the "
        "single model.</p>"
        '<table id="ensemble-members"><tr><th>trial</th><th>model</th><th>epoch</th>'
        f"<th>weight</th><th>times chosen</th></tr>{''.join(members)}</table>"
        f'<table id="ensemble-scores"><tr><th>split</th><th></th>{head}</tr>'
        f"{''.join(scores)}</table>"
        '<table id="ensemble-cost"><tr><th></th><th>members</th><th>parameters</th>'
        f"<th>latency, batch 1 (ms)</th><th>latency ratio</th></tr>{cost}</table>"
        f'<p class="note">Latency: median of {fmt(runs)} warm batch-1 runs on '
        f"{html.escape(str(device))}, measured at export (on a busy machine it varies with "
        f"the load). Member predictions: {fmt(cache.get('computed'))} computed, "
        f"{fmt(cache.get('reused'))} reused from <code>ensemble-cache/</code>.</p></section>")
