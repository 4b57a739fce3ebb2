"""The report's plots (matplotlib, written as PNG files next to ``report.html``).

Each function returns the written path, or ``None`` when the run has nothing to
show in that plot (the report then leaves it out instead of drawing an empty one).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hubtune.tuner.report.facts import TrialSummary

NUMERIC_KEYS = ("lr", "weight_decay", "batch_size", "pct_to_freeze", "mixup", "cutmix",
                "smoothing", "drop", "warmup_epochs", "clip_grad", "layer_decay")
LOG_KEYS = ("lr", "weight_decay", "batch_size")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    for ax in fig.axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def model_colours(trials: dict[str, TrialSummary]) -> dict[str, Any]:
    """One tab10/tab20 colour per model (sorted by name), the same in every plot."""
    plt = _plt()
    models = sorted({str(t.config.get("model", "?")) for t in trials.values()})
    cmap = plt.get_cmap("tab10" if len(models) <= 10 else "tab20")
    return {m: cmap(i % cmap.N) for i, m in enumerate(models)}


def learning_curves(trials: dict[str, TrialSummary], exported: str | None, metric: str,
                    out: Path) -> Path | None:
    """Validation score per epoch of every candidate, coloured by model; the exported
    trial drawn thick and starred."""
    if not any(math.isfinite(s) for t in trials.values() for s in t.scores):
        return None
    plt = _plt()
    colours = model_colours(trials)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for t in trials.values():
        if not t.epochs:
            continue
        c = colours[str(t.config.get("model", "?"))]
        mine = t.trial_id == exported
        ax.plot(t.epochs, [100 * s for s in t.scores], "-o", ms=4 if mine else 2.5,
                lw=2.5 if mine else 1, color=c, alpha=1.0 if mine else 0.7, zorder=3 if mine else 2)
        if mine:
            ax.plot(t.epochs[-1:], [100 * t.scores[-1]], "*", ms=14, color=c, mec="k", zorder=4,
                    label="exported")
    for m, c in colours.items():
        ax.plot([], [], color=c, label=m)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {metric} (%)")
    ax.set_title("Learning curves of all candidates (coloured by model)")
    ax.legend(fontsize=7, loc="best")
    return _save(fig, out / "learning_curves.png")


def incumbent(log: list[dict[str, Any]], budget: float | None, metric: str,
              out: Path) -> Path | None:
    """The best validation score seen so far against the budget clock."""
    pts = [(e["time"], 100 * e["incumbent"]) for e in log if math.isfinite(e["incumbent"])]
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    xs, ys = zip(*pts, strict=True)
    ax.step([*xs, max(xs[-1], budget or xs[-1])], [*ys, ys[-1]], where="post")
    ax.plot(xs, ys, "o", ms=3)
    if budget:
        ax.axvline(budget, color="grey", ls="--", lw=0.8, label="budget")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel("search time (s, budget clock)")
    ax.set_ylabel(f"best val {metric} so far (%)")
    ax.set_title("Incumbent over time")
    return _save(fig, out / "incumbent.png")


def predicted_vs_observed(log: list[dict[str, Any]], metric: str, out: Path) -> Path | None:
    """Left: each step's predicted vs observed score (±1 std); right: per step, the
    prediction's ±1 std band and the observed score."""
    pts = [(i, e["predicted_mean"], e["predicted_std"] or 0.0, e["observed"])
           for i, e in enumerate(log, 1)
           if e.get("predicted_mean") is not None and math.isfinite(e["observed"])]
    if not pts:
        return None
    plt = _plt()
    idx = [p[0] for p in pts]
    pm, sd, ob = ([100 * p[k] for p in pts] for k in (1, 2, 3))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.2))
    a1.errorbar(pm, ob, xerr=sd, fmt="o", ms=3, alpha=0.7, lw=0.8)
    lo, hi = min(min(pm), min(ob)), max(max(pm), max(ob))
    a1.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="perfect prediction")
    a1.set_xlabel(f"predicted val {metric} (%)")
    a1.set_ylabel(f"observed val {metric} (%)")
    a1.set_title("Predicted vs observed")
    a1.legend(fontsize=7, loc="lower right")
    lower = [m - s for m, s in zip(pm, sd, strict=True)]
    upper = [m + s for m, s in zip(pm, sd, strict=True)]
    a2.fill_between(idx, lower, upper, alpha=0.25, step="mid", label="predicted ±1 std")
    a2.plot(idx, pm, "-", lw=1, label="predicted mean")
    a2.plot(idx, ob, "o", ms=3, color="k", label="observed")
    a2.set_xlabel("step")
    a2.set_ylabel(f"val {metric} (%)")
    a2.set_title("Prediction band per step")
    a2.legend(fontsize=7, loc="best")
    return _save(fig, out / "predicted_vs_observed.png")


def _varying_numeric(trials: list[TrialSummary]) -> list[str]:
    keys = []
    for k in NUMERIC_KEYS:
        vals = {t.config.get(k) for t in trials}
        nums = {v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if len(nums) > 1:
            keys.append(k)
    return keys


def hyperparameters(trials: dict[str, TrialSummary], metric: str, out: Path) -> Path | None:
    """Best validation score of each candidate against each numeric hyperparameter
    that varied in the search, coloured by model."""
    scored = [t for t in trials.values() if math.isfinite(t.best)]
    keys = _varying_numeric(scored)
    if not keys:
        return None
    plt = _plt()
    colours = model_colours(trials)
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    for ax, k in zip(axes.flat, keys, strict=False):
        pts = [(t.config[k], 100 * t.best, colours[str(t.config.get("model", "?"))])
               for t in scored if isinstance(t.config.get(k), (int, float))]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], c=[p[2] for p in pts], s=18,
                   alpha=0.8)
        if k in LOG_KEYS and all(p[0] > 0 for p in pts):
            ax.set_xscale("log", base=2 if k == "batch_size" else 10)
        ax.set_xlabel(k)
        ax.set_ylabel(f"best val {metric} (%)")
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    fig.suptitle("Hyperparameter effects (one dot per candidate, coloured by model)", fontsize=10)
    return _save(fig, out / "hyperparameters.png")


def all_plots(trials: dict[str, TrialSummary], log: list[dict[str, Any]], exported: str | None,
              budget: float | None, metric: str, out: Path) -> list[tuple[Path, str]]:
    """Every plot the run has data for, as (path, caption); stale PNGs of plots that
    have nothing to show now are removed."""
    made = [
        (learning_curves(trials, exported, metric, out),
         "Learning curves: validation score per epoch of every candidate, coloured by "
         "model; the exported trial is thick, starred at its exported epoch."),
        (incumbent(log, budget, metric, out),
         "Incumbent: the best validation score seen so far, on the budget clock."),
        (predicted_vs_observed(log, metric, out),
         "The optimizer's predictions for each step (mean ±1 std) against what the step "
         "then scored."),
        (hyperparameters(trials, metric, out),
         "Best validation score of each candidate against each numeric hyperparameter "
         "that varied."),
    ]
    names = ("learning_curves.png", "incumbent.png", "predicted_vs_observed.png",
             "hyperparameters.png")
    for (path, _), name in zip(made, names, strict=True):
        if path is None and (out / name).exists():
            (out / name).unlink()
    return [(p, c) for p, c in made if p is not None]
