"""From in-memory uint8 images to normalised training and evaluation batches.

Datasets live in memory as ``uint8 [N, 3, S, S]`` tensors already at the
training resolution, so a batch costs one index, an optional per-image
augmentation, one device copy and one fused normalisation: no worker
processes, no decoding, no resizing. There is no random-resized crop.

Training pipeline, in order (all randomness from the global RNGs, which the
engine reseeds from ``(seed, epoch)`` at the start of every epoch):

1. data order: a permutation from a ``torch.Generator`` seeded per epoch;
   incomplete last batches are dropped (as timm's training loader does) unless
   the split is smaller than one batch.
2. horizontal flip with probability 0.5, always on in training (the timm
   training transform behind the Quick-Tune meta-dataset does the same; it is
   cheap and label-preserving for natural images).
3. ``data_augmentation`` per image on uint8: ``trivial_augment``
   (torchvision ``TrivialAugmentWide``), ``random_augment`` (timm RandAugment
   ``rand-m{ra_magnitude}-n{ra_num_ops}``), ``auto_augment`` (timm AutoAugment
   policy ``v0`` or ``original``).
4. normalisation with the model's mean/std (on the device).
5. mixup/cutmix (timm ``Mixup`` with ``mixup``, ``cutmix``, ``mixup_prob`` and
   label smoothing ``smoothing``) when ``mixup_prob > 0`` and ``mixup`` or
   ``cutmix`` is > 0; the targets are then soft.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from hubtune.space.config import Config

FLIP_PROBABILITY = 0.5


def mixup_active(config: Config) -> bool:
    """Whether ``config`` mixes images (mixup or cutmix with a non-zero probability)."""
    return config.mixup_prob > 0 and (config.mixup > 0 or config.cutmix > 0)


def build_augmentation(
    config: Config, image_size: int, mean: Sequence[float]
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Per-image uint8 ``[3, S, S]`` -> uint8 augmentation named by ``config`` (None: none)."""
    kind = config.data_augmentation
    if kind == "none":
        return None
    if kind == "trivial_augment":
        from torchvision.transforms import v2

        return v2.TrivialAugmentWide()
    from timm.data.auto_augment import auto_augment_transform, rand_augment_transform

    hparams = {
        "translate_const": int(image_size * 0.45),
        "img_mean": tuple(round(255 * m) for m in mean),
    }
    if kind == "random_augment":
        pil_op = rand_augment_transform(f"rand-m{config.ra_magnitude}-n{config.ra_num_ops}", hparams)
    elif kind == "auto_augment":
        pil_op = auto_augment_transform(str(config.auto_augment), hparams)
    else:  # pragma: no cover - Config validates
        raise ValueError(f"unknown data_augmentation {kind!r}")
    _patch_posterize(pil_op)
    return _PilAdapter(pil_op)


def _posterize(img, bits_to_keep: int, **_: object):
    """timm's posterize, also for 0 bits (Pillow >= 11 rejects it; it means a black image)."""
    from PIL import Image, ImageOps

    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


def _patch_posterize(transform: object) -> None:
    """Point the Posterize ops of a timm AutoAugment/RandAugment at :func:`_posterize`.

    timm's ``v0`` policy and RandAugment map low magnitudes to 0 bits, which
    Pillow 11+ refuses with a ValueError; older Pillow returned a black image.
    """
    from timm.data import auto_augment as aa

    ops = list(getattr(transform, "ops", []))
    for sub in getattr(transform, "policy", []):
        ops.extend(sub)
    for op in ops:
        if getattr(op, "aug_fn", None) is aa.posterize:
            op.aug_fn = _posterize


class _PilAdapter:
    """Run a PIL-image transform (timm's augmentation policies) on a uint8 tensor."""

    def __init__(self, op: Callable) -> None:
        self.op = op

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        from PIL import Image

        arr = img.permute(1, 2, 0).numpy()
        out = self.op(Image.fromarray(arr))
        return torch.from_numpy(np.asarray(out, dtype=np.uint8).copy()).permute(2, 0, 1)

    def __repr__(self) -> str:
        return f"PilAdapter({self.op!r})"


@dataclass
class Batch:
    """One training batch: inputs, the loss targets, and the hard labels."""

    x: torch.Tensor
    target: torch.Tensor
    labels: torch.Tensor


class BatchPipeline:
    """Turns a split's uint8 images into normalised batches for one trial.

    Args:
        config: the trial's configuration.
        mean, std: the model's normalisation (per channel, in [0, 1] units).
        num_classes: number of target classes.
        device: where batches go.
        channels_last: convert inputs to channels-last memory format (CUDA).
    """

    def __init__(
        self,
        config: Config,
        mean: Sequence[float],
        std: Sequence[float],
        num_classes: int,
        image_size: int,
        device: torch.device,
        channels_last: bool = False,
    ) -> None:
        self.config = config
        self.num_classes = num_classes
        self.device = device
        self.channels_last = channels_last
        std_t = torch.tensor(std, dtype=torch.float32)
        mean_t = torch.tensor(mean, dtype=torch.float32)
        self._scale = (1.0 / (255.0 * std_t)).view(1, 3, 1, 1).to(device)
        self._shift = (-mean_t / std_t).view(1, 3, 1, 1).to(device)
        self.augmentation = build_augmentation(config, image_size, mean)
        self.mixup = None
        if mixup_active(config):
            from timm.data import Mixup

            self.mixup = Mixup(
                mixup_alpha=config.mixup,
                cutmix_alpha=config.cutmix,
                prob=config.mixup_prob,
                switch_prob=0.5,
                mode="batch",
                label_smoothing=config.smoothing,
                num_classes=num_classes,
            )

    # ------------------------------------------------------------ pieces
    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, 3, S, S]`` (any device) -> normalised float32 on the device."""
        x = images.to(self.device, non_blocking=True).float()
        x = torch.addcmul(self._shift, x, self._scale)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        """Flip and ``data_augmentation`` on a uint8 CPU batch (uses the global RNGs)."""
        flip = torch.rand(images.shape[0]) < FLIP_PROBABILITY
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
        if self.augmentation is not None:
            images = torch.stack([self.augmentation(img) for img in images])
        return images

    def epoch_order(self, n: int, generator: torch.Generator) -> list[torch.Tensor]:
        """Index batches of one training epoch."""
        perm = torch.randperm(n, generator=generator)
        bs = self.config.batch_size
        if n <= bs:
            return [perm]
        full = n // bs
        return [perm[i * bs : (i + 1) * bs] for i in range(full)]

    # ----------------------------------------------------------- batches
    def train_batches(
        self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> Iterator[Batch]:
        """One epoch of augmented, normalised (and mixed) training batches."""
        for idx in self.epoch_order(images.shape[0], generator):
            raw = self.augment(images[idx])
            y = labels[idx].to(self.device, non_blocking=True)
            x = self.normalise(raw)
            target = y
            if self.mixup is not None:
                if x.shape[0] % 2 == 0:
                    x, target = self.mixup(x, y)
                else:  # timm mixes a batch with its reverse; odd batches are left unmixed
                    from timm.data.mixup import mixup_target

                    target = mixup_target(y, self.num_classes, 1.0, self.config.smoothing)
            yield Batch(x=x, target=target, labels=y)

    def eval_batches(
        self, images: torch.Tensor, labels: torch.Tensor, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised, un-augmented batches in dataset order."""
        for start in range(0, images.shape[0], batch_size):
            x = self.normalise(images[start : start + batch_size])
            yield x, labels[start : start + batch_size].to(self.device, non_blocking=True)
