"""Finetuning regularizers of the Quick-Tune space: L2-SP, DELTA, BSS and Co-Tuning.

Each returns a scalar loss term that the engine adds to the task loss, already
multiplied by its config coefficient. All of them are computed from one forward
pass of the model being finetuned (see :func:`forward_parts`); DELTA also runs
a frozen copy of the pretrained model.

* L2-SP (Li et al., 2018): ``sp_reg * sum ||w - w0||^2`` over the pretrained
  (non-head) parameters that train.
* DELTA (Li et al., 2019): ``delta_reg * sum_j 0.5 * ||F_j(x) - F0_j(x)||^2 / B``
  over the intermediate feature maps ``F_j`` of the model and ``F0_j`` of the
  frozen pretrained model (timm ``forward_intermediates``); uniform channel
  weights (the attention-free variant).
* BSS (Chen et al., 2019): ``bss_reg * sum_{i<k} sigma_{-i}^2``, the squares of
  the ``k = 1`` smallest singular values of the batch of pooled features.
* Co-Tuning (You et al., 2020): a source head initialised from the pretrained
  1000-class ImageNet classifier is trained on the pooled features towards
  the soft source labels ``p(y_s | y_t)``; that relationship is learned from the
  training data before finetuning: the mean pretrained source-class
  distribution of the training images of each target class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

BSS_K = 1
"""Number of smallest singular values BSS penalises (the paper's default)."""


@dataclass
class ForwardParts:
    """What one forward pass produced: logits, pooled features, feature maps."""

    logits: torch.Tensor
    pooled: torch.Tensor
    maps: list[torch.Tensor] | None = None


def forward_parts(model: nn.Module, x: torch.Tensor, *, want_maps: bool = False) -> ForwardParts:
    """Forward ``x`` through a timm model once, keeping pooled features (and feature maps).

    The logits equal ``model(x)``: timm models split into ``forward_features``,
    ``forward_head(pre_logits=True)`` (pooling, dropout) and the classifier.
    """
    if want_maps:
        final, maps = model.forward_intermediates(x)
    else:
        final, maps = model.forward_features(x), None
    pooled = model.forward_head(final, pre_logits=True)
    logits = model.get_classifier()(pooled)
    return ForwardParts(logits=logits, pooled=pooled, maps=maps)


def sp_loss(model: nn.Module, reference: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum of squared distances of the trainable parameters in ``reference`` to their start."""
    total = None
    for name, p in model.named_parameters():
        if p.requires_grad and name in reference:
            term = (p - reference[name]).pow(2).sum()
            total = term if total is None else total + term
    if total is None:
        return torch.zeros((), device=next(model.parameters()).device)
    return total


def delta_loss(maps: list[torch.Tensor], reference_maps: list[torch.Tensor]) -> torch.Tensor:
    """DELTA feature-map distance (per sample, summed over layers)."""
    if len(maps) != len(reference_maps):
        raise ValueError("DELTA needs the same feature maps from both models")
    batch = maps[0].shape[0]
    total = maps[0].new_zeros(())
    for fm, ref in zip(maps, reference_maps, strict=True):
        total = total + 0.5 * (fm.float() - ref.float()).pow(2).sum() / batch
    return total


def bss_loss(pooled: torch.Tensor, k: int = BSS_K) -> torch.Tensor:
    """Sum of the squared ``k`` smallest singular values of the feature batch."""
    feats = pooled.float().flatten(1)
    sv = torch.linalg.svdvals(feats)
    k = min(k, sv.numel())
    return sv[-k:].pow(2).sum()


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a probability distribution per row."""
    return torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


@torch.no_grad()
def learn_relationship(
    backbone: nn.Module,
    source_head: nn.Module,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    after_batch: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Co-Tuning's ``p(y_s | y_t)``: mean source distribution per target class.

    ``backbone`` is the pretrained model (pooled features via timm's
    ``forward_head(pre_logits=True)``), ``source_head`` its ImageNet classifier,
    ``batches`` the (normalised images, labels) of the training set. Classes
    without images get the mean distribution over all images. ``after_batch`` is
    called after each batch (the trainer's deadline check may raise from it).
    """
    was_training = backbone.training
    backbone.eval()
    sums: torch.Tensor | None = None
    counts = torch.zeros(num_classes)
    for x, y in batches:
        pooled = backbone.forward_head(backbone.forward_features(x), pre_logits=True)
        probs = F.softmax(source_head(pooled).float(), dim=-1).cpu()
        if sums is None:
            sums = torch.zeros(num_classes, probs.shape[1])
        sums.index_add_(0, y.cpu(), probs)
        counts += torch.bincount(y.cpu(), minlength=num_classes).float()
        if after_batch is not None:
            after_batch()
    backbone.train(was_training)
    if sums is None:
        raise ValueError("Co-Tuning needs training images to learn the label relationship")
    overall = sums.sum(0) / counts.sum()
    rel = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], overall)
    return rel
