"""Quick-Tune's acquisition: expected improvement per predicted second, seeded tie-break."""

from __future__ import annotations

import math

import numpy as np

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """Closed-form EI of ``N(mean, std^2)`` over ``best`` (maximisation)."""
    std = np.maximum(std, 1e-9)
    z = (mean - best) / std
    cdf = 0.5 * (1.0 + _erf(z / _SQRT2))
    pdf = np.exp(-0.5 * z * z) / _SQRT2PI
    return np.maximum((mean - best) * cdf + std * pdf, 0.0)


def win_probability(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """``P(score > best)`` for ``score ~ N(mean, std^2)``."""
    z = (np.asarray(mean, dtype=np.float64) - best) / np.maximum(std, 1e-9)
    return 0.5 * (1.0 + _erf(z / _SQRT2))


def _erf(x: np.ndarray) -> np.ndarray:
    # numpy has no vectorised erf; Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7).
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def cost_scaled(ei: np.ndarray, cost: np.ndarray, power: float) -> np.ndarray:
    """``ei / cost ** power`` (cost floored at 1e-6 s; ``power = 0``: cost-unaware)."""
    return ei / np.power(np.maximum(cost, 1e-6), power)


def improvement_bar(smoothed_obs: np.ndarray | None, best_observed: float | None, query_mean: np.ndarray) -> float:
    """The score expected improvement is measured against.

    The highest posterior mean at the observed epochs when scores are noisy
    (``smoothed_obs``; see ``QuickTuneSettings.val_size``), else the best
    observed score, else (nothing observed) the median predicted query score.
    """
    if smoothed_obs is not None:
        return float(min(smoothed_obs.max(), 1.0))
    if best_observed is not None:
        return float(best_observed)
    return float(np.median(query_mean))


def tie_break(acq: np.ndarray, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """Index of the highest ``acq`` after a seeded jitter far below any real difference,
    and the jittered values (draws one uniform per entry from ``rng``)."""
    finite = np.isfinite(acq)
    scale = float(np.abs(acq[finite]).max()) if finite.any() else 1.0
    acq = acq + rng.random(len(acq)) * 1e-12 * (scale + 1e-30)
    return int(np.argmax(acq)), acq
