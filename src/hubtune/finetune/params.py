"""Which parameters train, with which learning-rate scale and weight decay, and the optimizer.

The hub splits a model's parameters into layer groups ordered stem -> head
(head last). From those groups and a :class:`~hubtune.space.Config`:

* ``pct_to_freeze``: the first ``floor(pct_to_freeze * B)`` of the ``B``
  non-head groups are frozen for the whole run (``1.0``: only the head trains).
  BatchNorm layers whose parameters are all frozen also keep their running
  statistics (they run in eval mode), so a frozen layer is truly unchanged.
* ``linear_probing``: during the first
  :func:`~hubtune.space.config.linear_probing_epochs` epochs
  only the head trains (LP), then every non-frozen group (FT).
* ``layer_decay``: group ``i`` of ``G`` learns at ``lr * layer_decay**(G-1-i)``
  (timm/BEiT layer-wise decay; the head keeps the full rate).
* weight decay is not applied to biases, normalisation weights (any parameter
  with fewer than 2 dimensions) or the model's ``no_weight_decay()`` names,
  as in timm's optimizer factory.
* ``opt``: ``sgd`` is plain SGD (no momentum), ``momentum`` is SGD with
  ``config.momentum``, ``adam``/``adamw``/``adamp`` use ``config.opt_betas``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from hubtune.space.config import Config


class ParameterGroupError(ValueError):
    """The hub's layer groups do not match the model's parameters."""


def frozen_group_count(num_groups: int, pct_to_freeze: float) -> int:
    """How many of the ``num_groups - 1`` non-head groups ``pct_to_freeze`` freezes."""
    body = max(num_groups - 1, 0)
    return min(body, int(math.floor(pct_to_freeze * body + 1e-9)))


@dataclass
class ParameterPlan:
    """Resolved training plan of a model's parameters.

    Attributes:
        group_of: parameter name -> layer-group index.
        num_groups: number of layer groups (head last).
        frozen: names frozen for the whole run (``pct_to_freeze``).
        head: names in the head group.
    """

    group_of: dict[str, int]
    num_groups: int
    frozen: set[str]
    head: set[str]

    def trainable(self, linear_probing_phase: bool) -> set[str]:
        """Names that receive gradients in the given phase."""
        if linear_probing_phase:
            return set(self.head)
        return {n for n in self.group_of if n not in self.frozen}


def plan_parameters(
    model: nn.Module,
    layer_groups: Sequence[Sequence[str]],
    head_names: Iterable[str],
    config: Config,
) -> ParameterPlan:
    """Map every parameter to its layer group and decide what ``pct_to_freeze`` freezes."""
    names = [n for n, _ in model.named_parameters()]
    group_of: dict[str, int] = {}
    for i, group in enumerate(layer_groups):
        for n in group:
            group_of[n] = i
    missing = [n for n in names if n not in group_of]
    if missing:
        raise ParameterGroupError(
            f"{len(missing)} parameter(s) are in no layer group, e.g. {missing[:3]}"
        )
    head = set(head_names) & set(names)
    if not head:
        raise ParameterGroupError("the model has no head (classifier) parameters")
    num_groups = len(layer_groups)
    n_frozen = frozen_group_count(num_groups, config.pct_to_freeze)
    frozen = {n for n in names if group_of[n] < n_frozen and n not in head}
    return ParameterPlan(group_of=group_of, num_groups=num_groups, frozen=frozen, head=head)


def set_trainable(model: nn.Module, trainable: set[str]) -> None:
    """Set ``requires_grad`` to match ``trainable`` (everything else frozen)."""
    for n, p in model.named_parameters():
        p.requires_grad_(n in trainable)


def set_train_mode(model: nn.Module, trainable: set[str]) -> None:
    """``model.train()``, except BatchNorm layers whose parameters are all frozen stay in eval."""
    model.train()
    for name, module in model.named_modules():
        if isinstance(module, _BatchNorm):
            own = [f"{name}.{p}" if name else p for p, _ in module.named_parameters(recurse=False)]
            if own and not any(p in trainable for p in own):
                module.eval()


def _no_weight_decay_names(model: nn.Module) -> set[str]:
    fn = getattr(model, "no_weight_decay", None)
    return set(fn()) if callable(fn) else set()


def build_param_groups(model: nn.Module, plan: ParameterPlan, config: Config) -> list[dict]:
    """Optimizer parameter groups of the non-frozen parameters.

    Each group carries ``lr_scale`` (layer decay), ``weight_decay``, ``names``
    and ``layer_group`` (-1 when there is no layer decay: then there are just
    two groups, with and without weight decay); the engine sets
    ``lr = lr_scale * schedule_lr`` every epoch.
    """
    skip = _no_weight_decay_names(model)
    groups: dict[tuple[int, bool], dict] = {}
    for n, p in model.named_parameters():
        if n in plan.frozen:
            continue
        gi = plan.group_of[n]
        no_decay = p.ndim <= 1 or n in skip or n.endswith(".bias")
        scale = 1.0
        if config.layer_decay is not None:
            scale = config.layer_decay ** (plan.num_groups - 1 - gi)
        else:
            gi = -1  # one rate for all: two groups only (fewer, larger foreach kernels)
        key = (gi, no_decay)
        if key not in groups:
            groups[key] = {
                "params": [],
                "names": [],
                "weight_decay": 0.0 if no_decay else config.weight_decay,
                "lr_scale": scale,
                "layer_group": gi,
            }
        groups[key]["params"].append(p)
        groups[key]["names"].append(n)
    return [groups[k] for k in sorted(groups)]


def build_optimizer(param_groups: list[dict], config: Config) -> torch.optim.Optimizer:
    """The optimizer ``config.opt`` names, over ``param_groups``, at ``config.lr``."""
    lr = config.lr
    if config.opt == "sgd":
        return torch.optim.SGD(param_groups, lr=lr, momentum=0.0)
    if config.opt == "momentum":
        return torch.optim.SGD(param_groups, lr=lr, momentum=config.momentum or 0.0)
    betas = tuple(config.opt_betas or (0.9, 0.999))
    if config.opt == "adam":
        return torch.optim.Adam(param_groups, lr=lr, betas=betas)
    if config.opt == "adamw":
        return torch.optim.AdamW(param_groups, lr=lr, betas=betas)
    if config.opt == "adamp":
        from timm.optim import AdamP

        return AdamP(param_groups, lr=lr, betas=betas)
    raise ValueError(f"unknown optimizer {config.opt!r}")  # pragma: no cover - Config validates


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's rate to ``lr * lr_scale``."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
