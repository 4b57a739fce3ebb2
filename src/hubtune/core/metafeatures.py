"""Dataset meta-features: what the surrogate knows about a dataset before training on it."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DatasetMetaFeatures:
    """Size and shape of an image-classification dataset.

    ``n_images`` counts training images; ``mean_resolution`` is the mean of the
    images' (height + width) / 2 in pixels, as stored (before any resizing).
    """

    n_images: int
    n_classes: int
    mean_resolution: float
    channels: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetMetaFeatures:
        """Inverse of :meth:`to_dict`."""
        return cls(
            n_images=int(data["n_images"]),
            n_classes=int(data["n_classes"]),
            mean_resolution=float(data["mean_resolution"]),
            channels=int(data["channels"]),
        )

    def vector(self) -> list[float]:
        """Numeric features for learning (log-scaled sizes)."""
        return [
            math.log(max(self.n_images, 1)),
            math.log(max(self.n_classes, 1)),
            math.log(max(self.mean_resolution, 1.0)),
            float(self.channels),
        ]
