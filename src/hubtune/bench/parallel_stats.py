"""Statistics of the parallel benchmark: regret over simulated time, speed-ups, paired differences.

:func:`parallel_summary` turns the trajectories of each (method, worker count)
into the JSON summary that :mod:`hubtune.bench.parallel_render` writes out as
Markdown and plots (see :mod:`hubtune.bench.parallel` for the measures).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from hubtune.bench.metrics import (
    bootstrap_ci,
    mean_stat,
    regret_curve,
    time_grid,
    time_to_regret,
)
from hubtune.bench.report import THRESHOLDS, horizons_for
from hubtune.bench.runner import Trajectory
from hubtune.core.units import format_duration

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
    for m in methods:
        out["methods"][m] = {
            str(w): _method_entry(cells[m][w], cells[m].get(base_w), budget, horizons, grid,
                                  n_boot, seed)
            for w in sorted(cells[m])}
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


def _method_entry(
    by_cell: Cells, base: Cells | None, budget: float, horizons: Sequence[float],
    grid: np.ndarray, n_boot: int, seed: int,
) -> dict[str, Any]:
    """One method at one worker count: mean regret (with CIs) at the horizons and over
    ``grid``, steps, epochs, overhead, times to the regret thresholds and, given the
    ``base`` worker count's cells, the time to reach its final regret."""
    pts = np.concatenate([grid, horizons])
    n = len(grid)
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
    if base is not None:
        entry["to_base_target"] = speedup_ci(base, by_cell, budget, n_boot, seed)
        entry["to_base_target_per_cell"] = per_cell_time_to_base(base, by_cell, budget)
    return entry
