"""On-disk cache of decoded datasets: ``<key>.safetensors`` (tensors) + ``<key>.json`` (the rest)."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from hubtune.core.metafeatures import DatasetMetaFeatures
from hubtune.data.dataset import ImageDataset, ImageSplit
from hubtune.data.errors import DataError, SkippedFile

log = logging.getLogger(__name__)

CACHE_FORMAT = "hubtune-dataset-cache/1"


def cache_paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    """(tensor file, JSON file) of cache entry ``key``."""
    return cache_dir / f"{key}.safetensors", cache_dir / f"{key}.json"


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_cached(cache_dir: Path, key: str, ds: ImageDataset) -> None:
    """Store ``ds`` under ``key``; the JSON file is written last and marks completeness."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create cache folder {cache_dir}: {exc.strerror or exc}") from None
    tensors = {}
    for name, split in ds.splits().items():
        tensors[f"{name}.images"] = split.images.contiguous()
        tensors[f"{name}.labels"] = split.labels.contiguous()
    meta = {
        "format": CACHE_FORMAT,
        "name": ds.name,
        "classes": ds.classes,
        "meta_features": ds.meta_features.to_dict(),
        "skipped": [s.to_dict() for s in ds.skipped],
        "fingerprint": ds.fingerprint,
    }
    tensor_path, json_path = cache_paths(cache_dir, key)
    try:
        _atomic_write(tensor_path, lambda p: save_file(tensors, p, metadata={"format": CACHE_FORMAT}))
        _atomic_write(json_path, lambda p: Path(p).write_text(json.dumps(meta, indent=1)))
    except OSError as exc:
        raise DataError(f"cannot write dataset cache in {cache_dir}: {exc.strerror or exc}") from None


def load_cached(cache_dir: Path, key: str) -> ImageDataset | None:
    """The dataset cached under ``key``, or ``None`` if absent or unusable."""
    tensor_path, json_path = cache_paths(cache_dir, key)
    if not (tensor_path.is_file() and json_path.is_file()):
        return None
    try:
        meta = json.loads(json_path.read_text())
        if meta.get("format") != CACHE_FORMAT:
            return None
        tensors = load_file(str(tensor_path))
        splits = {
            name: ImageSplit(images=tensors[f"{name}.images"], labels=tensors[f"{name}.labels"])
            for name in ("train", "val", "test")
            if f"{name}.images" in tensors
        }
        return ImageDataset(
            name=meta["name"],
            classes=list(meta["classes"]),
            train=splits["train"],
            val=splits["val"],
            test=splits.get("test"),
            meta_features=DatasetMetaFeatures.from_dict(meta["meta_features"]),
            skipped=[SkippedFile.from_dict(s) for s in meta["skipped"]],
            fingerprint=str(meta["fingerprint"]),
        )
    except (OSError, ValueError, KeyError, TypeError, SafetensorError, DataError) as exc:
        log.warning("ignoring unreadable dataset cache entry %s: %s", tensor_path, exc)
        return None
