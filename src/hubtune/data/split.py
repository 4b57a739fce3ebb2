"""Seeded, stratified splitting and subsetting of labelled items."""

from __future__ import annotations

import numpy as np


def allocate(counts: np.ndarray, total: int, *, min_one: bool = True) -> np.ndarray:
    """Split the integer ``total`` over classes in proportion to ``counts``.

    Largest-remainder rounding; each class gets at most its count and, with
    ``min_one``, at least one item whenever it has items and ``total`` allows
    (``total >= number of non-empty classes``).
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(min(total, counts.sum()))
    if total <= 0 or counts.sum() == 0:
        return np.zeros_like(counts)
    quota = counts * (total / counts.sum())
    alloc = np.floor(quota).astype(np.int64)
    floor = np.zeros_like(counts)
    if min_one and total >= int((counts > 0).sum()):
        floor = (counts > 0).astype(np.int64)
        alloc = np.maximum(alloc, floor)
    alloc = np.minimum(alloc, counts)
    while alloc.sum() < total:
        room = np.where(alloc < counts, quota - alloc, -np.inf)
        alloc[int(np.argmax(room))] += 1
    while alloc.sum() > total:
        excess = np.where(alloc > floor, alloc - quota, -np.inf)
        alloc[int(np.argmax(excess))] -= 1
    return alloc


def _class_indices(labels: np.ndarray, num_classes: int) -> list[np.ndarray]:
    return [np.flatnonzero(labels == c) for c in range(num_classes)]


def stratified_subset(
    labels: np.ndarray, n: int, num_classes: int, rng: np.random.Generator
) -> np.ndarray:
    """Sorted indices of a class-stratified random subset of ``n`` items."""
    per_class = _class_indices(np.asarray(labels), num_classes)
    alloc = allocate(np.array([len(ix) for ix in per_class]), n)
    chosen = [rng.choice(ix, size=int(k), replace=False) for ix, k in zip(per_class, alloc, strict=True) if k]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def stratified_partition(
    labels: np.ndarray,
    fractions: dict[str, float],
    num_classes: int,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Partition item indices into ``"train"`` plus the named ``fractions``.

    Each class is shuffled and cut separately: a part gets
    ``n_class * fraction`` (rounded half up) items of it, at least one where the class
    still leaves at least one item for training. Returns sorted index arrays
    (disjoint, covering every item).
    """
    labels = np.asarray(labels)
    parts: dict[str, list[np.ndarray]] = {"train": [], **{name: [] for name in fractions}}
    for ix in _class_indices(labels, num_classes):
        ix = rng.permutation(ix)
        n = len(ix)
        start = 0
        for name, frac in fractions.items():
            k = int(n * frac + 0.5)  # round half up
            if frac > 0 and k == 0:
                k = 1
            k = max(0, min(k, n - start - 1))  # keep >= 1 for training
            parts[name].append(ix[start : start + k])
            start += k
        parts["train"].append(ix[start:])
    return {
        name: np.sort(np.concatenate(chunks)) if chunks else np.zeros(0, dtype=np.int64)
        for name, chunks in parts.items()
    }
