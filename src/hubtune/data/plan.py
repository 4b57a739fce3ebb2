"""What to load, before anything is decoded: classes, split membership, identity.

A :class:`DatasetPlan` lists, per split, which items (image files or rows of
an array) belong to it with which labels. Subsetting and the cache key work
on plans, so a cache hit decodes nothing and a subset decodes only what it
keeps.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from hubtune.data.errors import DataError
from hubtune.data.split import stratified_subset

SPLIT_NAMES = ("train", "val", "test")
PLAN_FORMAT_VERSION = 1


@dataclass(frozen=True)
class SplitPlan:
    """Items of one split and their class indices (same length)."""

    items: list[Path] | np.ndarray  # image files, or row indices into an array source
    labels: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> SplitPlan:
        """The items at positions ``index`` (in that order)."""
        if isinstance(self.items, np.ndarray):
            items: list[Path] | np.ndarray = self.items[index]
        else:
            items = [self.items[int(i)] for i in index]
        return SplitPlan(items=items, labels=self.labels[index])


@dataclass(frozen=True)
class DatasetPlan:
    """A dataset before decoding.

    ``identity`` holds strings that change whenever the source data changes
    (file sizes and modification times, a package version); ``load_rows``
    (array sources only) returns all rows as uint8 ``[N, H, W]`` or
    ``[N, H, W, C]``.
    """

    name: str
    classes: list[str]
    splits: dict[str, SplitPlan]
    identity: list[str] = field(default_factory=list)
    load_rows: Callable[[], np.ndarray] | None = None

    @property
    def is_array(self) -> bool:
        """Whether items are rows of an array (built-ins) rather than files."""
        return self.load_rows is not None

    def with_subset(self, n: int, seed: int) -> DatasetPlan:
        """Keep a stratified, seeded ``n`` training items and proportionally fewer
        validation and test items (at least one per class where possible)."""
        train = self.splits["train"]
        k = len(self.classes)
        if n > len(train):
            raise DataError(
                f"subset={n} is larger than the {len(train)} training images of {self.name}"
            )
        if n < k:
            raise DataError(
                f"subset={n} is smaller than the number of classes ({k}) of {self.name}; "
                "every class needs at least one training image"
            )
        rng = np.random.default_rng([seed, 7919])
        factor = n / len(train)
        new: dict[str, SplitPlan] = {}
        for name, part in self.splits.items():
            if name == "train":
                target = n
            else:
                counts = np.bincount(part.labels, minlength=k)
                target = max(int(len(part) * factor + 0.5), min(int((counts > 0).sum()), len(part)))
            new[name] = part.take(stratified_subset(part.labels, target, k, rng))
        return replace(self, splits=new)

    def key(self, image_size: int) -> str:
        """Hash of everything that determines the decoded tensors."""
        h = hashlib.sha256()
        head = {
            "version": PLAN_FORMAT_VERSION,
            "name": self.name,
            "classes": self.classes,
            "image_size": image_size,
            "identity": self.identity,
        }
        h.update(json.dumps(head, sort_keys=True).encode())
        for name in SPLIT_NAMES:
            part = self.splits.get(name)
            if part is None:
                continue
            h.update(f"|{name}|".encode())
            h.update(np.ascontiguousarray(part.labels, dtype=np.int64).tobytes())
            if isinstance(part.items, np.ndarray):
                h.update(np.ascontiguousarray(part.items, dtype=np.int64).tobytes())
            else:
                for p in part.items:
                    h.update(_file_identity(p).encode())
        return h.hexdigest()[:32]


def _file_identity(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return f"{path}\0missing\n"
    return f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n"

