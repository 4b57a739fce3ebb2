"""The report's accuracy–latency front (runs with ``--max-latency-ms``; ``latency.json``).

Every trained candidate is a dot: its best validation score against its model's
measured batch-1 latency. The non-dominated candidates (no other is both at least
as fast and at least as accurate, and better in one) are joined and ringed; the
latency limit is a dashed vertical line; models the limit excluded (never
trained) are marked on the x axis.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hubtune.tuner.report.facts import TrialSummary

FRONT_PNG = "latency_front.png"


def read_latency(run: Path) -> dict[str, float]:
    """Batch-1 latency (ms) per model from ``run/latency.json`` (``{}`` when absent)."""
    try:
        data = json.loads((run / "latency.json").read_text())
        return {m: float(v["ms"]["1"]) for m, v in data["models"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated ``(latency, score)`` points (lower latency, higher
    score are better), ordered by latency.

    >>> pareto_front([(1.0, 0.5), (2.0, 0.4), (3.0, 0.9)])
    [0, 2]
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def latency_front(trials: dict[str, TrialSummary], exported: str | None, metric: str,
                  limit: float | None, out: Path) -> Path | None:
    """Draw ``latency_front.png`` in ``out`` (``None`` when nothing has a latency)."""
    from hubtune.tuner.report.plots import _plt, _save, model_colours

    latency = read_latency(out)
    scored = [t for t in trials.values() if math.isfinite(t.best)
              and str(t.config.get("model")) in latency]
    if not scored:
        return None
    plt = _plt()
    colours = model_colours(trials)
    pts = [(latency[str(t.config["model"])], 100 * t.best) for t in scored]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=20, alpha=0.75,
               c=[colours[str(t.config["model"])] for t in scored], zorder=2)
    front = pareto_front(pts)
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "-", color="k", lw=1.2,
            zorder=3, label="non-dominated front")
    ax.scatter([pts[i][0] for i in front], [pts[i][1] for i in front], s=70,
               facecolors="none", edgecolors="k", zorder=4)
    for i, t in enumerate(scored):
        if t.trial_id == exported:
            ax.plot([pts[i][0]], [pts[i][1]], "*", ms=15, color=colours[str(t.config["model"])],
                    mec="k", zorder=5, label="exported")
    trained = {str(t.config["model"]) for t in scored}
    skipped = [v for m, v in latency.items() if m not in trained and limit is not None
               and v > limit]
    if skipped:
        ax.plot(skipped, [min(p[1] for p in pts)] * len(skipped), "x", color="grey",
                label="excluded by the limit (not trained)")
    if limit is not None:
        ax.axvline(limit, color="red", ls="--", lw=1, label=f"--max-latency-ms {limit:g}")
    for m in sorted(trained):
        ax.plot([], [], "o", color=colours[m], label=m)
    ax.set_xlabel("model latency, batch 1 (ms, measured on the run's device)")
    ax.set_ylabel(f"best val {metric} (%)")
    ax.set_title("Accuracy–latency of every trained candidate")
    ax.legend(fontsize=7, loc="best")
    return _save(fig, out / FRONT_PNG)


def front_plot(trials: dict[str, TrialSummary], exported: str | None, metric: str,
               settings: dict[str, Any], out: Path) -> list[tuple[Path, str]]:
    """The front as ``[(path, caption)]`` for the report (``[]`` when not drawable);
    a stale PNG is removed."""
    limit = settings.get("max_latency_ms")
    path = latency_front(trials, exported, metric, limit if isinstance(limit, (int, float))
                         else None, out)
    if path is None:
        if (out / FRONT_PNG).exists():
            (out / FRONT_PNG).unlink()
        return []
    return [(path, "Accuracy–latency: best validation score of every trained candidate "
             "against its model's measured batch-1 latency; the non-dominated front is "
             "ringed and joined, the latency limit dashed.")]


def constraints_html(run: Path) -> str:
    """The report's "Deployment limits" section from the journal's last ``constraints``
    note (``""`` for a run without limits)."""
    import html

    note = None
    try:
        for line in (run / "journal.jsonl").read_text(encoding="utf-8").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a torn last line
            if isinstance(event, dict) and event.get("what") == "constraints":
                note = event
    except OSError:
        return ""
    if note is None:
        return ""
    limits = ", ".join(f"<code>--{k.replace('_', '-')} {v:g}</code>"
                       for k, v in note.get("limits", {}).items() if k != "latency_batch")
    rows = "".join(
        f"<tr><td>{html.escape(str(e.get('model')))}</td>"
        f"<td>{html.escape('; '.join(e.get('why', [])))}</td>"
        f"<td>{e.get('params_m', '')}</td><td>{e.get('gflops', '')}</td>"
        f"<td>{'' if e.get('latency_ms') is None else e['latency_ms']}</td></tr>"
        for e in note.get("excluded", []))
    allowed = ", ".join(html.escape(str(m)) for m in note.get("allowed", []))
    table = ("<table><tr><th>excluded model</th><th>why</th><th>params (M)</th>"
             f"<th>GFLOPs</th><th>latency, batch 1 (ms)</th></tr>{rows}</table>") if rows \
        else "<p>No model was excluded.</p>"
    return (f"<h2>Deployment limits</h2><p>Limits {limits}: the search used only "
            f"{allowed}. Excluded models were never proposed or trained "
            "(latency measured on the run's device: <code>latency.json</code>; see "
            "docs/constraints.md).</p>" + table)
