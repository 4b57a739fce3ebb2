"""Parallel benchmark: the same methods with 1, 4, 8, ... simulated asynchronous workers.

Runs (or reuses) one benchmark grid per worker count (``cells/w<N>/cells``,
the cache of :func:`hubtune.bench.suite.run_grid`) and compares them:

- mean normalized regret at 1 h / 4 h / 16 h (bootstrap 95% CIs);
- time to 5% / 1% regret (median over cells, fraction reached);
- **time to the 1-worker target**: the first simulated time at which the mean
  regret over all cells of (method, N workers) is at most the same method's
  1-worker mean regret at the end of the budget; the **speed-up** is the
  budget divided by that time (CI: bootstrap over the (dataset, seed) cells,
  paired across worker counts). Also per cell: the median over cells of the
  time to reach that cell's own 1-worker final regret;
- for a reference method (hubtune's ``quicktune``) against every other
  method with the same workers: the paired difference of mean regret at each
  horizon (CI over cells) and the share of the time grid where the
  reference's mean regret is lower.

Command (writes ``summary.json``, ``summary.md``, ``regret_parallel.png`` and
``results.json`` into ``--out``)::

    python -m hubtune.bench.parallel --metadata ../shared/metadata/quicktune-extended \\
        --methods quicktune,asha,random --workers 1,4,8 --budget 16h \\
        --seeds 10 --seeds-for quicktune=5 \\
        --jobs 2 --cells bench-parallel --out docs/benchmarks/parallel
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hubtune.bench.metrics import (
    bootstrap_ci,
    mean_stat,
    regret_curve,
    time_grid,
    time_to_regret,
)
from hubtune.bench.report import THRESHOLDS, horizons_for, results_document
from hubtune.bench.runner import Trajectory
from hubtune.core.units import format_duration, parse_duration

Cells = dict[tuple[str, int], Trajectory]
"""Trajectories of one (method, workers) by ``(dataset, seed)``."""


class ParallelBenchError(ValueError):
    """Bad input to the parallel benchmark (shown as a one-line error)."""


# ------------------------------------------------------------------ metrics
def mean_regret_steps(trajs: Sequence[Trajectory]) -> tuple[np.ndarray, np.ndarray]:
    """The mean regret over ``trajs`` as an exact step function.

    Returns ``(times, means)``: ``means[i]`` holds from ``times[i]`` until the
    next time; before ``times[0]`` (and for no improvement at all) it is 1.
    """
    if not trajs:
        raise ValueError("no trajectories")
    times = np.unique(np.concatenate([np.asarray(t.times, dtype=float) for t in trajs] + [[0.0]]))
    means = np.mean([regret_curve(t, times) for t in trajs], axis=0)
    return times, means


def time_to_mean_regret(trajs: Sequence[Trajectory], target: float) -> float:
    """First simulated time at which the mean regret over ``trajs`` is <= ``target`` (inf if never)."""
    times, means = mean_regret_steps(trajs)
    hit = np.nonzero(means <= target + 1e-12)[0]
    return float(times[hit[0]]) if len(hit) else math.inf


def _first_crossing(curves: np.ndarray, target: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Per row of mean curves ``[boot, grid]``: first grid time with value <= target (inf if none)."""
    below = curves <= target[:, None] + 1e-12
    first = np.argmax(below, axis=1)
    return np.where(below.any(axis=1), grid[first], math.inf)


def speedup_ci(
    base: Cells, other: Cells, budget: float, n_boot: int = 1000, seed: int = 0,
    grid_points: int = 2000,
) -> dict[str, float]:
    """Time for ``other`` to reach ``base``'s mean regret at ``budget``, and the speed-up.

    The estimate is exact (step functions); the 95% CI resamples the
    (dataset, seed) cells both have, paired, on a fine log grid.
    """
    common = sorted(set(base) & set(other))
    if not common:
        raise ValueError("no (dataset, seed) cells in common")
    b = [base[c] for c in common]
    o = [other[c] for c in common]
    target = float(np.mean([t.regret_at(budget) for t in b]))
    t_hit = time_to_mean_regret(o, target)
    grid = np.concatenate([time_grid(budget, grid_points, start=1.0), [budget]])
    finals = np.asarray([t.regret_at(budget) for t in b])
    curves = np.stack([regret_curve(t, grid) for t in o])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(common), size=(n_boot, len(common)))
    boot_t = _first_crossing(curves[idx].mean(axis=1), finals[idx].mean(axis=1), grid)
    lo, hi = np.quantile(boot_t, [0.025, 0.975], method="inverted_cdf")  # inf-safe
    return {
        "target_regret": target,
        "time": t_hit,
        "time_low": float(lo),
        "time_high": float(hi),
        "speedup": budget / t_hit if t_hit > 0 else math.inf,
        "speedup_low": budget / float(hi) if hi > 0 else math.inf,
        "speedup_high": budget / float(lo) if lo > 0 else math.inf,
        "cells": len(common),
    }


def per_cell_time_to_base(base: Cells, other: Cells, budget: float) -> dict[str, float]:
    """Median over common cells of the time ``other`` needs to reach that cell's ``base`` final regret."""
    common = sorted(set(base) & set(other))
    times = np.asarray([time_to_regret(other[c], base[c].regret_at(budget)) for c in common])
    if not len(times):
        return {"median": math.inf, "reached": 0.0}
    return {"median": float(np.median(times)), "reached": float(np.isfinite(times).mean())}


def paired_difference(
    ref: Cells, other: Cells, horizons: Sequence[float], grid: np.ndarray,
    n_boot: int = 1000, seed: int = 0,
) -> dict[str, Any]:
    """``ref`` minus ``other`` mean regret at each horizon (paired over common cells, with CIs).

    Also ``ahead_share``: the share of ``grid`` times at which ``ref``'s mean
    regret is strictly lower than ``other``'s, and ``behind_share`` the share where it is higher.
    """
    common = sorted(set(ref) & set(other))
    if not common:
        raise ValueError("no (dataset, seed) cells in common")
    pts = np.concatenate([np.asarray(horizons, dtype=float), grid])
    diff = np.stack([regret_curve(ref[c], pts) - regret_curve(other[c], pts) for c in common])
    est, lo, hi = bootstrap_ci(diff, mean_stat, n_boot, seed)
    k = len(horizons)
    mean_grid = diff[:, k:].mean(axis=0)
    return {
        "cells": len(common),
        "difference": {format_duration(h): {"value": float(est[i]), "low": float(lo[i]),
                                            "high": float(hi[i])}
                       for i, h in enumerate(horizons)},
        "ahead_share": float((mean_grid < -1e-12).mean()),
        "behind_share": float((mean_grid > 1e-12).mean()),
    }


def parallel_summary(
    runs: dict[int, Sequence[Trajectory]],
    budget: float,
    reference: str | None = "quicktune",
    n_boot: int = 1000,
    seed: int = 0,
    grid_points: int = 120,
) -> dict[str, Any]:
    """All numbers of the parallel report (JSON-compatible).

    Args:
        runs: trajectories per worker count (all methods mixed).
        budget: the simulated budget of every run.
        reference: method compared against each other method with the same
            workers (skipped when absent).
    """
    if not runs:
        raise ValueError("no runs to summarize")
    workers = sorted(runs)
    base_w = workers[0]
    horizons = horizons_for(budget)
    grid = time_grid(budget, grid_points)
    cells: dict[str, dict[int, Cells]] = {}
    for w in workers:
        for t in runs[w]:
            cells.setdefault(t.method, {}).setdefault(w, {})[(t.dataset, t.seed)] = t
    methods = sorted(cells)
    out: dict[str, Any] = {
        "budget": budget,
        "horizons": horizons,
        "workers": workers,
        "base_workers": base_w,
        "grid": grid.tolist(),
        "datasets": sorted({t.dataset for w in workers for t in runs[w]}),
        "seeds": sorted({t.seed for w in workers for t in runs[w]}),
        "reference": reference if reference in cells else None,
        "methods": {},
        "comparisons": {},
    }
    pts = np.concatenate([grid, horizons])
    n = len(grid)
    for m in methods:
        out["methods"][m] = {}
        for w in sorted(cells[m]):
            by_cell = cells[m][w]
            trajs = [by_cell[c] for c in sorted(by_cell)]
            curves = np.stack([regret_curve(t, pts) for t in trajs])
            est, lo, hi = bootstrap_ci(curves, mean_stat, n_boot, seed)
            entry: dict[str, Any] = {
                "cells": len(trajs),
                "regret_mean": {format_duration(h): {"value": float(est[n + i]),
                                                     "low": float(lo[n + i]),
                                                     "high": float(hi[n + i])}
                                for i, h in enumerate(horizons)},
                "curve_mean": [est[:n].tolist(), lo[:n].tolist(), hi[:n].tolist()],
                "steps_per_run": float(np.mean([t.steps for t in trajs])),
                "epochs_per_run": float(np.mean([t.epochs for t in trajs])),
                "overhead_share": float(np.mean([t.overhead.total_seconds for t in trajs]) / budget),
                "overhead_mean_seconds": float(
                    sum(t.overhead.total_seconds for t in trajs)
                    / max(1, sum(t.overhead.decisions for t in trajs))),
            }
            for thr in THRESHOLDS:
                times = np.array([time_to_regret(t, thr) for t in trajs])
                entry[f"time_to_{thr:g}"] = {"median": float(np.median(times)),
                                             "reached": float(np.isfinite(times).mean())}
            if base_w in cells[m]:
                entry["to_base_target"] = speedup_ci(cells[m][base_w], by_cell, budget,
                                                     n_boot, seed)
                entry["to_base_target_per_cell"] = per_cell_time_to_base(
                    cells[m][base_w], by_cell, budget)
            out["methods"][m][str(w)] = entry
    ref = out["reference"]
    if ref is not None:
        for m in methods:
            if m == ref:
                continue
            for w in workers:
                if w in cells[ref] and w in cells[m]:
                    out["comparisons"].setdefault(m, {})[str(w)] = paired_difference(
                        cells[ref][w], cells[m][w], horizons, grid, n_boot, seed)
    return out


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
            lines.append(f"| {m} | {w} | {e['cells']} | {regrets} | {target_cols} | {thr} | "
                         f"{e['steps_per_run']:.0f} |")
    ref = summary.get("reference")
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
    lines.append("")
    return "\n".join(lines)


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
    for row in axes:
        for ax in row:
            ax.set_xscale("log")
            ax.set_yscale("log", nonpositive="clip")
            ax.grid(alpha=0.3, which="both", lw=0.4)
            for h in summary["horizons"]:
                ax.axvline(h / 3600.0, color="grey", lw=0.5, ls=":")
        for ax in row[len(methods if row is axes[0] else workers):]:
            ax.set_visible(False)
    for ax in axes[1]:
        ax.set_xlabel("simulated wall-clock time (hours, log)")
    for row in axes:
        row[0].set_ylabel("mean normalized regret")
    fig.suptitle(f"Mean normalized regret vs time, {len(summary['datasets'])} datasets x up to "
                 f"{len(summary['seeds'])} seeds (95% bootstrap bands); dashed: 1-worker "
                 f"{last} mean", fontsize=9)
    fig.tight_layout()
    path = Path(out_dir) / fname
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# ------------------------------------------------------------------ driver
def run_parallel(
    metadata: Path,
    methods: Sequence[str],
    workers: Sequence[int],
    budget: float,
    seeds: int,
    cells_dir: Path,
    datasets: Sequence[str] | None = None,
    jobs: int = 1,
    rerun: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
    seeds_for: dict[str, int] | None = None,
) -> tuple[dict[int, list[Trajectory]], dict[int, dict[str, Any]]]:
    """Run (or reuse) the grid for every worker count; returns trajectories and settings per count.

    Cells live in ``cells_dir / f"w{N}" / "cells"`` (the :mod:`hubtune.bench.suite` cache).
    ``seeds_for`` gives some methods another number of seeds than ``seeds``.
    """
    from hubtune.bench.suite import BenchSettings, run_grid
    from hubtune.metadata import load_metadata

    meta = load_metadata(metadata)
    chosen = list(datasets) if datasets else list(meta.datasets)
    missing = [d for d in chosen if d not in meta.datasets]
    if missing:
        raise ParallelBenchError(f"unknown dataset(s) {', '.join(missing)} in {metadata}")
    runs: dict[int, list[Trajectory]] = {}
    settings_by_w: dict[int, dict[str, Any]] = {}
    for w in workers:
        settings = BenchSettings(metadata=str(Path(metadata).resolve()), budget=budget, workers=w)
        t0 = time.time()
        trajs, failures, reused = [], [], 0
        groups: dict[int, list[str]] = {}
        for m in methods:
            groups.setdefault((seeds_for or {}).get(m, seeds), []).append(m)
        for n_seeds, group in groups.items():
            t, f, r = run_grid(settings, group, chosen, range(n_seeds), Path(cells_dir) / f"w{w}",
                               jobs=jobs, rerun=rerun)
            trajs, failures, reused = trajs + t, failures + f, reused + r
        if failures:
            first = failures[0]
            raise ParallelBenchError(
                f"{len(failures)} cell(s) failed with {w} workers, e.g. {first.cell}: {first.error}")
        if progress is not None:
            progress(f"{w} worker(s): {len(trajs)} cells ({reused} reused) in "
                     f"{time.time() - t0:.0f} s")
        runs[w] = trajs
        settings_by_w[w] = settings.to_dict()
    return runs, settings_by_w


def _parse_workers(text: str) -> list[int]:
    try:
        ws = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise ParallelBenchError(f"--workers must be a comma-separated list of integers, got {text!r}") from None
    if not ws or ws[0] < 1:
        raise ParallelBenchError(f"--workers must list integers >= 1, got {text!r}")
    return ws


def _parse_seeds_for(text: str) -> dict[str, int]:
    out = {}
    for item in (x.strip() for x in text.split(",") if x.strip()):
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            raise ParallelBenchError(
                f"--seeds-for takes METHOD=N pairs separated by commas, got {item!r}") from None
        if out[name.strip()] < 1:
            raise ParallelBenchError(f"--seeds-for: seeds must be >= 1, got {item!r}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(prog="python -m hubtune.bench.parallel",
                                description="Compare methods with several simulated workers.")
    p.add_argument("--metadata", type=Path, required=True, help="meta-dataset to replay")
    p.add_argument("--methods", default="quicktune,asha,random",
                   help="comma-separated methods (need supports_async for workers > 1)")
    p.add_argument("--workers", default="1,4,8", help="comma-separated worker counts")
    p.add_argument("--datasets", default="", help="comma-separated datasets (default: all)")
    p.add_argument("--budget", default="16h", help="simulated budget per run")
    p.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1")
    p.add_argument("--seeds-for", default="",
                   help="other seed counts for some methods, e.g. 'quicktune=5'")
    p.add_argument("--jobs", type=int, default=1, help="processes running cells")
    p.add_argument("--cells", type=Path, required=True,
                   help="cache folder for the per-cell results (one subfolder per worker count)")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    p.add_argument("--reference", default="quicktune", help="method compared with the others")
    p.add_argument("--rerun", default="", help="methods whose cached cells are recomputed")
    args = p.parse_args(argv)
    try:
        workers = _parse_workers(args.workers)
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        if not methods:
            raise ParallelBenchError("--methods is empty")
        if args.seeds < 1 or args.jobs < 1:
            raise ParallelBenchError("--seeds and --jobs must be >= 1")
        from hubtune.optim.registry import get_method

        for m in methods:
            spec = get_method(m)
            if workers[-1] > 1 and not spec.supports_async:
                raise ParallelBenchError(f"method {m!r} does not support several workers")
        seeds_for = _parse_seeds_for(args.seeds_for)
        budget = parse_duration(args.budget)
        t0 = time.time()
        runs, settings = run_parallel(
            args.metadata, methods, workers, budget, args.seeds, args.cells,
            datasets=[d.strip() for d in args.datasets.split(",") if d.strip()] or None,
            jobs=args.jobs, rerun=[m.strip() for m in args.rerun.split(",") if m.strip()],
            progress=lambda msg: print(msg, flush=True), seeds_for=seeds_for)
        elapsed = time.time() - t0
        summary = parallel_summary(runs, budget, reference=args.reference)
        command = "python -m hubtune.bench.parallel " + " ".join(
            shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
        summary["command"] = command
        summary["settings"] = {str(w): s for w, s in settings.items()}
        summary["wall_seconds"] = elapsed
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        (out / "summary.md").write_text(render_parallel_md(
            summary, preamble=[f"Command: `{command}`"]))
        (out / "results.json").write_text(json.dumps(
            {str(w): results_document(runs[w], settings[w], command) for w in workers}) + "\n")
        plot_parallel(summary, out)
    except (ValueError, KeyError, ImportError, OSError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {msg}", file=sys.stderr)
        return 2
    print(f"wrote {out}/summary.md, summary.json, results.json, regret_parallel.png "
          f"({elapsed:.0f} s of benchmark)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
