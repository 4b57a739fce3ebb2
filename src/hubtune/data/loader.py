"""``load_dataset``: one entry point for folders and built-in datasets."""

from __future__ import annotations

import logging
import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from hubtune.core.metafeatures import DatasetMetaFeatures
from hubtune.data.builtin import BUILTIN_DATASETS, parse_builtin_name, plan_builtin
from hubtune.data.cache import load_cached, save_cached
from hubtune.data.dataset import ImageDataset, ImageSplit
from hubtune.data.errors import DataError, DataWarning, SkippedFile
from hubtune.data.folder import plan_image_folder
from hubtune.data.images import DecodedImage, ImageDecodeError, decode_image, resize_array_batch
from hubtune.data.plan import DatasetPlan, SplitPlan

log = logging.getLogger(__name__)

MAX_IMAGE_SIZE = 4096


def _check_args(image_size: object, subset: object, val_fraction: float, test_fraction: float) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int):
        raise DataError(f"image_size must be an integer, got {image_size!r}")
    if not 1 <= image_size <= MAX_IMAGE_SIZE:
        raise DataError(f"image_size must be between 1 and {MAX_IMAGE_SIZE}, got {image_size}")
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset <= 0):
        raise DataError(f"subset must be a positive integer or None, got {subset!r}")
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if val_fraction + test_fraction >= 0.9:
        raise DataError(
            f"val_fraction + test_fraction must leave at least 10% for training, got "
            f"{val_fraction} + {test_fraction}"
        )


def _plan(
    source: str | os.PathLike[str],
    *,
    subset: int | None,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    cache_dir: Path | None,
    download: bool | None,
) -> DatasetPlan:
    builtin = None if isinstance(source, os.PathLike) else parse_builtin_name(str(source))
    if builtin is not None:
        name, name_subset = builtin
        if name_subset is not None and subset is not None and name_subset != subset:
            raise DataError(
                f"subset given twice with different values: {source!r} and subset={subset}"
            )
        subset = subset if subset is not None else name_subset
        plan = plan_builtin(
            name,
            seed=seed,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            cache_dir=cache_dir,
            download=download,
        )
    else:
        path = Path(source).expanduser()
        if not path.exists() and isinstance(source, str) and os.sep not in source:
            raise DataError(
                f"{source!r} is neither an existing folder nor a built-in dataset "
                f"({', '.join(BUILTIN_DATASETS)}; optionally with ':N' for an N-image subset)"
            )
        plan = plan_image_folder(path, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    if subset is not None:
        plan = plan.with_subset(subset, seed)
    return plan


def _decode_files(
    part: SplitPlan, image_size: int, workers: int
) -> tuple[list[DecodedImage | None], list[SkippedFile]]:
    paths = list(part.items)

    def one(path: Path) -> DecodedImage | SkippedFile:
        try:
            return decode_image(path, image_size)
        except ImageDecodeError as exc:
            return SkippedFile(path=str(path), reason=str(exc))

    if workers > 1 and len(paths) > 16:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hubtune-decode") as pool:
            results = list(pool.map(one, paths, chunksize=16))
    else:
        results = [one(p) for p in paths]
    decoded = [r if isinstance(r, DecodedImage) else None for r in results]
    skipped = [r for r in results if isinstance(r, SkippedFile)]
    for s in skipped:
        log.debug("skipped %s: %s", s.path, s.reason)
    return decoded, skipped


def _materialize_files(
    plan: DatasetPlan, image_size: int, workers: int
) -> tuple[dict[str, ImageSplit], list[SkippedFile], DatasetMetaFeatures]:
    splits: dict[str, ImageSplit] = {}
    skipped: list[SkippedFile] = []
    resolutions: list[float] = []
    channels: Counter[int] = Counter()
    for name, part in plan.splits.items():
        decoded, bad = _decode_files(part, image_size, workers)
        skipped.extend(bad)
        keep = [i for i, d in enumerate(decoded) if d is not None]
        images = torch.empty((len(keep), 3, image_size, image_size), dtype=torch.uint8)
        for row, i in enumerate(keep):
            d = decoded[i]
            assert d is not None
            images[row] = torch.from_numpy(d.pixels).permute(2, 0, 1)
            resolutions.append((d.width + d.height) / 2.0)
            channels[d.channels] += 1
        labels = torch.from_numpy(np.ascontiguousarray(part.labels[keep], dtype=np.int64))
        splits[name] = ImageSplit(images=images, labels=labels)
    mean_res = float(np.mean(resolutions)) if resolutions else 0.0
    # Majority channel count of the originals (ties: the larger, i.e. colour).
    n_channels = max(channels.items(), key=lambda kv: (kv[1], kv[0]))[0] if channels else 3
    meta = DatasetMetaFeatures(
        n_images=len(splits["train"]),
        n_classes=len(plan.classes),
        mean_resolution=mean_res,
        channels=n_channels,
    )
    return splits, skipped, meta


def _materialize_arrays(
    plan: DatasetPlan, image_size: int
) -> tuple[dict[str, ImageSplit], list[SkippedFile], DatasetMetaFeatures]:
    assert plan.load_rows is not None
    rows = plan.load_rows()
    splits = {}
    for name, part in plan.splits.items():
        index = np.asarray(part.items, dtype=np.int64)
        images = resize_array_batch(rows[index], image_size)
        labels = torch.from_numpy(np.ascontiguousarray(part.labels, dtype=np.int64))
        splits[name] = ImageSplit(images=images, labels=labels)
    height, width = rows.shape[1], rows.shape[2]
    channels = 1 if rows.ndim == 3 or rows.shape[-1] == 1 else 3
    meta = DatasetMetaFeatures(
        n_images=len(splits["train"]),
        n_classes=len(plan.classes),
        mean_resolution=(height + width) / 2.0,
        channels=channels,
    )
    return splits, [], meta


def _warn_skipped(name: str, skipped: list[SkippedFile], total: int) -> None:
    if not skipped:
        return
    shown = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:5])
    more = f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    warnings.warn(
        DataWarning(f"{name}: skipped {len(skipped)} of {total} image files ({shown}{more})"),
        stacklevel=3,
    )


def _check_result(plan: DatasetPlan, splits: dict[str, ImageSplit], where: str) -> None:
    k = len(plan.classes)
    counts = splits["train"].class_counts(k)
    empty = [plan.classes[c] for c in range(k) if counts[c] == 0]
    if empty:
        raise DataError(
            f"class {', '.join(repr(c) for c in empty)} of {where} has no readable training "
            "images (all its files were skipped)"
        )
    if len(splits["val"]) == 0:
        raise DataError(f"the validation split of {where} has no readable images")


# Long by its docstring, which documents every argument: 51 lines without it.
def load_dataset(
    source: str | os.PathLike[str],
    *,
    image_size: int,
    subset: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    cache_dir: Path | None = None,
    download: bool | None = None,
    workers: int | None = None,
) -> ImageDataset:
    """Load an image-classification dataset as in-memory ``uint8 [N, 3, S, S]`` tensors.

    ``source`` is

    * a folder with ``train/`` (and ``val/``, optionally ``test/``) subfolders of
      class folders: used as given; a missing ``val/`` is carved from ``train/``;
    * one folder of class folders: split into train / val / test by ``seed``
      (stratified; ``val_fraction`` and ``test_fraction`` of each class);
    * a built-in name: ``"fashion-mnist"``, ``"animal-mnist"`` or ``"digits"``,
      optionally ``"name:N"`` for ``subset=N``. An official test split is kept;
      validation is carved from training by ``seed``.

    ``subset=N`` keeps a stratified, seeded ``N`` training images and
    proportionally fewer validation/test images (at least one per class where
    possible). Images become RGB, short side resized to ``image_size`` and
    centre-cropped. Files that cannot be decoded are skipped with a
    :class:`DataWarning` and listed in ``ImageDataset.skipped``. With
    ``cache_dir``, decoded tensors are stored there (safetensors + JSON) and
    reused by later calls on unchanged files. ``download`` allows (True) or
    forbids (False) downloading Fashion-MNIST when it is not installed (default:
    allowed unless ``HUBTUNE_OFFLINE=1``). ``workers`` is the number of decoding
    threads (default: ``min(4, cpu count)``).

    Raises :class:`DataError` for anything that prevents loading.

    Example::

        ds = load_dataset("fashion-mnist:2000", image_size=32, seed=0)
        ds.train.images.shape  # torch.Size([2000, 3, 32, 32])
    """
    _check_args(image_size, subset, val_fraction, test_fraction)
    plan = _plan(
        source,
        subset=subset,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        cache_dir=cache_dir,
        download=download,
    )
    key = plan.key(image_size)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else None
    if cache is not None:
        cached = load_cached(cache, key)
        if cached is not None:
            log.info("loaded %s from cache %s", cached.name, cache)
            _warn_skipped(cached.name, cached.skipped, sum(len(p) for p in plan.splits.values()))
            return cached
    where = str(source)
    if plan.is_array:
        splits, skipped, meta = _materialize_arrays(plan, image_size)
    else:
        n_workers = workers if workers is not None else min(4, os.cpu_count() or 1)
        splits, skipped, meta = _materialize_files(plan, image_size, max(1, n_workers))
    _warn_skipped(plan.name, skipped, sum(len(p) for p in plan.splits.values()))
    _check_result(plan, splits, where)
    ds = ImageDataset(
        name=plan.name,
        classes=list(plan.classes),
        train=splits["train"],
        val=splits["val"],
        test=splits.get("test"),
        meta_features=meta,
        skipped=skipped,
        fingerprint=key,
    )
    if cache is not None:
        save_cached(cache, key, ds)
    return ds
