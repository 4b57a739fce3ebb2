"""Per-epoch records shared by the real trainer, the simulator and the optimizers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

StepStatus = Literal["ok", "diverged", "failed", "ended"]
"""Outcome of advancing a trial.

``ok``: trained to the requested epoch. ``diverged``: NaN/inf loss, no further
epochs. ``failed``: could not build or train (reason given). ``ended``: the
trial cannot go further (its recorded curve ends, or it hit ``max_epochs``).
"""


@dataclass
class EpochRecord:
    """What one finished epoch of one trial produced.

    ``score`` is the validation score as a fraction in [0, 1] (higher is
    better): top-1 accuracy, or the run's ``--metric``; ``val_metrics`` holds every
    validation metric the real trainer computed (``top1``, ``balanced_accuracy``,
    ``macro_f1``). Seconds are wall-clock on the machine that ran the epoch.
    """

    epoch: int
    score: float
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    checkpoint_seconds: float = 0.0
    train_loss: float | None = None
    val_loss: float | None = None
    top5: float | None = None
    val_metrics: dict[str, float] | None = None
    lr: float | None = None
    peak_memory_mb: float | None = None
    batch_size: int | None = None
    grad_accumulation: int = 1
    note: str | None = None

    @property
    def seconds(self) -> float:
        """Total seconds this epoch cost (training + evaluation + checkpoint I/O)."""
        return self.train_seconds + self.eval_seconds + self.checkpoint_seconds

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpochRecord:
        """Inverse of :meth:`to_dict` (unknown keys are ignored for forward compatibility)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
