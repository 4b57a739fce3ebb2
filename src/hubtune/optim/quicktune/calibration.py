"""Per-task calibration of the surrogate's predictions, learnt from this run's own residuals.

The GP's network and kernel stay at their meta-trained values; what adapts to
the target task is a map from the GP's prediction ``N(m, s^2)`` to
``N(m + a s, (c s)^2)``, fitted on the *standardised residuals* of the
predictions the optimizer made before each observation
(``z = (observed - m) / sd`` at the step's target epoch, ``sd`` the predictive
std with observation noise). Predictions for never-started configs and for
continuations are calibrated apart (their errors differ: on new domains the
first are tens of points off, the second one or two).

Both parameters are shrunk towards "no correction" (``a = 0``, ``c = 1``) by
``prior_weight`` pseudo-residuals, so a few observations change little and the
meta-trained prior cannot be forgotten: with ``n`` residuals the offset is
``sum(z) / (n + w)`` and the squared scale ``(w + sum(z^2)) / (w + n)``: the
scale is the (shrunk) root-mean-square miss in GP stds, not centred on the
offset, so a consistent miss both moves the mean and widens the std (a bias
seen on a few steps is not trusted to be exactly right). Every rule here is a small pure function;
the optimizer keeps the residuals (and its journal records them, so a resumed
run calibrates identically).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z_CLIP = 3.0
"""Standardised residuals are clipped to +-this, so one wild miss cannot dominate. 3 rather
than 6: a run that diverges after a good epoch is a miss of 4-6 GP stds; counted in full, a
few of them tripled the std of every later continuation, and the inflated expected improvement
kept a mediocre trial running for hours (a 16 h PLT_NET replay ended at regret 0.25 instead of
0.02). On the leave-one-out replay 3 and 2 were both a little better than 6 at 1, 4 and 16 h
(docs/optimizer.md)."""
MIN_SCALE = 0.3
"""Smallest std scale (a run of lucky hits never makes the GP near-certain)."""


def standardized_residual(observed: float, mean: float, sd: float) -> float | None:
    """``(observed - mean) / sd`` clipped to ``+-Z_CLIP``; ``None`` when undefined.

    Undefined for a non-finite score or prediction, or ``sd <= 0``.
    """
    if not (math.isfinite(observed) and math.isfinite(mean) and math.isfinite(sd)) or sd <= 0:
        return None
    return float(np.clip((observed - mean) / sd, -Z_CLIP, Z_CLIP))


def fit_calibration(residuals: Sequence[float], prior_weight: float) -> tuple[float, float]:
    """``(offset a in std units, std scale c)`` from standardised residuals, shrunk to ``(0, 1)``.

    ``prior_weight`` pseudo-residuals of a perfectly calibrated predictor
    (mean 0, mean square 1) are pooled with the observed ones; the scale is the
    pooled root-mean-square residual (uncentred).

    >>> fit_calibration([], 5.0)
    (0.0, 1.0)
    >>> a, c = fit_calibration([-2.0] * 5, 5.0)
    >>> round(a, 3), round(c, 3)
    (-1.0, 1.581)
    """
    z = np.asarray(residuals, dtype=np.float64)
    n = len(z)
    if n == 0:
        return 0.0, 1.0
    w = max(float(prior_weight), 0.0)
    offset = float(z.sum() / (n + w))
    scale2 = (w + float((z * z).sum())) / (w + n)
    return offset, max(math.sqrt(scale2), MIN_SCALE)


def apply_calibration(mean: np.ndarray, std: np.ndarray, offset: float, scale: float,
                      mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(mean + offset * std, scale * std)`` where ``mask`` (all rows if ``None``), else unchanged."""
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    new_mean, new_std = mean + offset * std, scale * std
    if mask is None:
        return new_mean, new_std
    return np.where(mask, new_mean, mean), np.where(mask, new_std, std)


def predictive_sd(std: float, noise_var: float) -> float:
    """The std of an observed score: the GP's (noise-free) std with the observation noise."""
    return math.sqrt(max(std, 0.0) ** 2 + max(noise_var, 0.0))
