"""Leaderboard, plots and the HTML report of a search, rebuilt from its journal alone.

``hubtune report runs/NAME`` calls :func:`build_report`; ``hubtune run`` calls it
when the search ends. Everything here reads ``journal.jsonl`` (and, when
present, ``best/metrics.json``), so a report can be rebuilt at any time, also
for a run that crashed.
"""

from __future__ import annotations

import csv
import html
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubtune.protocol.steps import step_prediction
from hubtune.search.journal import Journal, replay

LEADERBOARD_KEYS = (
    "opt", "lr", "batch_size", "weight_decay", "sched", "pct_to_freeze",
    "linear_probing", "data_augmentation", "mixup", "cutmix", "smoothing", "drop",
)


@dataclass
class TrialSummary:
    """Everything the journal says about one trial."""

    trial_id: str
    config: dict[str, Any]
    epochs: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    seconds: float = 0.0
    status: str = "ok"
    reason: str | None = None
    steps: int = 0

    @property
    def best(self) -> float:
        finite = [s for s in self.scores if math.isfinite(s)]
        return max(finite) if finite else float("nan")


def result_times(journal: Journal) -> list[float]:
    """Budget-clock time of each ``result`` event: seconds since the run's first
    start, the sessions before a resume counted to their last event (as the
    budget counts them). For a parallel run this is wall clock, not the sum of
    the workers' step seconds."""
    times: list[float] = []
    done, start, last = 0.0, None, None
    for e in journal:
        t = float(e.get("t", 0.0))
        kind = e.get("event")
        if kind == "start":
            if start is not None and last is not None:
                done += last - start
            start = t
        elif kind == "result":
            times.append(done + (t - start if start is not None else 0.0))
        last = t
    return times


def summarize(journal_path: Path) -> tuple[dict[str, TrialSummary], list[dict[str, Any]]]:
    """Per-trial summaries and the chronological decision log from a journal.

    Each log entry's ``time`` is the budget clock when the result arrived
    (:func:`result_times`)."""
    journal = Journal(journal_path)
    history = replay(journal)
    times = result_times(journal)
    trials: dict[str, TrialSummary] = {}
    log: list[dict[str, Any]] = []
    best = -math.inf
    for i, res in enumerate(history.results):
        t = trials.setdefault(
            res.trial_id, TrialSummary(res.trial_id, res.step.config.to_dict())
        )
        t.steps += 1
        t.seconds += res.seconds
        t.status = res.status
        t.reason = res.reason
        for rec in res.records:
            t.epochs.append(rec.epoch)
            t.scores.append(rec.score)
        observed = [r.score for r in res.records if math.isfinite(r.score)]
        if observed:
            best = max(best, max(observed))
        info = res.step.info or {}
        log.append({
            "time": times[i],
            "trial_id": res.trial_id,
            "model": res.step.config.model,
            "to_epoch": res.step.to_epoch,
            "status": res.status,
            "reason": res.reason,
            "observed": observed[-1] if observed else float("nan"),
            "predicted_mean": step_prediction(res.step, "mean"),
            "predicted_std": step_prediction(res.step, "std"),
            "predicted_seconds": step_prediction(res.step, "seconds"),
            "acquisition": step_prediction(res.step, "acquisition"),
            "why": info.get("why"),
            "seconds": res.seconds,
            "incumbent": best if math.isfinite(best) else float("nan"),
        })
    return trials, log


def write_leaderboard(trials: dict[str, TrialSummary], path: Path) -> None:
    """``leaderboard.csv``: one row per candidate, best validation score first."""
    rows = sorted(trials.values(), key=lambda t: -t.best if math.isfinite(t.best) else math.inf)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["rank", "trial_id", "model", *LEADERBOARD_KEYS, "epochs_trained",
                    "best_val_score", "seconds", "status", "reason"])
        for i, t in enumerate(rows, 1):
            w.writerow([
                i, t.trial_id, t.config.get("model"),
                *[t.config.get(k) for k in LEADERBOARD_KEYS],
                max(t.epochs) if t.epochs else 0,
                f"{t.best:.4f}" if math.isfinite(t.best) else "",
                f"{t.seconds:.1f}", t.status, t.reason or "",
            ])


def _plots(trials: dict[str, TrialSummary], log: list[dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def save(fig, ax, path: Path) -> Path:
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    paths: list[Path] = []
    # 1. learning curves of all candidates, coloured by model
    models = sorted({t.config.get("model", "?") for t in trials.values()})
    cmap = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for t in trials.values():
        if not t.epochs:
            continue
        c = cmap(models.index(t.config.get("model", "?")) % 10)
        ax.plot(t.epochs, [100 * s for s in t.scores], "-o", ms=2.5, lw=1, color=c, alpha=0.8)
    for i, m in enumerate(models):
        ax.plot([], [], color=cmap(i % 10), label=m)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title("Learning curves of all candidates")
    if models:
        ax.legend(fontsize=7, loc="lower right")
    paths.append(save(fig, ax, out / "learning_curves.png"))

    # 2. incumbent over (search) time
    fig, ax = plt.subplots(figsize=(7, 3.5))
    xs = [e["time"] for e in log if math.isfinite(e["incumbent"])]
    ys = [100 * e["incumbent"] for e in log if math.isfinite(e["incumbent"])]
    if xs:
        ax.step(xs, ys, where="post")
    ax.set_xlabel("search time (s, budget clock)")
    ax.set_ylabel("incumbent val top-1 (%)")
    ax.set_title("Incumbent over time")
    paths.append(save(fig, ax, out / "incumbent.png"))

    # 3. surrogate: predicted vs observed score of each step
    pts = [(e["predicted_mean"], e["observed"], e["predicted_std"]) for e in log
           if isinstance(e.get("predicted_mean"), (int, float)) and math.isfinite(e["observed"])]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if pts:
        pm, ob, sd = zip(*pts, strict=True)
        err = [s if isinstance(s, (int, float)) else 0.0 for s in sd]
        ax.errorbar([100 * p for p in pm], [100 * o for o in ob],
                    xerr=[100 * e for e in err], fmt="o", ms=3, alpha=0.7, lw=0.8)
        lo = min(min(pm), min(ob)) * 100
        hi = max(max(pm), max(ob)) * 100
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_title("Surrogate: predicted vs observed")
    else:
        ax.text(0.5, 0.5, "this optimizer made no predictions", ha="center", va="center")
        ax.set_title("Surrogate: predicted vs observed")
    ax.set_xlabel("predicted val top-1 (%)")
    ax.set_ylabel("observed val top-1 (%)")
    paths.append(save(fig, ax, out / "predicted_vs_observed.png"))
    return paths


def _fmt(v: Any, pct: bool = False) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return ""
        return f"{100 * v:.2f}" if pct else f"{v:.3g}"
    return html.escape("" if v is None else str(v))


def build_report(run_dir: str | Path) -> Path:
    """(Re)build ``leaderboard.csv``, the PNG plots and ``report.html`` in ``run_dir``."""
    run = Path(run_dir)
    journal = run / "journal.jsonl"
    if not journal.exists():
        raise FileNotFoundError(f"{run} has no journal.jsonl: not a hubtune run folder")
    trials, log = summarize(journal)
    write_leaderboard(trials, run / "leaderboard.csv")
    plots = _plots(trials, log, run)
    metrics_path = run / "best" / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    settings = replay(Journal(journal)).settings or {}

    rows = sorted(trials.values(), key=lambda t: -t.best if math.isfinite(t.best) else math.inf)
    lb = "".join(
        f"<tr><td>{i}</td><td>{_fmt(t.config.get('model'))}</td><td>{_fmt(t.config.get('opt'))}</td>"
        f"<td>{_fmt(t.config.get('lr'))}</td><td>{_fmt(t.config.get('batch_size'))}</td>"
        f"<td>{max(t.epochs) if t.epochs else 0}</td><td>{_fmt(t.best, pct=True)}</td>"
        f"<td>{t.seconds:.1f}</td><td>{_fmt(t.status)}</td></tr>"
        for i, t in enumerate(rows, 1)
    )
    decisions = "".join(
        f"<tr><td>{e['time']:.0f}</td><td>{_fmt(e['trial_id'])}</td><td>{_fmt(e['model'])}</td>"
        f"<td>{e['to_epoch']}</td><td>{_fmt(e['predicted_mean'], pct=True)}</td>"
        f"<td>{_fmt(e['predicted_std'], pct=True)}</td><td>{_fmt(e['predicted_seconds'])}</td>"
        f"<td>{_fmt(e['acquisition'])}</td><td>{_fmt(e['why'])}</td>"
        f"<td>{_fmt(e['observed'], pct=True)}</td><td>{e['seconds']:.1f}</td>"
        f"<td>{_fmt(e['status'])}</td></tr>"
        for e in log
    )
    best_html = ""
    if metrics:
        best_html = "<h2>Selected model</h2><pre>" + html.escape(json.dumps(metrics, indent=2)) + "</pre>"
    imgs = "".join(
        f'<figure><img src="{p.name}" alt="{p.stem}"><figcaption>{p.stem.replace("_", " ")}'
        "</figcaption></figure>"
        for p in plots
    )
    doc = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>hubtune report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 6px}}
th{{background:#f3f3f3}}figure{{display:inline-block;margin:0 1em 1em 0}}img{{max-width:520px}}</style>
</head><body>
<h1>hubtune search report</h1>
<p>Run folder: <code>{html.escape(str(run.resolve()))}</code> &middot; {len(trials)} candidates,
{len(log)} steps.</p>
<h2>Settings</h2><pre>{html.escape(json.dumps(settings, indent=2, default=str))}</pre>
{best_html}
<h2>Plots</h2>{imgs}
<h2>Leaderboard (validation)</h2>
<table><tr><th>#</th><th>model</th><th>opt</th><th>lr</th><th>batch</th><th>epochs</th>
<th>best val top-1 (%)</th><th>seconds</th><th>status</th></tr>{lb}</table>
<h2>Decision log</h2>
<p>Why each step was taken: the optimizer's predicted score (mean &plusmn; std, %) at the step's
epoch, its predicted cost (s) and acquisition value, then what was observed.</p>
<table><tr><th>t (s)</th><th>trial</th><th>model</th><th>to epoch</th><th>pred. mean</th>
<th>pred. std</th><th>pred. s</th><th>acq.</th><th>why</th><th>observed</th><th>s</th><th>status</th></tr>
{decisions}</table>
</body></html>
"""
    path = run / "report.html"
    path.write_text(doc, encoding="utf-8")
    return path


def per_model_best(trials: dict[str, TrialSummary]) -> dict[str, float]:
    """Best validation score reached by each model (for summaries)."""
    best: dict[str, float] = defaultdict(lambda: -math.inf)
    for t in trials.values():
        m = t.config.get("model", "?")
        if math.isfinite(t.best):
            best[m] = max(best[m], t.best)
    return dict(best)
