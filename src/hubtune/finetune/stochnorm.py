"""StochNorm: stochastic normalization for finetuning (Kou et al., NeurIPS 2020).

During training each channel of a BatchNorm layer is normalised, with
probability ``p``, by the *moving* (pretrained, then slowly updated) statistics
instead of the mini-batch statistics. This keeps the pretrained statistics in
play and regularises small-data finetuning. In evaluation mode the layer is an
ordinary BatchNorm.

:func:`apply_stochnorm` converts the BatchNorm layers of a model *in place* by
switching each layer's class to a StochNorm subclass of its own class, so
parameter and buffer names, the pretrained statistics and any activation fused
into the layer (timm's ``BatchNormAct2d``) are kept; checkpoints stay
interchangeable with the plain model.

Example:
    >>> import torch
    >>> bn = torch.nn.BatchNorm2d(4)
    >>> apply_stochnorm(bn) is bn and is_stochnorm(bn)
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

STOCHNORM_P = 0.5
"""Probability that a channel uses the moving statistics (the paper's default)."""

_STOCH_CLASSES: dict[type, type] = {}


def _stoch_forward(self: _BatchNorm, x: torch.Tensor) -> torch.Tensor:
    if not self.training or self.running_mean is None or self.running_var is None:
        # Evaluation (or untracked stats): the layer's own BatchNorm forward.
        return type(self).__mro__[1].forward(self, x)
    momentum = 0.0 if self.momentum is None else self.momentum
    if self.num_batches_tracked is not None:
        self.num_batches_tracked.add_(1)
    moving = F.batch_norm(
        x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
    )
    batch = F.batch_norm(
        x, self.running_mean, self.running_var, self.weight, self.bias, True, momentum, self.eps
    )
    shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
    p = getattr(self, "stochnorm_p", STOCHNORM_P)
    use_moving = torch.rand(shape, device=x.device) < p
    out = torch.where(use_moving, moving, batch)
    # Layers with a fused activation (timm BatchNormAct2d) apply it after the norm.
    if hasattr(self, "drop"):
        out = self.drop(out)
    if hasattr(self, "act"):
        out = self.act(out)
    return out


def _stoch_class(cls: type) -> type:
    if cls not in _STOCH_CLASSES:
        _STOCH_CLASSES[cls] = type(f"StochNorm{cls.__name__}", (cls,), {"forward": _stoch_forward})
    return _STOCH_CLASSES[cls]


def is_stochnorm(module: nn.Module) -> bool:
    """Whether ``module`` is a StochNorm layer made by :func:`apply_stochnorm`."""
    return type(module) in _STOCH_CLASSES.values()


def apply_stochnorm(model: nn.Module, p: float = STOCHNORM_P) -> nn.Module:
    """Turn every tracked BatchNorm layer of ``model`` into StochNorm (in place); returns it."""
    for module in model.modules():
        if isinstance(module, _BatchNorm) and module.track_running_stats and not is_stochnorm(module):
            module.__class__ = _stoch_class(type(module))
            module.stochnorm_p = p
    return model


def count_stochnorm(model: nn.Module) -> int:
    """Number of StochNorm layers in ``model``."""
    return sum(1 for m in model.modules() if is_stochnorm(m))
