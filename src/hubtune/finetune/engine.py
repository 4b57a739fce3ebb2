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

import contextlib
import copy
import hashlib
import json
import math
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hubtune.core.records import EpochRecord, StepStatus
from hubtune.finetune.batches import BatchPipeline
from hubtune.finetune.checkpoint import (
    flatten_optimizer_state,
    has_checkpoint,
    load_checkpoint,
    read_state,
    save_checkpoint,
    unflatten_optimizer_state,
)
from hubtune.finetune.metrics import METRICS, confusion_scores
from hubtune.finetune.params import (
    build_optimizer,
    build_param_groups,
    plan_parameters,
    set_learning_rate,
    set_train_mode,
    set_trainable,
)
from hubtune.finetune.regularizers import (
    bss_loss,
    delta_loss,
    forward_parts,
    learn_relationship,
    soft_cross_entropy,
    sp_loss,
)
from hubtune.finetune.schedule import LRSchedule
from hubtune.finetune.stochnorm import apply_stochnorm
from hubtune.space.config import Config, linear_probing_epochs

RECORDS_FILE = "records.jsonl"
DIVERGED_FILE = "diverged.json"
LOCK_FILE = ".lock"
EVAL_BATCH_FACTOR = 2
"""Evaluation batches are this many times the training micro-batch (no gradients)."""


class TrainerError(ValueError):
    """Invalid request to the trainer (bad epochs, config mismatch, unusable data)."""


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


class _Diverged(Exception):
    pass


# ------------------------------------------------------------------ helpers
def epoch_seed(seed: int, epoch: int) -> int:
    """The seed all random draws of epoch ``epoch`` of a trial with ``seed`` derive from."""
    digest = hashlib.sha256(f"hubtune-epoch:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _seed_all(s: int) -> torch.Generator:
    torch.manual_seed(s)
    np.random.seed(s)
    random.seed(s)
    return torch.Generator().manual_seed(s)


def data_fingerprint(data: Any) -> str:
    """A stable id of the data a trial trains on (the dataset's own, or a hash)."""
    fp = getattr(data, "fingerprint", "")
    if fp:
        return str(fp)
    h = hashlib.sha1()
    for split in (data.train, data.val):
        h.update(str(tuple(split.images.shape)).encode())
        h.update(split.labels.numpy().tobytes())
        h.update(split.images.reshape(-1)[:: max(1, split.images.numel() // 65536)].numpy().tobytes())
    return h.hexdigest()[:16]


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def amp_dtype(
    config: Config, device: torch.device, bf16_supported: bool | None = None
) -> torch.dtype | None:
    """Autocast dtype for ``config.amp`` on ``device``: bf16 (fp16 on older GPUs) on CUDA, else None.

    Mixed precision is a GPU feature here; on CPU training stays float32.
    """
    if not config.amp or device.type != "cuda":
        return None
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_bf16_supported()
    return torch.bfloat16 if bf16_supported else torch.float16


def _check_data(data: Any) -> None:
    for name in ("train", "val"):
        split = getattr(data, name, None)
        if split is None or len(split.labels) == 0:
            raise TrainerError(f"the dataset has no {name} images")
    if int(data.num_classes) < 2:
        raise TrainerError(f"need at least 2 classes, got {data.num_classes}")


def _clone_state(obj: Any) -> Any:
    """Deep CPU copy of a (nested) state dict."""
    if torch.is_tensor(obj):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _clone_state(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clone_state(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_clone_state(v) for v in obj)
    return copy.deepcopy(obj)


# -------------------------------------------------------------------- trial
class Trial:
    """Live training state of one trial (model, optimizer, schedule, regularizers).

    Built by :func:`advance`; exposed for tests and tools that want to inspect
    what a config resolved to (param groups, frozen parameters, schedule,
    augmentation pipeline, loss terms).
    """

    def __init__(
        self,
        config: Config,
        data: Any,
        max_epochs: int,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        pretrained: bool = True,
        weights_path: str | Path | None = None,
        regularizers: bool = True,
        load_weights: bool | None = None,
    ) -> None:
        from hubtune.hub import create_model

        _check_data(data)
        self.config = config
        self.data = data
        self.max_epochs = max_epochs
        self.seed = seed
        self.pretrained = pretrained
        self.device = torch.device(device)
        self.on_cuda = self.device.type == "cuda"
        self.num_classes = int(data.num_classes)
        self.image_size = int(data.train.images.shape[-1])

        # Model creation draws random head weights: seed it so that a resumed
        # trial rebuilds the same references (L2-SP, DELTA) as a fresh one.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.hub = create_model(
                config.model,
                num_classes=self.num_classes,
                pretrained=pretrained if load_weights is None else load_weights,
                drop_rate=config.drop,
                weights_path=weights_path if load_weights is not False else None,
            )
        model: nn.Module = self.hub.model
        self.plan = plan_parameters(model, self.hub.layer_groups(), self.hub.head_param_names, config)

        # References to the starting (pretrained) model.
        self.sp_reference: dict[str, torch.Tensor] = {}
        if config.sp_reg > 0 and regularizers:
            self.sp_reference = {
                n: p.detach().clone().to(self.device)
                for n, p in model.named_parameters()
                if n not in self.plan.head
            }
        self.delta_reference: nn.Module | None = None
        if config.delta_reg > 0 and regularizers:
            ref = copy.deepcopy(model).to(self.device).eval()
            for p in ref.parameters():
                p.requires_grad_(False)
            self.delta_reference = ref
        self.source_head: nn.Module | None = None
        self.relationship: torch.Tensor | None = None
        if config.cotuning_reg > 0 and regularizers:
            head = self.hub.pretrained_classifier
            if head is None:
                raise TrainerError(
                    f"cotuning_reg={config.cotuning_reg} needs a pretrained ImageNet classifier, "
                    f"and model {config.model!r} has none"
                )
            self.source_head = copy.deepcopy(head).to(self.device)
            for p in self.source_head.parameters():
                p.requires_grad_(True)

        if config.stoch_norm:
            apply_stochnorm(model)
        # channels-last is faster for convolutions on CUDA and on CPU (oneDNN):
        # MobileNetV2 at 64 px trains ~1.6x faster on one CPU thread.
        model.to(self.device, memory_format=torch.channels_last)
        if self.delta_reference is not None:
            self.delta_reference.to(memory_format=torch.channels_last)
        self.model = model

        groups = build_param_groups(model, self.plan, config)
        if self.source_head is not None:
            groups.append(
                {
                    "params": list(self.source_head.parameters()),
                    "names": [f"source_head.{n}" for n, _ in self.source_head.named_parameters()],
                    "weight_decay": config.weight_decay,
                    "lr_scale": 1.0,
                    "layer_group": -1,
                }
            )
        self.optimizer = build_optimizer(groups, config)
        self.schedule = LRSchedule(config, max_epochs)
        self.lp_epochs = linear_probing_epochs(max_epochs) if config.linear_probing else 0

        self.amp_dtype = amp_dtype(config, self.device)
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.amp_dtype == torch.float16
        ) if self.on_cuda else None

        self.set_normalisation(self.hub.data_config["mean"], self.hub.data_config["std"])
        self.micro_batch = config.batch_size
        self.epoch = 0
        self.records: list[EpochRecord] = []

    def min_micro_batch(self) -> int:
        """Smallest micro-batch an OOM retry may use: 2 for models with BatchNorm
        (batch statistics of one image are degenerate), else 1."""
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules())
        return min(2 if has_bn else 1, self.config.batch_size)

    def set_normalisation(self, mean: Any, std: Any) -> None:
        """Normalise inputs with ``mean``/``std`` (those of the pretrained weights)."""
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(v) for v in std)
        self.pipeline = BatchPipeline(
            self.config, self.mean, self.std, self.num_classes, self.image_size, self.device,
            channels_last=True,
        )

    # ----------------------------------------------------------- phases
    def in_linear_probing(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (0-based) is in the head-only phase."""
        return epoch < self.lp_epochs

    def trainable_names(self, epoch: int) -> set[str]:
        """Model parameters that train in epoch ``epoch``."""
        return self.plan.trainable(self.in_linear_probing(epoch))

    def prepare_cotuning(self) -> None:
        """Learn Co-Tuning's label relationship from the training set (fresh trials)."""
        if self.source_head is None or self.relationship is not None:
            return
        bs = max(self.micro_batch * EVAL_BATCH_FACTOR, 1)
        batches = list(
            self.pipeline.eval_batches(self.data.train.images, self.data.train.labels, bs)
        )
        with self._autocast():
            self.relationship = learn_relationship(
                self.model, self.source_head, batches, self.num_classes
            ).to(self.device)

    def _autocast(self):
        if self.amp_dtype is None:
            return torch.autocast("cpu", enabled=False)
        return torch.autocast("cuda", dtype=self.amp_dtype)

    # ------------------------------------------------------------ losses
    def loss_terms(self, x: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Task loss and every active regularizer term (already weighted) for one batch."""
        c = self.config
        parts = forward_parts(self.model, x, want_maps=c.delta_reg > 0)
        terms: dict[str, torch.Tensor] = {}
        if target.dim() == 2:
            terms["task"] = soft_cross_entropy(parts.logits, target)
        else:
            terms["task"] = F.cross_entropy(parts.logits.float(), target, label_smoothing=c.smoothing)
        if c.sp_reg > 0:
            terms["sp"] = c.sp_reg * sp_loss(self.model, self.sp_reference)
        if c.delta_reg > 0:
            assert self.delta_reference is not None and parts.maps is not None
            with torch.no_grad():
                _, ref_maps = self.delta_reference.forward_intermediates(x)
            terms["delta"] = c.delta_reg * delta_loss(parts.maps, ref_maps)
        if c.bss_reg > 0:
            terms["bss"] = c.bss_reg * bss_loss(parts.pooled)
        if c.cotuning_reg > 0:
            assert self.source_head is not None and self.relationship is not None
            source_target = self.relationship[labels]
            terms["cotuning"] = c.cotuning_reg * soft_cross_entropy(
                self.source_head(parts.pooled), source_target
            )
        return terms

    # ----------------------------------------------------------- training
    def train_epoch(self, epoch: int, *, check_every: int | None = None) -> tuple[float, float]:
        """Train epoch ``epoch`` (0-based); returns (mean task loss, lr).

        Raises :class:`_Diverged` on a non-finite loss and
        ``torch.OutOfMemoryError`` as it comes (the caller retries).
        """
        generator = _seed_all(epoch_seed(self.seed, epoch))
        trainable = self.trainable_names(epoch)
        set_trainable(self.model, trainable)
        set_train_mode(self.model, trainable)
        if self.source_head is not None:
            self.source_head.train()
        lr = self.schedule.lr_at(epoch)
        set_learning_rate(self.optimizer, lr)
        clip = self.config.clip_grad
        check_every = check_every or (25 if self.on_cuda else 1)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        n_batches = 0
        train = self.data.train
        for step, batch in enumerate(self.pipeline.train_batches(train.images, train.labels, generator)):
            self.optimizer.zero_grad(set_to_none=True)
            n = batch.x.shape[0]
            for start in range(0, n, self.micro_batch):
                sl = slice(start, start + self.micro_batch)
                frac = (min(n, start + self.micro_batch) - start) / n
                with self._autocast():
                    terms = self.loss_terms(batch.x[sl], batch.target[sl], batch.labels[sl])
                loss = sum(terms.values()) * frac
                loss_sum += terms["task"].detach().double() * frac
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                else:
                    loss.backward()
            if self.scaler is not None:
                if clip is not None:
                    self.scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_(params, clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                if clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, clip)
                self.optimizer.step()
            n_batches += 1
            if (step + 1) % check_every == 0 and not math.isfinite(float(loss_sum)):
                raise _Diverged(f"non-finite training loss in epoch {epoch + 1}, batch {step + 1}")
        mean = float(loss_sum) / max(n_batches, 1)
        if not math.isfinite(mean):
            raise _Diverged(f"non-finite training loss in epoch {epoch + 1}")
        return mean, lr

    @torch.no_grad()
    def evaluate(self, split: Any) -> dict[str, float]:
        """Top-1, top-5, balanced accuracy, macro F1 (fractions) and mean cross-entropy
        of the model on ``split`` (the last two from the confusion counts,
        :mod:`hubtune.finetune.metrics`)."""
        self.model.eval()
        bs = max(self.micro_batch * EVAL_BATCH_FACTOR, 1)
        while True:
            try:
                return self._evaluate(split, bs)
            except torch.OutOfMemoryError:
                if bs == 1:
                    raise
                bs = max(1, bs // 2)
                if self.on_cuda:
                    torch.cuda.empty_cache()

    def _evaluate(self, split: Any, bs: int) -> dict[str, float]:
        k = min(5, self.num_classes)
        correct1 = torch.zeros((), device=self.device, dtype=torch.float64)
        correctk = torch.zeros_like(correct1)
        loss = torch.zeros_like(correct1)
        c = self.num_classes
        confusion = torch.zeros(c * c, device=self.device, dtype=torch.int64)
        for x, y in self.pipeline.eval_batches(split.images, split.labels, bs):
            with self._autocast():
                logits = self.model(x)
            logits = logits.float()
            loss += F.cross_entropy(logits, y, reduction="sum").double()
            topk = logits.topk(k, dim=1).indices
            hit = topk == y[:, None]
            correct1 += hit[:, 0].sum()
            correctk += hit.any(dim=1).sum()
            confusion += torch.bincount(y * c + topk[:, 0], minlength=c * c)
        n = max(int(split.labels.shape[0]), 1)
        scores = confusion_scores(confusion.view(c, c).cpu().numpy())
        return {
            "top1": float(correct1) / n,
            "top5": float(correctk) / n,
            "loss": float(loss) / n,
            "balanced_accuracy": scores["balanced_accuracy"],
            "macro_f1": scores["macro_f1"],
        }

    # --------------------------------------------------------- snapshots
    def snapshot(self) -> dict[str, Any]:
        """In-memory copy of everything an epoch changes (for an OOM retry)."""
        return {
            "model": _clone_state(self.model.state_dict()),
            "optimizer": _clone_state(self.optimizer.state_dict()),
            "source_head": _clone_state(self.source_head.state_dict()) if self.source_head else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "schedule": self.schedule.state_dict(),
        }

    def restore(self, snap: dict[str, Any]) -> None:
        """Return to a :meth:`snapshot`."""
        self.model.load_state_dict(snap["model"])
        self.optimizer.load_state_dict(snap["optimizer"])
        if self.source_head is not None:
            self.source_head.load_state_dict(snap["source_head"])
        if self.scaler is not None and snap["scaler"]:
            self.scaler.load_state_dict(snap["scaler"])
        self.schedule.load_state_dict(snap["schedule"])

    # -------------------------------------------------------- checkpoint
    def identity(self) -> dict[str, Any]:
        """What must match for a checkpoint to belong to this trial."""
        return trial_identity(self.config, self.max_epochs, self.seed, self.pretrained, self.data)

    def save(self, workdir: Path) -> float:
        """Atomically checkpoint the trial to ``workdir``; returns seconds taken."""
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        opt_tensors, opt_rest = flatten_optimizer_state(self.optimizer.state_dict())
        tensors.update(opt_tensors)
        if self.source_head is not None:
            tensors.update({f"source_head.{k}": v for k, v in self.source_head.state_dict().items()})
        if self.relationship is not None:
            tensors["cotuning.relationship"] = self.relationship
        state = dict(
            self.identity(),
            epoch=self.epoch,
            micro_batch=self.micro_batch,
            normalisation={"mean": list(self.mean), "std": list(self.std)},
            optimizer=opt_rest,
            schedule=self.schedule.state_dict(),
            scaler=self.scaler.state_dict() if self.scaler is not None else None,
            records=[r.to_dict() for r in self.records],
        )
        return save_checkpoint(workdir, tensors, state)

    def load(self, workdir: Path, *, model_only: bool = False) -> None:
        """Restore the trial (or, with ``model_only``, just its weights) from ``workdir``."""
        tensors, state = load_checkpoint(workdir, device=self.device)
        self.check_identity(state, workdir)
        model_sd = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        self.model.load_state_dict(model_sd)
        self.epoch = int(state["epoch"])
        norm = state["normalisation"]
        if tuple(norm["mean"]) != self.mean or tuple(norm["std"]) != self.std:
            self.set_normalisation(norm["mean"], norm["std"])
        if model_only:
            return
        self.optimizer.load_state_dict(unflatten_optimizer_state(tensors, state["optimizer"]))
        if self.source_head is not None:
            self.source_head.load_state_dict(
                {k[len("source_head.") :]: v for k, v in tensors.items() if k.startswith("source_head.")}
            )
            self.relationship = tensors["cotuning.relationship"]
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.schedule.load_state_dict(state["schedule"])
        self.epoch = int(state["epoch"])
        self.micro_batch = int(state["micro_batch"])
        self.records = [EpochRecord.from_dict(r) for r in state["records"]]

    def check_identity(self, state: dict[str, Any], workdir: Path) -> None:
        """Raise :class:`TrainerError` if ``state`` belongs to a different trial."""
        check_identity(state, self.identity(), workdir)


def trial_identity(config: Config, max_epochs: int, seed: int, pretrained: bool, data: Any) -> dict[str, Any]:
    """The settings a trial's checkpoint records and every later step must repeat."""
    return {
        "config": config.to_dict(),
        "max_epochs": max_epochs,
        "seed": seed,
        "pretrained": pretrained,
        "data": data_fingerprint(data),
    }


def check_identity(state: dict[str, Any], mine: dict[str, Any], workdir: Path) -> None:
    """Raise :class:`TrainerError` unless checkpoint ``state`` has the settings ``mine``."""
    for key, value in mine.items():
        theirs = state.get(key)
        if key == "config":
            theirs = Config.from_dict(theirs).to_dict() if theirs else None
        if theirs != value:
            what = {
                "config": "a different configuration",
                "max_epochs": f"max_epochs={theirs}, not {value}",
                "seed": f"seed={theirs}, not {value}",
                "pretrained": f"pretrained={theirs}, not {value}",
                "data": "different data",
            }[key]
            raise TrainerError(
                f"the checkpoint in {workdir} was trained with {what}; "
                f"a trial's settings cannot change between steps"
            )


# ------------------------------------------------------------------ records
def read_records(workdir: str | Path) -> list[EpochRecord]:
    """The records of every epoch a trial directory holds (from ``records.jsonl``)."""
    path = Path(workdir) / RECORDS_FILE
    if not path.exists():
        return []
    return [EpochRecord.from_dict(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def _sync_records_file(workdir: Path, records: list[EpochRecord]) -> None:
    """Make ``records.jsonl`` list exactly ``records`` (after a crash it may not)."""
    path = workdir / RECORDS_FILE
    text = "".join(json.dumps(r.to_dict()) + "\n" for r in records)
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _append_records(workdir: Path, records: list[EpochRecord]) -> None:
    with open(workdir / RECORDS_FILE, "a") as fh:
        for r in records:
            fh.write(json.dumps(r.to_dict()) + "\n")


# ------------------------------------------------------------------ advance
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
                return _advance(
                    config, to_epoch, data, workdir, max_epochs, seed, device,
                    pretrained, weights_path, on_epoch, start,
                )
        finally:
            torch.set_num_threads(old_threads)
            random.setstate(py_state)
            np.random.set_state(np_state)


@contextlib.contextmanager
def trial_lock(workdir: Path):
    """Hold an exclusive lock on a trial directory while training it.

    Two processes must never train one trial at once (their checkpoint writes
    would interleave): for example a Ray worker of a killed driver that is still
    finishing its epoch while the resumed run redoes the same step. The second
    one waits here until the first is done or dead (the kernel releases a dead
    process's lock). Advisory ``flock``; a no-op where ``fcntl`` is missing.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(workdir / LOCK_FILE, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read_diverged(workdir: Path) -> tuple[str, int] | None:
    """(reason, last good epoch) if the trial in ``workdir`` diverged earlier."""
    path = workdir / DIVERGED_FILE
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    return str(info.get("reason", "diverged")), int(info.get("last_good_epoch", 0))


def _advance(
    config: Config,
    to_epoch: int,
    data: Any,
    workdir: Path,
    max_epochs: int,
    seed: int,
    device: str | torch.device,
    pretrained: bool,
    weights_path: str | Path | None,
    on_epoch: Callable[[EpochRecord], None] | None,
    start: float,
) -> AdvanceResult:
    resuming = has_checkpoint(workdir)
    # A resumed trial gets its weights from the checkpoint; the pretrained ones
    # are only needed again as references (L2-SP, DELTA, Co-Tuning's head).
    needs_reference = config.sp_reg > 0 or config.delta_reg > 0 or config.cotuning_reg > 0
    trial = Trial(
        config, data, max_epochs, seed=seed, device=device, pretrained=pretrained,
        weights_path=weights_path, load_weights=pretrained and (needs_reference or not resuming),
    )
    if resuming:
        trial.load(workdir)
        _sync_records_file(workdir, trial.records)
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        _sync_records_file(workdir, [])
        trial.prepare_cotuning()
    restore_seconds = time.perf_counter() - start

    new: list[EpochRecord] = []
    status: StepStatus = "ok"
    reason: str | None = None
    while trial.epoch < to_epoch:
        epoch = trial.epoch
        try:
            record = _run_epoch(trial, epoch)
        except _Diverged as exc:
            status, reason = "diverged", str(exc)
            break
        except _OutOfMemory as exc:
            status, reason = "failed", str(exc)
            break
        if not new:
            record.checkpoint_seconds += restore_seconds
        new.append(record)
        trial.records.append(record)
        trial.epoch = epoch + 1
        if on_epoch is not None:
            on_epoch(record)

    if status == "diverged":
        _write_diverged(workdir, reason or "diverged", trial.epoch)
    if new:
        if status == "ok":
            save_seconds = trial.save(workdir)
            new[-1].checkpoint_seconds += save_seconds
        _append_records(workdir, new)
    return AdvanceResult(
        records=new, status=status, reason=reason, epoch=trial.epoch,
        seconds=time.perf_counter() - start,
    )


def _write_diverged(workdir: Path, reason: str, epoch: int) -> None:
    path = workdir / DIVERGED_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"reason": reason, "last_good_epoch": epoch}))
    tmp.replace(path)


class _OutOfMemory(Exception):
    pass


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
