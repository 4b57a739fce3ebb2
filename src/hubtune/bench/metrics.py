"""Benchmark metrics over many (method, dataset, seed) trajectories.

- normalized regret of the incumbent at any time (step function; 1 before
  the first finished epoch), on a log-spaced time grid;
- mean and IQM (interquartile mean: the mean of the middle 50%) over
  datasets x seeds, with percentile-bootstrap 95% confidence intervals
  (cells resampled with replacement);
- average rank of the methods over time (ranked per dataset+seed, ties get
  the average rank, then averaged over cells);
- time to reach a regret threshold (5%, 1%).

Example:
    >>> import numpy as np
    >>> iqm(np.array([0.0, 1.0, 2.0, 3.0, 100.0, -100.0, 1.5, 2.5]))
    1.75
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from hubtune.bench.runner import Trajectory


def time_grid(budget: float, points: int = 120, start: float = 60.0) -> np.ndarray:
    """Log-spaced simulated times from ``start`` (or budget/1000 if smaller) to ``budget``."""
    lo = min(start, budget / 1000.0)
    return np.geomspace(lo, budget, points)


def regret_curve(traj: Trajectory, grid: np.ndarray) -> np.ndarray:
    """Regret of ``traj``'s incumbent at every time of ``grid``."""
    if not traj.times:
        return np.ones(len(grid))
    idx = np.searchsorted(np.asarray(traj.times), grid, side="right") - 1
    regrets = np.asarray(traj.regrets)
    return np.where(idx >= 0, regrets[np.clip(idx, 0, None)], 1.0)


def time_to_regret(traj: Trajectory, threshold: float) -> float:
    """First simulated time the regret is <= ``threshold`` (``inf`` if never)."""
    for t, r in zip(traj.times, traj.regrets, strict=True):
        if r <= threshold:
            return t
    return math.inf


def iqm(values: np.ndarray, axis: int = 0) -> np.ndarray | float:
    """Interquartile mean: mean of the values between the 25% and 75% order statistics.

    Drops ``floor(n / 4)`` values at each end (for n < 4 nothing is dropped).
    """
    v = np.sort(np.asarray(values, dtype=float), axis=axis)
    n = v.shape[axis]
    k = n // 4
    kept = np.take(v, np.arange(k, n - k), axis=axis)
    out = kept.mean(axis=axis)
    return float(out) if np.ndim(out) == 0 else out


def bootstrap_ci(
    values: np.ndarray,
    stat: Callable[[np.ndarray], np.ndarray | float],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``stat`` over axis 0 of ``values`` and its percentile-bootstrap CI.

    ``values`` is ``[cells]`` or ``[cells, times]``; ``stat(x)`` reduces axis 0.
    Returns ``(estimate, low, high)`` (arrays over the remaining axis).
    """
    x = np.asarray(values, dtype=float)
    if x.shape[0] == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    est = np.asarray(stat(x))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.shape[0], size=(n_boot, x.shape[0]))
    boots = np.stack([np.asarray(stat(x[i])) for i in idx])
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha], axis=0)
    return est, lo, hi


def mean_stat(x: np.ndarray) -> np.ndarray:
    """Mean over axis 0 (for :func:`bootstrap_ci`)."""
    return x.mean(axis=0)


def iqm_stat(x: np.ndarray) -> np.ndarray:
    """IQM over axis 0 (for :func:`bootstrap_ci`)."""
    return np.asarray(iqm(x, axis=0))


def rank_rows(values: np.ndarray) -> np.ndarray:
    """Ranks (1 = lowest value) along the last axis; ties get their average rank.

    >>> rank_rows(np.array([0.3, 0.1, 0.3])).tolist()
    [2.5, 1.0, 2.5]
    """
    v = np.asarray(values, dtype=float)
    order = np.argsort(v, axis=-1, kind="stable")
    sorted_v = np.take_along_axis(v, order, axis=-1)
    n = v.shape[-1]
    base = np.arange(1, n + 1, dtype=float)
    ranks_sorted = np.broadcast_to(base, v.shape).copy()
    # average ranks over runs of equal values
    flat_sorted = sorted_v.reshape(-1, n)
    flat_ranks = ranks_sorted.reshape(-1, n)
    for row, vals in zip(flat_ranks, flat_sorted, strict=True):
        start = 0
        for j in range(1, n + 1):
            if j == n or vals[j] != vals[start]:
                if j - start > 1:
                    row[start:j] = (start + 1 + j) / 2.0
                start = j
    ranks = np.empty_like(ranks_sorted)
    np.put_along_axis(ranks, order, ranks_sorted.reshape(v.shape), axis=-1)
    return ranks


def average_ranks(curves: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-cell ranks of the methods: ``curves[m]`` is ``[cells, times]`` (aligned cells).

    Returns ``ranks[m]`` of the same shape (1 = best, i.e. lowest regret).
    """
    methods = list(curves)
    stacked = np.stack([curves[m] for m in methods], axis=-1)  # [cells, times, methods]
    ranks = rank_rows(stacked)
    return {m: ranks[..., i] for i, m in enumerate(methods)}


def aligned_cells(
    trajectories: Sequence[Trajectory],
) -> tuple[list[tuple[str, int]], dict[str, dict[tuple[str, int], Trajectory]]]:
    """Cells ``(dataset, seed)`` that every method has, and trajectories by method and cell."""
    by_method: dict[str, dict[tuple[str, int], Trajectory]] = {}
    for t in trajectories:
        by_method.setdefault(t.method, {})[(t.dataset, t.seed)] = t
    common = None
    for cells in by_method.values():
        common = set(cells) if common is None else common & set(cells)
    return sorted(common or ()), by_method
