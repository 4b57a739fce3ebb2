"""What a told step means to Quick-Tune: its effective status, its prediction and residual.

Small pure functions used by :meth:`~hubtune.optim.quicktune.QuickTune.tell`
(and by tools reading journals), plus :func:`records_from_scores` for replays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hubtune.core.records import EpochRecord
from hubtune.optim.quicktune.calibration import predictive_sd, standardized_residual


def effective_status(status: str, to_epoch: int | None, reached: int) -> str:
    """A step's status as the optimizer takes it: ``"ended"`` when an ``"ok"`` step left
    its trial short of the ``to_epoch`` it asked for.

    A loop may report a finished (or crashed) run only by returning fewer epochs
    than asked. Such a trial cannot continue, and its step's seconds are not those
    of the epochs asked for: taken as cost evidence, a 1-epoch "crash" against a
    4-epoch prediction widens the cost margin of every later step.
    """
    if status == "ok" and to_epoch is not None and reached < to_epoch:
        return "ended"
    return status


def score_prediction(info: dict[str, Any] | None) -> tuple[float, float] | None:
    """``(GP mean, predictive std)`` of a step's score at its target epoch from its ``info``
    (uncalibrated: the calibration is fitted on the GP's own errors), or ``None``."""
    info = info or {}
    mean = info.get("gp_mean", info.get("mean"))
    std = info.get("gp_std", info.get("std"))
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (mean, std)):
        return None
    noise = info.get("noise_std", 0.0)
    noise = float(noise) if isinstance(noise, (int, float)) and not isinstance(noise, bool) else 0.0
    return float(mean), predictive_sd(float(std), noise * noise)


def step_residual(records: Sequence[tuple[int, float, float]], to_epoch: int | None,
                  prediction: Sequence[float] | None) -> float | None:
    """Standardised residual of a step's prediction at its target epoch (``None`` when the
    step has no prediction or did not reach ``to_epoch`` with a finite score)."""
    if prediction is None or to_epoch is None:
        return None
    at = [s for e, s, _ in records if int(e) == int(to_epoch)]
    if not at:
        return None
    return standardized_residual(float(at[-1]), float(prediction[0]), float(prediction[1]))


def collapsed(earlier: Sequence[float], records: Sequence[tuple[int, float, float]], to_epoch: int | None,
              fraction: float | None) -> bool:
    """Whether the step's score at ``to_epoch`` fell below ``fraction`` of its trial's best
    ``earlier`` score: training diverged (0.685 at epoch 3, 0.071 at epoch 4).

    A collapse is a failure of that run, not evidence that the surrogate is miscalibrated
    for this task; counted as a residual (4-6 GP stds), it widened every later
    continuation's std (see ``QuickTuneSettings.skip_collapse``). ``fraction=None``: never.

    >>> collapsed([0.60, 0.685], [(4, 0.071, 1.0)], 4, 0.5)
    True
    >>> collapsed([0.60, 0.685], [(4, 0.50, 1.0)], 4, 0.5)
    False
    """
    if fraction is None or to_epoch is None or not earlier:
        return False
    at = [s for e, s, _ in records if int(e) == int(to_epoch)]
    return bool(at) and float(at[-1]) < fraction * max(earlier)


def records_from_scores(scores: Sequence[float], seconds: Sequence[float], start_epoch: int = 0) -> list[EpochRecord]:
    """Epoch records for a replayed curve segment (helper for tests and tools)."""
    return [
        EpochRecord(epoch=start_epoch + i + 1, score=float(s), train_seconds=float(c))
        for i, (s, c) in enumerate(zip(scores, seconds, strict=True))
    ]
