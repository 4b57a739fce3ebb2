"""The real-training :class:`~hubtune.protocol.steps.Evaluator`.

:class:`TrainerEvaluator` carries out an optimizer's steps with
:func:`hubtune.finetune.engine.advance`, one checkpoint directory per trial
(``root / trial_id``). It mirrors the tabular simulator's statuses so an
optimizer cannot tell them apart: ``ended`` once a trial stands at
``max_epochs`` (with a reason when a step asked for more), ``diverged`` on a
non-finite loss, ``failed`` when the trial cannot be built or trained (the
reason names the error; the search goes on).

Each record's ``score`` is the validation metric the search optimizes
(``metric``: ``top1`` by default, ``balanced_accuracy`` or ``macro_f1``, see
:mod:`hubtune.finetune.metrics`); the record's ``val_metrics`` keeps all three.

Example:
    >>> ev = TrainerEvaluator(data, root="runs/search", max_epochs=10)  # doctest: +SKIP
    >>> result = ev.advance(Step("t1", cfg, to_epoch=1))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path
from typing import Any

import torch

from hubtune.core.records import EpochRecord
from hubtune.finetune.engine import TrainerError, advance, read_records
from hubtune.finetune.metrics import METRICS
from hubtune.protocol.steps import Step, StepResult

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+=-]{0,199}$")


class TrainerEvaluator:
    """Advance trials by real finetuning, checkpointing each under ``root / trial_id``.

    Args:
        data: the :class:`hubtune.data.ImageDataset` every trial trains on.
        root: directory holding one sub-directory per trial.
        max_epochs: epochs schedules are defined over (a trial's maximum).
        seed: seed of every trial (new-layer init, data order, augmentation).
        device: ``"cpu"`` or ``"cuda"``.
        num_threads: torch CPU threads while training.
        pretrained: start from pretrained weights.
        weights_paths: optional local weights file per model name.
        metric: the validation score reported as each record's ``score``
            (one of :data:`hubtune.finetune.metrics.METRICS`).
    """

    def __init__(
        self,
        data: Any,
        root: str | Path,
        max_epochs: int,
        seed: int = 0,
        device: str | torch.device = "cpu",
        num_threads: int | None = None,
        pretrained: bool = True,
        weights_paths: dict[str, str | Path] | None = None,
        metric: str = "top1",
    ) -> None:
        if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
            raise TrainerError(f"max_epochs must be a positive integer, got {max_epochs!r}")
        if metric not in METRICS:
            raise TrainerError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        self.metric = metric
        self.data = data
        self.root = Path(root)
        self.max_epochs = max_epochs
        self.seed = seed
        self.device = device
        self.num_threads = num_threads
        self.pretrained = pretrained
        self.weights_paths = dict(weights_paths or {})
        self.on_batch: Any = None
        """Optional per-batch callback ``(epoch, batch, batches)`` (see :func:`advance`)."""

    def trial_dir(self, trial_id: str) -> Path:
        """Checkpoint directory of ``trial_id``."""
        if not isinstance(trial_id, str) or not _SAFE_ID.match(trial_id) or ".." in trial_id:
            raise TrainerError(
                f"trial id {trial_id!r} cannot name a directory: use letters, digits and ._@+=-"
            )
        return self.root / trial_id

    def advance(self, step: Step) -> StepResult:
        """Train ``step.trial_id`` from its checkpoint to ``step.to_epoch`` (capped at max_epochs).

        The result holds the epochs trained by this call; when the checkpoint
        already stood at or beyond the target (a redo after a crash), nothing is
        trained and the result holds the checkpoint's epochs up to the target.
        """
        start = time.perf_counter()
        target = min(int(step.to_epoch), self.max_epochs)
        try:
            result = advance(
                step.config,
                target,
                data=self.data,
                workdir=self.trial_dir(step.trial_id),
                max_epochs=self.max_epochs,
                seed=self.seed,
                device=self.device,
                num_threads=self.num_threads,
                pretrained=self.pretrained,
                weights_path=self.weights_paths.get(step.config.model),
                on_batch=self.on_batch,
                stop_at=step.info.get("stop_at"),  # the run's deadline (set by the search loop)
            )
        except Exception as exc:  # one broken trial must not end the search
            return StepResult(
                step=step,
                records=[],
                status="failed",
                reason=f"{type(exc).__name__}: {exc}",
                seconds=time.perf_counter() - start,
            )
        status, reason = result.status, result.reason
        records = result.records
        if status == "ok" and not records and result.epoch >= target:
            # The checkpoint already holds this step's epochs: a step redone after a
            # crash that came after its checkpoint was written but before its result
            # was recorded. Hand back what the checkpoint holds up to the target;
            # the caller drops epochs it has seen (``hubtune run`` does).
            records = [r for r in read_records(self.trial_dir(step.trial_id))
                       if r.epoch <= target]
        try:
            records = [self._scored(r) for r in records]
        except TrainerError as exc:
            return StepResult(step=step, records=[], status="failed", reason=str(exc),
                              seconds=time.perf_counter() - start)
        if status == "ok" and result.epoch >= self.max_epochs:
            status = "ended"
            if step.to_epoch > self.max_epochs:
                reason = f"max_epochs={self.max_epochs} reached"
        return StepResult(
            step=step,
            records=records,
            status=status,
            reason=reason,
            seconds=time.perf_counter() - start,
        )

    def _scored(self, record: EpochRecord) -> EpochRecord:
        """``record`` with ``score`` set to this evaluator's metric."""
        if self.metric == "top1":
            return record
        value = (record.val_metrics or {}).get(self.metric)
        if value is None:
            raise TrainerError(f"epoch {record.epoch} was evaluated without {self.metric} "
                               f"(a checkpoint from an older hubtune?)")
        return dataclasses.replace(record, score=float(value))
