"""ImageNet-1k class names, for sanity checks of pretrained classifiers."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the standard index order.

    Example:
        >>> imagenet_class_names()[281]
        'tabby'
    """
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    names = tuple(_IMAGENET_CATEGORIES)
    if len(names) != 1000:  # pragma: no cover - guards a torchvision layout change
        raise RuntimeError(f"torchvision ships {len(names)} ImageNet class names, expected 1000")
    return names
