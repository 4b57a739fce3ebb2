"""The real finetuning engine with freeze-thaw continuation.

Entry points: :func:`advance` (train one trial from its checkpoint to a later
epoch) and :class:`TrainerEvaluator` (the :class:`~hubtune.protocol.steps.Evaluator`
an optimizer drives). See ``docs/trainer.md``.
"""

from hubtune.finetune.checkpoint import CheckpointError
from hubtune.finetune.engine import (
    AdvanceResult,
    TrainerError,
    Trial,
    advance,
    epoch_seed,
    read_records,
)
from hubtune.finetune.evaluator import TrainerEvaluator
from hubtune.finetune.schedule import LRSchedule
from hubtune.space.config import LINEAR_PROBING_FRACTION, linear_probing_epochs

__all__ = [
    "LINEAR_PROBING_FRACTION",
    "AdvanceResult",
    "CheckpointError",
    "LRSchedule",
    "TrainerError",
    "TrainerEvaluator",
    "Trial",
    "advance",
    "epoch_seed",
    "linear_probing_epochs",
    "read_records",
]
