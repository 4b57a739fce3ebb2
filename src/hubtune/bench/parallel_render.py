"""The parallel benchmark's summary as Markdown tables and a regret-vs-time plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hubtune.bench.report import THRESHOLDS
from hubtune.core.units import format_duration


# ------------------------------------------------------------------ report
def _fmt_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "never"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _fmt_x(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.1f}x"


def render_parallel_md(summary: dict[str, Any], preamble: Sequence[str] = ()) -> str:
    """Markdown tables of :func:`parallel_summary`'s output."""
    hs = [format_duration(h) for h in summary["horizons"]]
    base = summary["base_workers"]
    last = hs[-1]
    lines = [f"# Parallel benchmark: {', '.join(str(w) for w in summary['workers'])} "
             "simulated workers", ""]
    lines += list(preamble)
    lines += [
        "",
        f"{len(summary['datasets'])} datasets x up to {len(summary['seeds'])} seeds (column "
        f"'cells': dataset x seed runs per row); budget {last} of "
        "simulated wall-clock time for the whole pool of workers. Mean normalized regret "
        "with bootstrap 95% CIs over datasets x seeds. **Target** = the same method's "
        f"{base}-worker mean regret at {last}; **time to target** = first time the mean "
        "regret over all cells is at or below it (CI: paired bootstrap over cells); "
        f"**speed-up** = {last} / time to target. **Per cell** = median over cells of the time "
        f"to reach that cell's own {base}-worker {last} regret (share of cells reaching it).",
        "",
        "| method | workers | cells | " + " | ".join(f"regret {h}" for h in hs)
        + f" | target ({base}w {last}) | time to target | speed-up | per cell "
        + "| " + " | ".join(f"time to {t:g}" for t in THRESHOLDS) + " | steps / run |",
        "|---|---|---|" + "---|" * len(hs) + "---|---|---|---|" + "---|" * len(THRESHOLDS) + "---|",
    ]
    for m, by_w in summary["methods"].items():
        for w, e in sorted(by_w.items(), key=lambda kv: int(kv[0])):
            lines.append(_method_row(m, w, e, hs))
    lines += _comparison_table(summary, hs)
    lines.append("")
    return "\n".join(lines)


def _method_row(m: str, w: str, e: dict[str, Any], hs: list[str]) -> str:
    """One (method, workers) row of the main table."""
    regrets = " | ".join(
        f"{e['regret_mean'][h]['value']:.4f} [{e['regret_mean'][h]['low']:.4f}, "
        f"{e['regret_mean'][h]['high']:.4f}]" for h in hs)
    tb = e.get("to_base_target")
    if tb is None:
        target_cols = "- | - | - | -"
    else:
        pc = e["to_base_target_per_cell"]
        target_cols = (
            f"{tb['target_regret']:.4f} | {_fmt_time(tb['time'])} "
            f"[{_fmt_time(tb['time_low'])}, {_fmt_time(tb['time_high'])}] | "
            f"{_fmt_x(tb['speedup'])} [{_fmt_x(tb['speedup_low'])}, "
            f"{_fmt_x(tb['speedup_high'])}] | {_fmt_time(pc['median'])} "
            f"({pc['reached']:.0%})")
    thr = " | ".join(f"{_fmt_time(e[f'time_to_{t:g}']['median'])} "
                     f"({e[f'time_to_{t:g}']['reached']:.0%})" for t in THRESHOLDS)
    return (f"| {m} | {w} | {e['cells']} | {regrets} | {target_cols} | {thr} | "
            f"{e['steps_per_run']:.0f} |")


def _comparison_table(summary: dict[str, Any], hs: list[str]) -> list[str]:
    """The reference method against each other method with the same workers (or nothing)."""
    ref, last = summary.get("reference"), hs[-1]
    lines: list[str] = []
    if ref and summary["comparisons"]:
        lines += [
            "", f"## {ref} against each method with the same workers", "",
            f"Mean over cells of ({ref} regret - other regret), paired, with bootstrap 95% CIs "
            f"(negative: {ref} is ahead); 'ahead' / 'behind' = share of the log time grid "
            f"(1 min to {last}) where {ref}'s mean regret is lower / higher.", "",
            "| vs | workers | cells | " + " | ".join(hs) + " | ahead | behind |",
            "|---|---|---|" + "---|" * len(hs) + "---|---|",
        ]
        for m, by_w in summary["comparisons"].items():
            for w, c in sorted(by_w.items(), key=lambda kv: int(kv[0])):
                diffs = " | ".join(
                    f"{c['difference'][h]['value']:+.4f} [{c['difference'][h]['low']:+.4f}, "
                    f"{c['difference'][h]['high']:+.4f}]" for h in hs)
                lines.append(f"| {m} | {w} | {c['cells']} | {diffs} | {c['ahead_share']:.0%} | "
                             f"{c['behind_share']:.0%} |")
    return lines


def plot_parallel(summary: dict[str, Any], out_dir: Path, fname: str = "regret_parallel.png") -> Path:
    """Mean regret vs simulated time: one panel per method (lines: workers) and per worker count
    (lines: methods), with 95% bands; dashed: each method's 1-worker final mean regret."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.asarray(summary["grid"]) / 3600.0
    methods = list(summary["methods"])
    workers = [str(w) for w in summary["workers"]]
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    styles = ["-", "--", ":", "-."]
    wcolors = {w: plt.get_cmap("viridis")(i / max(1, len(workers) - 1) * 0.85)
               for i, w in enumerate(workers)}
    last = format_duration(summary["horizons"][-1])
    ncol = max(len(methods), len(workers))
    fig, axes = plt.subplots(2, ncol, figsize=(4.2 * ncol, 7.6), dpi=110, sharex=True,
                             sharey=True, squeeze=False)

    def draw(ax, m: str, w: str, color, style: str, label: str) -> None:
        est, lo, hi = (np.asarray(a) for a in summary["methods"][m][w]["curve_mean"])
        ax.plot(grid, est, color=color, ls=style, lw=1.6, label=label)
        ax.fill_between(grid, lo, hi, color=color, alpha=0.12, lw=0)

    for j, m in enumerate(methods):
        ax = axes[0][j]
        for w in workers:
            if w in summary["methods"][m]:
                draw(ax, m, w, wcolors[w], "-", f"{w} worker{'s' if w != '1' else ''}")
        base = summary["methods"][m].get(str(summary["base_workers"]))
        if base is not None:
            ax.axhline(base["regret_mean"][last]["value"], color="grey", lw=0.8, ls="--")
        ax.set_title(m, fontsize=10)
        ax.legend(fontsize=7, frameon=False, loc="lower left")
    for j, w in enumerate(workers):
        ax = axes[1][j]
        for i, m in enumerate(methods):
            if w in summary["methods"][m]:
                draw(ax, m, w, colors[m], styles[i % len(styles)], m)
        ax.set_title(f"{w} worker{'s' if w != '1' else ''}", fontsize=10)
        ax.legend(fontsize=7, frameon=False, loc="lower left")
    _style_axes(axes, summary["horizons"], [len(methods), len(workers)])
    fig.suptitle(f"Mean normalized regret vs time, {len(summary['datasets'])} datasets x up to "
                 f"{len(summary['seeds'])} seeds (95% bootstrap bands); dashed: 1-worker "
                 f"{last} mean", fontsize=9)
    fig.tight_layout()
    path = Path(out_dir) / fname
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _style_axes(axes: Any, horizons: Sequence[float], used: list[int]) -> None:
    """Log axes, grid, horizon lines and labels; each row's panels past ``used[row]`` hidden."""
    for row, n in zip(axes, used, strict=True):
        for ax in row:
            ax.set_xscale("log")
            ax.set_yscale("log", nonpositive="clip")
            ax.grid(alpha=0.3, which="both", lw=0.4)
            for h in horizons:
                ax.axvline(h / 3600.0, color="grey", lw=0.5, ls=":")
        for ax in row[n:]:
            ax.set_visible(False)
    for ax in axes[1]:
        ax.set_xlabel("simulated wall-clock time (hours, log)")
    for row in axes:
        row[0].set_ylabel("mean normalized regret")
