"""Summaries of a benchmark: tables (``summary.md``), numbers (JSON) and plots (PNG).

:func:`summarize` turns trajectories into the numbers the report shows;
:func:`write_summary_md` renders them as markdown; :func:`plot_summary` draws
mean normalized regret and average rank over simulated time (log x axis),
one line per method with its bootstrap 95% band.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hubtune.bench.metrics import (
    aligned_cells,
    average_ranks,
    bootstrap_ci,
    iqm_stat,
    mean_stat,
    regret_curve,
    time_grid,
    time_to_regret,
)
from hubtune.bench.runner import Trajectory
from hubtune.core.units import format_duration

STANDARD_HORIZONS = (3600.0, 4 * 3600.0, 16 * 3600.0)
THRESHOLDS = (0.05, 0.01)


def horizons_for(budget: float) -> list[float]:
    """The standard horizons (1 h, 4 h, 16 h) within ``budget``, plus ``budget`` itself."""
    hs = [h for h in STANDARD_HORIZONS if h <= budget * (1 + 1e-9)]
    if not hs or abs(hs[-1] - budget) > 1e-6:
        hs.append(budget)
    return hs


def _ci(est, lo, hi) -> dict[str, float]:
    return {"value": float(est), "low": float(lo), "high": float(hi)}


def summarize(
    trajectories: Sequence[Trajectory],
    budget: float,
    n_boot: int = 1000,
    seed: int = 0,
    grid_points: int = 120,
) -> dict[str, Any]:
    """All report numbers, JSON-compatible.

    Regret statistics use every cell of a method; ranks use only the
    (dataset, seed) cells that every method has.
    """
    if not trajectories:
        raise ValueError("no trajectories to summarize")
    horizons = horizons_for(budget)
    grid = time_grid(budget, grid_points)
    full_grid = np.concatenate([grid, horizons])  # curve points + exact horizons
    common, by_method = aligned_cells(trajectories)
    methods = sorted(by_method)
    out: dict[str, Any] = {
        "budget": budget,
        "horizons": horizons,
        "grid": grid.tolist(),
        "methods": {},
        "aligned_cells": len(common),
        "datasets": sorted({t.dataset for t in trajectories}),
        "seeds": sorted({t.seed for t in trajectories}),
    }
    n = len(grid)
    curves_common = {}
    for m in methods:
        cells = by_method[m]
        out["methods"][m] = _method_stats([cells[c] for c in sorted(cells)], full_grid, n,
                                          horizons, budget, n_boot, seed)
        if common:
            curves_common[m] = np.stack([regret_curve(cells[c], full_grid) for c in common])
    if len(curves_common) >= 1 and common:
        for m, r in average_ranks(curves_common).items():
            est, lo, hi = bootstrap_ci(r, mean_stat, n_boot, seed)
            entry = out["methods"][m]
            entry["rank"] = {format_duration(h): _ci(est[n + i], lo[n + i], hi[n + i])
                             for i, h in enumerate(horizons)}
            entry["rank_mean_over_time"] = float(est[:n].mean())
            entry["curve_rank"] = [est[:n].tolist(), lo[:n].tolist(), hi[:n].tolist()]
    return out


def _method_stats(
    trajs: Sequence[Trajectory], full_grid: np.ndarray, n: int, horizons: Sequence[float],
    budget: float, n_boot: int, seed: int,
) -> dict[str, Any]:
    """One method's numbers over its cells: regret mean and IQM at the horizons (with CIs),
    its mean curve over the first ``n`` points of ``full_grid``, times to the regret
    thresholds, optimizer overhead, final regret per dataset and why runs ended."""
    curves = np.stack([regret_curve(t, full_grid) for t in trajs])
    mean, mlo, mhi = bootstrap_ci(curves, mean_stat, n_boot, seed)
    q, qlo, qhi = bootstrap_ci(curves, iqm_stat, n_boot, seed)
    entry: dict[str, Any] = {
        "cells": len(trajs),
        "regret_mean": {format_duration(h): _ci(mean[n + i], mlo[n + i], mhi[n + i])
                        for i, h in enumerate(horizons)},
        "regret_iqm": {format_duration(h): _ci(q[n + i], qlo[n + i], qhi[n + i])
                       for i, h in enumerate(horizons)},
        "curve_mean": [mean[:n].tolist(), mlo[:n].tolist(), mhi[:n].tolist()],
    }
    for thr in THRESHOLDS:
        times = np.array([time_to_regret(t, thr) for t in trajs])
        entry[f"time_to_{thr:g}"] = {
            "median": float(np.median(times)),
            "reached": float(np.isfinite(times).mean()),
        }
    ovh = [t.overhead for t in trajs]
    decisions = sum(o.decisions for o in ovh)
    entry["overhead"] = {
        "clock": ovh[0].clock,
        "mean_seconds_per_decision": sum(o.total_seconds for o in ovh) / max(decisions, 1),
        "max_seconds_per_decision": max(o.max_seconds for o in ovh),
        "decisions_per_run": decisions / len(ovh),
        "share_of_budget": sum(o.total_seconds for o in ovh) / (budget * len(ovh)),
    }
    per_ds: dict[str, list[float]] = {}
    for t in trajs:
        per_ds.setdefault(t.dataset, []).append(t.regret_at(budget))
    entry["final_regret_by_dataset"] = {d: float(np.mean(v)) for d, v in sorted(per_ds.items())}
    entry["end_reasons"] = {r: sum(t.end_reason == r for t in trajs)
                            for r in sorted({t.end_reason for t in trajs})}
    return entry


def _rounded(value: Any, digits: int = 6) -> Any:
    """``value`` with floats rounded to ``digits`` significant digits (compact JSON)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return value


def results_document(
    trajectories: Sequence[Trajectory], settings: dict[str, Any], command: str,
    failures: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """``results.json``: settings, command, and per method / dataset / seed the
    trajectory (time, regret, incumbent score at every improvement) and overhead stats
    (times rounded to ms, scores and regrets to 1e-6)."""
    methods: dict[str, dict[str, dict[str, Any]]] = {}
    for t in trajectories:
        methods.setdefault(t.method, {}).setdefault(t.dataset, {})[str(t.seed)] = {
            "trajectory": [[round(ti, 3), round(r, 6), round(s, 6)]
                           for ti, r, s in zip(t.times, t.regrets, t.scores, strict=True)],
            "end_time": round(t.end_time, 3),
            "end_reason": t.end_reason,
            "steps": t.steps,
            "epochs": t.epochs,
            "trials": t.trials,
            "overhead": _rounded(t.overhead.to_dict()),
        }
    return {
        "format": "hubtune-bench-results/1",
        "command": command,
        "settings": settings,
        "trajectory_columns": ["simulated_seconds", "normalized_regret", "incumbent_score"],
        "methods": methods,
        "failures": list(failures),
    }


# ------------------------------------------------------------------ markdown
def _fmt_ci(c: dict[str, float], digits: int = 3) -> str:
    return f"{c['value']:.{digits}f} [{c['low']:.{digits}f}, {c['high']:.{digits}f}]"


def _fmt_time(seconds: float) -> str:
    return "never" if not math.isfinite(seconds) else format_duration(seconds)


def _order(summary: dict[str, Any]) -> list[str]:
    """Methods by mean regret at the last horizon (best first)."""
    last = format_duration(summary["horizons"][-1])
    return sorted(summary["methods"],
                  key=lambda m: summary["methods"][m]["regret_mean"][last]["value"])


def render_summary_md(summary: dict[str, Any], title: str = "Benchmark results",
                      preamble: Sequence[str] = ()) -> str:
    """Markdown report of :func:`summarize`'s output."""
    methods = _order(summary)
    hs = [format_duration(h) for h in summary["horizons"]]
    m_ = summary["methods"]
    lines = [f"# {title}", ""]
    lines += list(preamble)
    lines += [
        "",
        f"{len(summary['datasets'])} datasets x {len(summary['seeds'])} seeds; "
        f"budget {format_duration(summary['budget'])} of simulated time. "
        "Normalized regret = (best - incumbent) / (best - worst) over all epochs of all "
        "runs of a dataset (1 before the first finished epoch). Brackets: bootstrap 95% CIs "
        "over datasets x seeds. Methods sorted by mean regret at the last horizon.",
    ]
    lines += _md_regret_and_rank(summary, methods, hs)
    lines += _md_thresholds_and_overhead(m_, methods)
    last = format_duration(summary["budget"])
    lines += ["", f"## Mean normalized regret at {last}, per dataset", "",
              "| dataset | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for d in summary["datasets"]:
        row = [f"{m_[m]['final_regret_by_dataset'][d]:.3f}"
               if d in m_[m]["final_regret_by_dataset"] else "-" for m in methods]
        lines.append(f"| {d} | " + " | ".join(row) + " |")
    lines.append("")
    return "\n".join(lines)


def _md_regret_and_rank(summary: dict[str, Any], methods: list[str], hs: list[str]) -> list[str]:
    """The mean-regret, IQM and (when every method has one) average-rank tables."""
    m_ = summary["methods"]
    lines = ["", "## Mean normalized regret", "",
             "| method | " + " | ".join(hs) + " | cells |", "|---|" + "---|" * len(hs) + "---|"]
    for m in methods:
        cells = " | ".join(_fmt_ci(m_[m]["regret_mean"][h]) for h in hs)
        lines.append(f"| {m} | {cells} | {m_[m]['cells']} |")
    lines += ["", "## IQM of normalized regret", "",
              "| method | " + " | ".join(hs) + " |", "|---|" + "---|" * len(hs)]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(_fmt_ci(m_[m]["regret_iqm"][h]) for h in hs) + " |")
    if all("rank" in m_[m] for m in methods):
        lines += ["", f"## Average rank (1 = best; over the {summary['aligned_cells']} "
                  "dataset x seed cells every method has)", "",
                  "| method | " + " | ".join(hs) + " | mean over time |",
                  "|---|" + "---|" * len(hs) + "---|"]
        for m in sorted(methods, key=lambda x: m_[x]["rank_mean_over_time"]):
            cells = " | ".join(_fmt_ci(m_[m]["rank"][h], 2) for h in hs)
            lines.append(f"| {m} | {cells} | {m_[m]['rank_mean_over_time']:.2f} |")
    return lines


def _md_thresholds_and_overhead(m_: dict[str, Any], methods: list[str]) -> list[str]:
    """The time-to-threshold and optimizer-overhead tables."""
    lines = ["", "## Time to reach a regret threshold",
             "", "Median simulated time over cells ('never' when fewer than half reach it) "
             "and the fraction of cells that reach it within the budget.", "",
             "| method | " + " | ".join(f"regret <= {t:g}" for t in THRESHOLDS) + " |",
             "|---|" + "---|" * len(THRESHOLDS)]
    for m in methods:
        cells = []
        for t in THRESHOLDS:
            e = m_[m][f"time_to_{t:g}"]
            cells.append(f"{_fmt_time(e['median'])} ({e['reached']:.0%})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "## Optimizer overhead (charged to the simulated clock)", "",
              "| method | clock | mean s / decision | max s / decision | decisions / run | "
              "share of budget |", "|---|---|---|---|---|---|"]
    for m in methods:
        o = m_[m]["overhead"]
        lines.append(
            f"| {m} | {o['clock']} | {o['mean_seconds_per_decision']:.4f} | "
            f"{o['max_seconds_per_decision']:.4f} | {o['decisions_per_run']:.1f} | "
            f"{o['share_of_budget']:.2e} |"
        )
    return lines


# ------------------------------------------------------------------ plots
def plot_summary(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write ``regret.png`` and ``rank.png`` (matplotlib, Agg) into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    grid = np.asarray(summary["grid"]) / 3600.0
    methods = _order(summary)
    colors = plt.get_cmap("tab20")
    written = []
    for key, fname, ylabel in (
        ("curve_mean", "regret.png", "mean normalized regret"),
        ("curve_rank", "rank.png", "average rank (1 = best)"),
    ):
        if not all(key in summary["methods"][m] for m in methods):
            continue
        fig, ax = plt.subplots(figsize=(9.5, 5), dpi=110)
        for i, m in enumerate(methods):
            est, lo, hi = (np.asarray(a) for a in summary["methods"][m][key])
            color = colors(i % 20)
            ax.plot(grid, est, label=m, color=color, lw=1.6)
            ax.fill_between(grid, lo, hi, color=color, alpha=0.15, lw=0)
        ax.set_xscale("log")
        if key == "curve_mean":
            ax.set_yscale("log", nonpositive="clip")
        for h in summary["horizons"]:
            ax.axvline(h / 3600.0, color="grey", lw=0.6, ls=":")
        ax.set_xlabel("simulated time (hours, log scale)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{ylabel} over time ({len(summary['datasets'])} datasets x "
                     f"{len(summary['seeds'])} seeds, 95% bootstrap CI)", fontsize=9)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        ax.grid(alpha=0.3, which="both", lw=0.4)
        fig.tight_layout()
        path = out_dir / fname
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
