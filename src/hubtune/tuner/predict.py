"""Batched prediction with an exported model (``hubtune predict`` and ``SearchResult.predict``).

:func:`collect_images` turns the paths a user gives (files and directories) into
the image files to classify; :func:`predict_stream` classifies files or PIL images
with a :class:`~hubtune.tuner.export.Predictor` one batch at a time (memory stays
bounded by ``batch_size`` however many images there are) and reports unreadable
inputs instead of stopping at them.

Example::

    from hubtune.tuner.export import Predictor
    from hubtune.tuner.predict import collect_images, predict_stream
    files, missing = collect_images(["photos/"])
    for item in predict_stream(Predictor("runs/x/best"), files, batch_size=64, top_k=3):
        print(item)   # a Prediction, or an Unreadable naming the file and why
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from hubtune.data.images import ImageDecodeError, decode_image, is_image_file, pil_to_pixels

DEFAULT_BATCH_SIZE = 64


@dataclass
class Prediction:
    """One image's predicted class and probability (plus the top-k)."""

    path: str
    label: str
    probability: float
    top: list[tuple[str, float]]


@dataclass(frozen=True)
class Unreadable:
    """An input that could not be classified (missing, not an image, corrupt)."""

    path: str
    reason: str


def collect_images(paths: Iterable[str | Path]) -> tuple[list[Path], list[Unreadable]]:
    """Image files named by ``paths``: files as given, directories searched recursively.

    Files inside directories are kept only when their extension is an image
    extension, sorted by path; a file named explicitly is kept whatever its
    extension (decoding decides). Paths that do not exist come back as
    :class:`Unreadable`.
    """
    files: list[Path] = []
    missing: list[Unreadable] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = [Path(root) / name for root, _dirs, names in os.walk(p, followlinks=False)
                     for name in names if is_image_file(name)]
            files.extend(sorted(found))
        elif p.is_file():
            files.append(p)
        else:
            missing.append(Unreadable(str(p), "no such file or directory"))
    return files, missing


def _name(item: Any, index: int) -> str:
    return str(item) if isinstance(item, str | Path) else f"<image {index}>"


def _pixels(item: Any, size: int) -> np.ndarray:
    if isinstance(item, Image.Image):
        return pil_to_pixels(item, size)
    if isinstance(item, str | Path):
        return decode_image(item, size).pixels
    raise ImageDecodeError(f"not a path or PIL image ({type(item).__name__})")


def check_top_k(top_k: int, num_classes: int) -> None:
    """Raise ``ValueError`` unless ``1 <= top_k <= num_classes``."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= num_classes:
        raise ValueError(f"--top must be between 1 and {num_classes} (the model's classes), "
                         f"got {top_k!r}")


@torch.no_grad()
def classify_pixels(predictor: Any, arrays: Sequence[np.ndarray], names: Sequence[str],
                    top_k: int) -> list[Prediction]:
    """Classify decoded ``[S, S, 3]`` uint8 images in one forward pass."""
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255
    x = ((x - predictor.mean) / predictor.std).to(predictor.device)
    probs = predictor.model(x).float().softmax(-1).cpu()
    vals, idx = probs.topk(top_k, dim=1)
    out = []
    for name, v_row, i_row in zip(names, vals.tolist(), idx.tolist(), strict=True):
        top = [(predictor.labels[i], float(v)) for v, i in zip(v_row, i_row, strict=True)]
        out.append(Prediction(name, top[0][0], top[0][1], top))
    return out


def predict_stream(
    predictor: Any,
    items: Iterable[str | Path | Image.Image],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    top_k: int = 1,
) -> Iterator[Prediction | Unreadable]:
    """Classify ``items`` (paths or PIL images) ``batch_size`` at a time.

    Yields a :class:`Prediction` per classified item, in input order, and an
    :class:`Unreadable` per item that could not be decoded (after the
    predictions of the batch it came in). Raises ``ValueError`` for a bad
    ``batch_size`` or ``top_k``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"--batch-size must be a whole number >= 1, got {batch_size!r}")
    check_top_k(top_k, len(predictor.labels))
    size = int(predictor.pre["image_size"])
    arrays: list[np.ndarray] = []
    names: list[str] = []
    pending: list[Unreadable] = []  # kept in order: flushed with the batch they came in
    for i, item in enumerate(items):
        name = _name(item, i)
        try:
            arrays.append(_pixels(item, size))
            names.append(name)
        except ImageDecodeError as exc:
            pending.append(Unreadable(name, str(exc)))
        if len(arrays) >= batch_size:
            yield from classify_pixels(predictor, arrays, names, top_k)
            yield from pending
            arrays, names, pending = [], [], []
    if arrays:
        yield from classify_pixels(predictor, arrays, names, top_k)
    yield from pending
