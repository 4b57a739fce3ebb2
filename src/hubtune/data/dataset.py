"""In-memory image datasets: decoded once, resized once, ready for training."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from hubtune.core.metafeatures import DatasetMetaFeatures
from hubtune.data.errors import DataError, SkippedFile


@dataclass(frozen=True)
class ImageSplit:
    """One split of a dataset.

    ``images`` is a ``torch.uint8`` tensor of shape ``[N, 3, S, S]`` (RGB, not
    normalised) and ``labels`` a ``torch.int64`` tensor of shape ``[N]`` with
    class indices into :attr:`ImageDataset.classes`.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        img, lab = self.images, self.labels
        if img.dtype != torch.uint8 or img.dim() != 4 or img.shape[1] != 3:
            raise DataError(
                f"ImageSplit.images must be a uint8 tensor [N, 3, S, S], got {img.dtype} "
                f"{tuple(img.shape)}"
            )
        if img.shape[2] != img.shape[3]:
            raise DataError(f"ImageSplit.images must be square, got {tuple(img.shape)}")
        if lab.dtype != torch.int64 or lab.dim() != 1 or lab.shape[0] != img.shape[0]:
            raise DataError(
                f"ImageSplit.labels must be an int64 tensor [{img.shape[0]}], got {lab.dtype} "
                f"{tuple(lab.shape)}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_size(self) -> int:
        """Side length S of the (square) images."""
        return int(self.images.shape[-1])

    def class_counts(self, num_classes: int) -> list[int]:
        """Number of images of each class index ``0..num_classes-1``."""
        return torch.bincount(self.labels, minlength=num_classes).tolist()


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image-classification dataset split into train / val / (test).

    ``meta_features`` describe the dataset as it was on disk: ``n_images`` is
    the number of training images, ``mean_resolution`` and ``channels`` are
    taken from the original (un-resized) images. ``skipped`` lists image files
    that could not be used (corrupt, unreadable, too large). ``fingerprint``
    is a stable id of the exact images, labels, splits and image size (equal
    fingerprints mean equal tensors); it is also the on-disk cache key.
    """

    name: str
    classes: list[str]
    train: ImageSplit
    val: ImageSplit
    test: ImageSplit | None
    meta_features: DatasetMetaFeatures
    skipped: list[SkippedFile] = field(default_factory=list)
    fingerprint: str = ""

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def image_size(self) -> int:
        """Side length S of the (square) images of every split."""
        return self.train.image_size

    def splits(self) -> dict[str, ImageSplit]:
        """The present splits by name (``train``, ``val`` and, if present, ``test``)."""
        out = {"train": self.train, "val": self.val}
        if self.test is not None:
            out["test"] = self.test
        return out

    def summary(self) -> str:
        """One line for logs and the CLI."""
        sizes = ", ".join(f"{k} {len(v)}" for k, v in self.splits().items())
        extra = f", skipped {len(self.skipped)} files" if self.skipped else ""
        return (
            f"{self.name}: {self.num_classes} classes, {sizes} images at "
            f"{self.image_size}x{self.image_size}{extra}"
        )
