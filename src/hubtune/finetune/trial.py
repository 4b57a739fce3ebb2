"""One trial's model, optimizer, schedule and regularizers: what trains an epoch.

:class:`Trial` is built from a :class:`~hubtune.space.config.Config`; the
engine (:mod:`hubtune.finetune.engine`) restores it from a checkpoint, trains it
epoch by epoch and saves it again.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hubtune.core.records import EpochRecord
from hubtune.finetune.batches import BatchPipeline
from hubtune.finetune.checkpoint import (
    flatten_optimizer_state,
    load_checkpoint,
    save_checkpoint,
    unflatten_optimizer_state,
)
from hubtune.finetune.metrics import confusion_scores
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
from hubtune.finetune.runtime import (
    EVAL_BATCH_FACTOR,
    TrainerError,
    _check_data,
    _clone_state,
    _Diverged,
    _seed_all,
    amp_dtype,
    epoch_seed,
)
from hubtune.finetune.schedule import LRSchedule
from hubtune.finetune.stochnorm import apply_stochnorm
from hubtune.finetune.trialdir import check_identity, trial_identity
from hubtune.space.config import Config, linear_probing_epochs


class Trial:
    """Live training state of one trial (model, optimizer, schedule, regularizers).

    Built by :func:`advance`; exposed for tests and tools that want to inspect
    what a config resolved to (param groups, frozen parameters, schedule,
    augmentation pipeline, loss terms).
    """

    on_batch: Callable[[int, int, int], None] | None = None
    # Called after every training (and Co-Tuning preparation) batch; the engine's
    # deadline check raises from it once the run's deadline has passed.
    check_deadline: Callable[..., None] | None = None
    """Called after each training batch with (epoch (0-based), batches done, batches in the
    epoch); ``None`` (default): no per-batch callback."""

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
        self.hub = self._create_model(pretrained if load_weights is None else load_weights,
                                      weights_path if load_weights is not False else None)
        model: nn.Module = self.hub.model
        self.plan = plan_parameters(model, self.hub.layer_groups(), self.hub.head_param_names, config)
        self._build_references(model, regularizers)  # of the starting (pretrained) model
        if config.stoch_norm:
            apply_stochnorm(model)
        # channels-last is faster for convolutions on CUDA and on CPU (oneDNN):
        # MobileNetV2 at 64 px trains ~1.6x faster on one CPU thread.
        model.to(self.device, memory_format=torch.channels_last)
        if self.delta_reference is not None:
            self.delta_reference.to(memory_format=torch.channels_last)
        self.model = model
        self.optimizer = build_optimizer(self._param_groups(), config)
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

    def _create_model(self, pretrained: bool, weights_path: str | Path | None) -> Any:
        """The hub model of the config with a fresh head of ``num_classes`` outputs."""
        from hubtune.hub import create_model

        # Model creation draws random head weights: seed it so that a resumed
        # trial rebuilds the same references (L2-SP, DELTA) as a fresh one.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return create_model(
                self.config.model,
                num_classes=self.num_classes,
                pretrained=pretrained,
                drop_rate=self.config.drop,
                weights_path=weights_path,
            )

    def _build_references(self, model: nn.Module, regularizers: bool) -> None:
        """The regularizers' references: L2-SP's starting weights, DELTA's frozen copy of
        the model and Co-Tuning's pretrained ImageNet head (each only when its weight > 0)."""
        config = self.config
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

    def _param_groups(self) -> list[dict[str, Any]]:
        """The optimizer's parameter groups (layer-wise rates; Co-Tuning's head in its own)."""
        groups = build_param_groups(self.model, self.plan, self.config)
        if self.source_head is not None:
            groups.append(
                {
                    "params": list(self.source_head.parameters()),
                    "names": [f"source_head.{n}" for n, _ in self.source_head.named_parameters()],
                    "weight_decay": self.config.weight_decay,
                    "lr_scale": 1.0,
                    "layer_group": -1,
                }
            )
        return groups

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
                self.model, self.source_head, batches, self.num_classes,
                after_batch=self.check_deadline,
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
        total = max(1, int(train.labels.shape[0]) // self.config.batch_size)  # as epoch_order
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
            if self.on_batch is not None:  # progress display (hubtune run --log live)
                self.on_batch(epoch, n_batches, total)
            if self.check_deadline is not None:
                self.check_deadline(n_batches, total)
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
