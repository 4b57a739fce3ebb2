"""The Quick-Tune compact layout (``table.csv`` + ``curves/`` + ``meta/``).

Used by the ``quicktune`` package's repository and by
``shared/metadata/quicktune-extended``:

- ``table.csv``: first (unnamed) column = run id; ``cat:<hp>:<value>`` one-hot
  columns; the other columns are numeric hyperparameters.
- ``curves/perf.json``: dataset -> run id -> per-epoch validation top-1 in PERCENT
  (a top-level ``info`` key describes the file).
- ``curves/cost.json``: dataset -> run id -> per-epoch seconds (train + eval).
- ``meta/descriptors.json``: dataset -> [n_images, n_classes, image size, channels].
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hubtune.core.metafeatures import DatasetMetaFeatures
from hubtune.metadata.errors import MetadataError, UnmappedRun
from hubtune.metadata.layouts.common import (
    RawRun,
    assemble,
    descriptor_to_meta_features,
    expect_mapping,
    float_or_nan,
    map_config,
    read_csv,
    read_json,
    rows_by_id,
)
from hubtune.metadata.mapping import HYPERPARAMETERS, normalise_name
from hubtune.metadata.metadataset import MetaDataset

log = logging.getLogger("hubtune.metadata")

TABLE = "table.csv"
PERF = Path("curves") / "perf.json"
COST = Path("curves") / "cost.json"
DESCRIPTORS = Path("meta") / "descriptors.json"
NOT_DATASETS = frozenset({"info"})


def is_compact(directory: Path) -> bool:
    """Whether ``directory`` looks like the compact layout."""
    return (directory / TABLE).is_file() and (directory / PERF).is_file()


class _TableMapper:
    """Maps rows of ``table.csv`` to hyperparameter dicts (one-hot groups decoded)."""

    def __init__(self, header: list[str], path: Path) -> None:
        self.path = path
        self.groups: dict[str, list[tuple[int, str]]] = {}
        self.numeric: list[tuple[int, str]] = []
        ignored = []
        for j, col in enumerate(header[1:], start=1):
            if col.startswith("cat:"):
                parts = col.split(":", 2)
                if len(parts) != 3 or not parts[1]:
                    raise MetadataError(f"{path}: column {col!r} is not of the form cat:<hp>:<value>")
                self.groups.setdefault(normalise_name(parts[1]), []).append((j, parts[2]))
            elif normalise_name(col) in HYPERPARAMETERS:
                self.numeric.append((j, normalise_name(col)))
            else:
                ignored.append(col)
        if "model" not in self.groups and all(n != "model" for _, n in self.numeric):
            raise MetadataError(f"{path}: no model column (expected one-hot 'cat:model:<name>' columns)")
        if ignored:
            log.warning("%s: ignoring column(s) that are not hyperparameters: %s", path, ", ".join(ignored))

    def row(self, row: list[str]) -> dict[str, Any] | str:
        """Hyperparameters of one row, or why they cannot be read."""
        raw: dict[str, Any] = {}
        for name, cols in self.groups.items():
            on = []
            for j, value in cols:
                cell = row[j].strip()
                if cell in ("1", "1.0", "True", "true"):
                    on.append(value)
                elif cell not in ("0", "0.0", "False", "false", ""):
                    return f"one-hot column cat:{name}:{value} holds {cell!r} (expected 0 or 1)"
            if len(on) != 1:
                return f"{len(on)} one-hot columns of {name!r} are set (expected exactly 1)"
            raw[name] = on[0]
        for j, name in self.numeric:
            raw[name] = row[j]
        return raw


def load_compact(directory: Path) -> MetaDataset:
    """Read the compact layout in ``directory`` (see the module doc)."""
    header, rows = read_csv(directory / TABLE)
    mapper = _TableMapper(header, directory / TABLE)
    table = rows_by_id(directory / TABLE, rows)

    perf = _curves(directory / PERF)
    cost = _curves(directory / COST)
    meta_features = _descriptors(directory / DESCRIPTORS)

    runs: list[RawRun] = []
    unmapped: list[UnmappedRun] = []
    seen: set[str] = set()
    for dataset, curves in perf.items():
        costs = cost.get(dataset, {})
        for run_id, scores in curves.items():
            seen.add(run_id)
            row = table.get(run_id)
            if row is None:
                unmapped.append(UnmappedRun(dataset, run_id, f"no row in {TABLE}"))
                continue
            if run_id not in costs:
                unmapped.append(UnmappedRun(dataset, run_id, f"no per-epoch times in {COST}"))
                continue
            raw = mapper.row(row)
            config = raw if isinstance(raw, str) else map_config(raw)
            runs.append(RawRun(dataset, run_id, config, _fractions(scores), costs[run_id]))
    for run_id in table:
        if run_id not in seen:
            unmapped.append(UnmappedRun("", run_id, f"row of {TABLE} without a curve in {PERF}"))
    return assemble(runs, meta_features, str(directory), unmapped)



def _fractions(percent: list) -> np.ndarray:
    try:
        return np.asarray(percent, dtype=np.float64) / 100.0
    except (TypeError, ValueError):
        return np.array([float_or_nan(v) for v in percent]) / 100.0


def _curves(path: Path) -> dict[str, Mapping[str, list]]:
    data = expect_mapping(read_json(path), path, "the top level")
    out: dict[str, Mapping[str, list]] = {}
    for dataset, runs in data.items():
        if dataset in NOT_DATASETS:
            continue
        runs = expect_mapping(runs, path, f"entry {dataset!r}")
        for run_id, curve in runs.items():
            if not isinstance(curve, list):
                raise MetadataError(
                    f"{path}: {dataset!r} run {run_id!r} must be a list of per-epoch numbers"
                )
        out[dataset] = runs
    return out


def _descriptors(path: Path) -> dict[str, DatasetMetaFeatures | None]:
    if not path.is_file():
        log.warning("%s not found: datasets have no meta-features", path)
        return {}
    data = expect_mapping(read_json(path), path, "the top level")
    return {
        str(name): descriptor_to_meta_features(value, f"{path}: {name!r}")
        for name, value in data.items()
    }
