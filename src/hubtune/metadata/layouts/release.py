"""The official Quick-Tune release layout (one folder per meta-dataset version).

- ``eval_top1.json``: dataset -> run id -> per-epoch validation top-1 in PERCENT.
- ``eval_time.json``, ``train_time.json``: dataset -> run id -> per-epoch seconds;
  a run's per-epoch seconds are ``train_time + eval_time``.
- ``args.json``: run id -> the training script's arguments. Hyperparameters are
  picked by name (see :mod:`hubtune.metadata.mapping`); other arguments
  (``dataset``, ``experiment``, ``epochs`` ...) are ignored.
- optional ``meta.json`` (or ``descriptors.json``): dataset -> ``[n_images,
  n_classes, image size, channels]`` or an object with those fields. Without
  it the datasets have no meta-features (``DatasetRuns.meta_features is None``)
  and a warning says so.

Curves are cut at their first non-finite value (NaN marks a diverged epoch).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from hubtune.core.metafeatures import DatasetMetaFeatures
from hubtune.metadata.errors import MetadataError, UnmappedRun
from hubtune.metadata.layouts.common import (
    RawRun,
    assemble,
    descriptor_to_meta_features,
    expect_mapping,
    float_or_nan,
    map_config,
    read_json,
)
from hubtune.metadata.metadataset import MetaDataset

log = logging.getLogger("hubtune.metadata")

SCORES = "eval_top1.json"
EVAL_TIME = "eval_time.json"
TRAIN_TIME = "train_time.json"
ARGS = "args.json"
META_FILES = ("meta.json", "descriptors.json")


def is_release(directory: Path) -> bool:
    """Whether ``directory`` looks like the official release layout."""
    return (directory / SCORES).is_file() and (directory / ARGS).is_file()


def _curves(path: Path) -> dict[str, Mapping[str, list]]:
    data = expect_mapping(read_json(path), path, "the top level (dataset -> run -> curve)")
    out = {}
    for dataset, runs in data.items():
        runs = expect_mapping(runs, path, f"entry {dataset!r}")
        for run_id, curve in runs.items():
            if not isinstance(curve, list):
                raise MetadataError(f"{path}: {dataset!r} run {run_id!r} must be a list of per-epoch numbers")
        out[str(dataset)] = runs
    return out


def load_meta_features(directory: Path) -> dict[str, DatasetMetaFeatures | None]:
    """Meta-features from the first of ``meta.json``/``descriptors.json`` present (else none)."""
    for name in META_FILES:
        path = directory / name
        if path.is_file():
            data = expect_mapping(read_json(path), path, "the top level (dataset -> meta-features)")
            return {str(d): descriptor_to_meta_features(v, f"{path}: {d!r}") for d, v in data.items()}
    log.warning(
        "%s: no %s found, so the datasets have no meta-features "
        "(write dataset -> [n_images, n_classes, image size, channels] there)",
        directory, " or ".join(META_FILES),
    )
    return {}


def load_release(directory: Path) -> MetaDataset:
    """Read the official release layout in ``directory`` (see the module doc)."""
    scores = _curves(directory / SCORES)
    eval_time = _curves(directory / EVAL_TIME)
    train_time = _curves(directory / TRAIN_TIME)
    args = expect_mapping(read_json(directory / ARGS), directory / ARGS, "the top level (run -> arguments)")
    meta_features = load_meta_features(directory)

    runs: list[RawRun] = []
    unmapped: list[UnmappedRun] = []
    for dataset, curves in scores.items():
        for run_id, curve in curves.items():
            train = train_time.get(dataset, {}).get(run_id)
            evals = eval_time.get(dataset, {}).get(run_id)
            if train is None or evals is None:
                missing = TRAIN_TIME if train is None else EVAL_TIME
                unmapped.append(UnmappedRun(dataset, run_id, f"no per-epoch times in {missing}"))
                continue
            if not len(train) == len(evals) == len(curve):
                unmapped.append(
                    UnmappedRun(
                        dataset, run_id,
                        f"curve lengths differ: {SCORES} {len(curve)}, {TRAIN_TIME} {len(train)}, "
                        f"{EVAL_TIME} {len(evals)}",
                    )
                )
                continue
            hp = args.get(run_id)
            if not isinstance(hp, Mapping):
                reason = f"no arguments in {ARGS}" if hp is None else f"arguments in {ARGS} are not an object"
                unmapped.append(UnmappedRun(dataset, run_id, reason))
                continue
            seconds = [float_or_nan(t) + float_or_nan(e) for t, e in zip(train, evals, strict=True)]
            fractions = [float_or_nan(s) / 100.0 for s in curve]
            runs.append(RawRun(dataset, str(run_id), map_config(hp), fractions, seconds))
    return assemble(runs, meta_features, str(directory), unmapped)


