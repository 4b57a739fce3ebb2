"""The finetuning engine: advance one trial from its checkpoint to a later epoch.

:func:`advance` is the whole public contract: it builds (or restores) the
model, optimizer, schedule, AMP scaler and regularizer state of a trial from
``workdir``, trains epoch by epoch until ``to_epoch``, evaluates on the
validation split after every epoch, saves one atomic checkpoint at the end and
appends one JSON line per epoch to ``workdir/records.jsonl``.

Prefix exactness: every schedule is defined over ``max_epochs`` and every
random draw of epoch ``e`` (data order, flips, augmentation, mixup, dropout,
StochNorm) comes from generators reseeded from ``(seed, e)`` at the start of
the epoch, so the randomness needs no saving and training to 2, pausing and
continuing to 4 reproduces training straight to 4 bit for bit (same device,
same threads). The caller's global RNG states are restored on return.

Timing attribution in the returned :class:`~hubtune.core.records.EpochRecord` s:
``checkpoint_seconds`` of the first epoch of a step holds the restore cost
(model build + checkpoint load), that of the last epoch the save cost.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hubtune.core.records import EpochRecord, StepStatus
from hubtune.finetune.checkpoint import (
    has_checkpoint,
    read_state,
)
from hubtune.finetune.metrics import METRICS
from hubtune.finetune.runtime import (  # noqa: F401  (re-exported: the engine's public face)
    EVAL_BATCH_FACTOR,
    TrainerError,
    _Diverged,
    _peak_memory_mb,
    _seed_all,
    amp_dtype,
    data_fingerprint,
    epoch_seed,
)
from hubtune.finetune.trial import Trial
from hubtune.finetune.trialdir import (  # noqa: F401
    DIVERGED_FILE,
    LOCK_FILE,
    RECORDS_FILE,
    _append_records,
    _read_diverged,
    _sync_records_file,
    _write_diverged,
    check_identity,
    read_records,
    trial_identity,
    trial_lock,
)
from hubtune.space.config import Config


@dataclass
class AdvanceResult:
    """What :func:`advance` produced.

    Attributes:
        records: one record per epoch trained in this call (possibly empty).
        status: ``ok``, ``diverged`` (non-finite loss; no further training) or
            ``failed`` (out of memory even at micro-batch 1).
        reason: why, when status is not ``ok``.
        epoch: the epoch the trial stands at afterwards.
        seconds: wall-clock seconds of the whole call.
    """

    records: list[EpochRecord] = field(default_factory=list)
    status: StepStatus = "ok"
    reason: str | None = None
    epoch: int = 0
    seconds: float = 0.0



def _validate_request(config: Config, to_epoch: int, max_epochs: int) -> None:
    if not isinstance(config, Config):
        raise TrainerError(f"config must be a hubtune Config, got {type(config).__name__}")
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
        raise TrainerError(f"max_epochs must be a positive integer, got {max_epochs!r}")
    if isinstance(to_epoch, bool) or not isinstance(to_epoch, int) or to_epoch < 0:
        raise TrainerError(f"to_epoch must be a non-negative integer, got {to_epoch!r}")
    if to_epoch > max_epochs:
        raise TrainerError(
            f"to_epoch={to_epoch} is beyond max_epochs={max_epochs}: schedules are "
            f"defined over max_epochs, so a trial cannot train past it"
        )


# Long by its docstring, which documents every argument: 56 lines without it.
def advance(
    config: Config,
    to_epoch: int,
    *,
    data: Any,
    workdir: str | Path,
    max_epochs: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
    num_threads: int | None = None,
    pretrained: bool = True,
    weights_path: str | Path | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    on_batch: Callable[[int, int, int], None] | None = None,
    stop_at: float | None = None,
) -> AdvanceResult:
    """Train the trial in ``workdir`` (``config`` on ``data``) from where it stands to ``to_epoch``.

    Args:
        config: the trial's configuration (must equal the one it started with).
        to_epoch: epoch to stand at afterwards (1-based count of finished epochs).
        data: an :class:`hubtune.data.ImageDataset` (train and val splits used).
        workdir: the trial's directory (checkpoint + ``records.jsonl``).
        max_epochs: the length schedules are defined over; ``to_epoch <= max_epochs``.
        seed: the trial's seed (weights of new layers, data order, augmentation).
        device: ``"cpu"`` or ``"cuda"`` (AMP and channels-last only on CUDA).
        num_threads: torch CPU threads while training (restored afterwards).
        pretrained: start from the hub's pretrained weights (else random init).
        weights_path: local weights file for the hub model.
        on_epoch: called with each finished epoch's record (progress display).
        on_batch: called after each training batch (see :attr:`Trial.on_batch`).
        stop_at: a deadline (``time.time()``) the call keeps (see :func:`stop_rule`):
            no further epoch starts when the last one's duration would pass it
            (status ``ended``, the epochs done are saved), and the first epoch of the
            call is abandoned mid-way once it is passed (status ``failed``; the
            checkpoint stays where it was).

    Returns:
        An :class:`AdvanceResult` with the epochs trained by this call; nothing is
        trained (``records == []``) when ``to_epoch`` is not beyond the trial's
        current epoch. One process at a time trains a trial (:func:`trial_lock`).

    Raises:
        TrainerError: invalid epochs or a checkpoint from different settings.

    Example:
        >>> result = advance(cfg, 2, data=ds, workdir="runs/t1", max_epochs=10)  # doctest: +SKIP
        >>> result = advance(cfg, 4, data=ds, workdir="runs/t1", max_epochs=10)  # continues  # doctest: +SKIP
    """
    start = time.perf_counter()
    _validate_request(config, to_epoch, max_epochs)
    workdir = Path(workdir)
    with trial_lock(workdir):
        current = 0
        if has_checkpoint(workdir):
            state = read_state(workdir)
            check_identity(state, trial_identity(config, max_epochs, seed, pretrained, data), workdir)
            current = int(state.get("epoch", 0))
        diverged = _read_diverged(workdir)
        if diverged is not None:
            reason, last_good = diverged
            return AdvanceResult(
                status="diverged", reason=reason, epoch=last_good,
                seconds=time.perf_counter() - start,
            )
        if to_epoch <= current:
            return AdvanceResult(epoch=current, seconds=time.perf_counter() - start)

        old_threads = torch.get_num_threads()
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            if num_threads is not None:
                torch.set_num_threads(int(num_threads))
            with torch.random.fork_rng(devices=[]):
                trial = _open_trial(config, data, workdir, max_epochs, seed, device, pretrained,
                                    weights_path, on_batch, stop_at)
                if trial is None:
                    return AdvanceResult(
                        status="failed", epoch=0, seconds=time.perf_counter() - start,
                        reason="abandoned while preparing Co-Tuning (before epoch 1): the run's "
                               "deadline passed (budget spent)")
                restore_seconds = time.perf_counter() - start
                new, status, reason = _train_epochs(trial, to_epoch, stop_at, restore_seconds,
                                                    on_epoch)
                return _keep(trial, workdir, new, status, reason, start)
        finally:
            torch.set_num_threads(old_threads)
            random.setstate(py_state)
            np.random.set_state(np_state)


def _keep(trial: Trial, workdir: Path, new: list[EpochRecord], status: StepStatus,
          reason: str | None, start: float) -> AdvanceResult:
    """Save what a call trained (checkpoint unless it failed, records, divergence mark)."""
    if status == "diverged":
        _write_diverged(workdir, reason or "diverged", trial.epoch)
    if new:
        if status in ("ok", "ended"):
            save_seconds = trial.save(workdir)
            new[-1].checkpoint_seconds += save_seconds
        _append_records(workdir, new)
    return AdvanceResult(
        records=new, status=status, reason=reason, epoch=trial.epoch,
        seconds=time.perf_counter() - start,
    )


def _open_trial(
    config: Config,
    data: Any,
    workdir: Path,
    max_epochs: int,
    seed: int,
    device: str | torch.device,
    pretrained: bool,
    weights_path: str | Path | None,
    on_batch: Callable[[int, int, int], None] | None,
    stop_at: float | None,
) -> Trial | None:
    """The trial restored from its checkpoint in ``workdir``, or a fresh one there, with
    its deadline check set; ``None`` when the deadline passed while preparing Co-Tuning."""
    resuming = has_checkpoint(workdir)
    # A resumed trial gets its weights from the checkpoint; the pretrained ones
    # are only needed again as references (L2-SP, DELTA, Co-Tuning's head).
    needs_reference = config.sp_reg > 0 or config.delta_reg > 0 or config.cotuning_reg > 0
    trial = Trial(
        config, data, max_epochs, seed=seed, device=device, pretrained=pretrained,
        weights_path=weights_path, load_weights=pretrained and (needs_reference or not resuming),
    )
    trial.on_batch = on_batch
    n_train, n_val = len(data.train.labels), len(data.val.labels)
    trial.check_deadline = _deadline_check(stop_at, eval_share=n_val / max(n_train, 1))
    if resuming:
        trial.load(workdir)
        _sync_records_file(workdir, trial.records)
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        _sync_records_file(workdir, [])
        try:
            trial.prepare_cotuning()
        except _OutOfTime:
            return None
    return trial


def _train_epochs(
    trial: Trial,
    to_epoch: int,
    stop_at: float | None,
    restore_seconds: float,
    on_epoch: Callable[[EpochRecord], None] | None,
) -> tuple[list[EpochRecord], StepStatus, str | None]:
    """Train ``trial`` epoch by epoch up to ``to_epoch``: (new records, status, reason).

    No epoch starts that would pass ``stop_at`` (``ended``); the first epoch is
    abandoned once the deadline passes (``failed``); a non-finite loss ends it
    (``diverged``), and so does running out of memory at micro-batch 1 (``failed``).
    """
    new: list[EpochRecord] = []
    status: StepStatus = "ok"
    reason: str | None = None
    while trial.epoch < to_epoch:
        epoch = trial.epoch
        if new and stop_rule(stop_at, time.time(), _epoch_seconds(new[-1])) == "stop":
            status = "ended"
            reason = (f"stopped after epoch {epoch} of the {to_epoch} asked: one more epoch "
                      f"(~{_epoch_seconds(new[-1]):.0f}s) would pass the run's deadline")
            break
        if new:
            trial.check_deadline = None  # epochs done this call: stop at boundaries only
        try:
            record = _run_epoch(trial, epoch)
        except _Diverged as exc:
            status, reason = "diverged", str(exc)
            break
        except _OutOfMemory as exc:
            status, reason = "failed", str(exc)
            break
        except _OutOfTime:
            status = "failed"
            reason = (f"abandoned mid-way through epoch {epoch + 1}: the run's deadline "
                      f"passed (budget spent)")
            break
        if not new:
            record.checkpoint_seconds += restore_seconds
        new.append(record)
        trial.records.append(record)
        trial.epoch = epoch + 1
        if on_epoch is not None:
            on_epoch(record)
    return new, status, reason


class _OutOfMemory(Exception):
    pass


class _OutOfTime(Exception):
    """The run's deadline passed during a step's first epoch."""


def stop_rule(stop_at: float | None, now: float, last_epoch_seconds: float) -> str:
    """``"stop"`` if another epoch of ``last_epoch_seconds`` would end after ``stop_at``.

    Example:
        >>> stop_rule(100.0, 90.0, 5.0), stop_rule(100.0, 96.0, 5.0), stop_rule(None, 0, 1e9)
        ('go', 'stop', 'go')
    """
    if stop_at is None or now + last_epoch_seconds <= stop_at:
        return "go"
    return "stop"


def _epoch_seconds(record: EpochRecord) -> float:
    return float(record.train_seconds + record.eval_seconds)


EVAL_COST = 0.5
"""Seconds to evaluate an image, as a fraction of training on it (no backward pass, larger
batches): what the deadline check expects the epoch's evaluation to still cost."""


def _deadline_check(stop_at: float | None, eval_share: float = 0.0) -> Callable[..., None] | None:
    """A check, called after each batch, that raises :class:`_OutOfTime` when the epoch
    cannot finish by ``stop_at`` (``time.time()``): once the deadline has passed, or once
    the evaluation still to come (``eval_share`` = validation / training images, at
    :data:`EVAL_COST` of the training time so far) would end after it."""
    if stop_at is None:
        return None
    began = time.time()

    def check(done: int = 0, total: int = 0) -> None:
        now = time.time()
        evaluation = (now - began) * eval_share * EVAL_COST if done else 0.0
        if now + evaluation > stop_at:
            raise _OutOfTime

    return check


def _run_epoch(trial: Trial, epoch: int) -> EpochRecord:
    """Train and evaluate one epoch, retrying with half micro-batches on OOM."""
    notes: list[str] = []
    t0 = time.perf_counter()  # the OOM snapshot counts as training time
    snap = trial.snapshot()
    while True:
        if trial.on_cuda:
            torch.cuda.reset_peak_memory_stats(trial.device)
        try:
            train_loss, lr = trial.train_epoch(epoch)
            break
        except torch.OutOfMemoryError:
            smallest = trial.min_micro_batch()
            if trial.micro_batch <= smallest:
                raise _OutOfMemory(
                    f"out of memory in epoch {epoch + 1} even with micro-batch {trial.micro_batch}"
                ) from None
            old = trial.micro_batch
            trial.micro_batch = max(smallest, old // 2)
            notes.append(f"out of memory at micro-batch {old}; retried with {trial.micro_batch}")
            trial.restore(snap)
            if trial.on_cuda:
                torch.cuda.empty_cache()
    if trial.on_cuda:
        torch.cuda.synchronize(trial.device)
    train_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    metrics = trial.evaluate(trial.data.val)
    eval_seconds = time.perf_counter() - t1
    trial.schedule.observe(epoch, metrics["top1"])
    accumulation = math.ceil(min(trial.config.batch_size, len(trial.data.train.labels)) / trial.micro_batch)
    return EpochRecord(
        epoch=epoch + 1,
        score=metrics["top1"],
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        train_loss=train_loss,
        val_loss=metrics["loss"],
        top5=metrics["top5"],
        val_metrics={m: metrics[m] for m in METRICS},
        lr=lr,
        peak_memory_mb=_peak_memory_mb(trial.device),
        batch_size=trial.micro_batch,
        grad_accumulation=accumulation,
        note="; ".join(notes) or None,
    )


def evaluate_checkpoint(
    workdir: str | Path,
    data: Any,
    *,
    split: str = "test",
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Top-1, top-5, balanced accuracy, macro F1 and loss of the trial checkpointed in
    ``workdir`` on ``data``'s ``split``.

    The trial's settings (config, max_epochs, seed, pretrained) come from its
    checkpoint; ``data`` must be the data it trained on. The model is built
    without pretrained weights (all weights come from the checkpoint).
    """
    workdir = Path(workdir)
    state = read_state(workdir)
    target = getattr(data, split, None)
    if target is None or len(target.labels) == 0:
        raise TrainerError(f"the dataset has no {split} split to evaluate on")
    with torch.random.fork_rng(devices=[]):
        trial = Trial(
            Config.from_dict(state["config"]), data, int(state["max_epochs"]),
            seed=int(state["seed"]), device=device, pretrained=bool(state["pretrained"]),
            regularizers=False, load_weights=False,
        )
        trial.load(workdir, model_only=True)
        return trial.evaluate(target)
