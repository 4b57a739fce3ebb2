"""Quick-Tune-Tool's CSV layout (PyPI ``quicktunetool`` 0.0.4, ``import qtt``).

As documented in its ``examples/metatrain.py`` (every file's first column is
the run id, rows are matched by it):

- ``config.csv``: one row per run, hyperparameters in native types
  (``model``, ``opt``, ``lr`` ...; names with ``-`` or ``_``, values such as
  ``trivial-augment`` accepted). An optional ``dataset`` column names the
  dataset of each run.
- ``curve.csv``: columns ``1..N`` = validation top-1 per epoch as a FRACTION
  in [0, 1]; empty/NaN after a run's last epoch.
- ``cost.csv``: either one column (``cost``) = the run's total seconds over its
  recorded epochs, which hubtune spreads evenly over those epochs (the
  per-epoch split is not recorded in this layout), or one column per epoch
  like ``curve.csv``.
- ``meta.csv`` (optional): per-run dataset meta-features; Quick-Tune-Tool's
  names ``num-samples``, ``num-classes``, ``num-features`` (mean image size),
  ``num-channels`` or hubtune's ``n_images``, ``n_classes``,
  ``mean_resolution``, ``channels``; optionally a ``dataset`` column.

Which dataset a run belongs to: the ``dataset`` column (config.csv or
meta.csv) if there is one; else runs with identical meta-feature rows form
one dataset, named ``<folder>-<k>`` in order of first appearance; else all
runs form one dataset named after the folder.
"""

from __future__ import annotations

import math
from pathlib import Path

from hubtune.core.metafeatures import DatasetMetaFeatures
from hubtune.metadata.errors import MetadataError, UnmappedRun
from hubtune.metadata.layouts.common import (
    RawRun,
    assemble,
    descriptor_to_meta_features,
    float_or_nan,
    map_config,
    read_csv,
    rows_by_id,
)
from hubtune.metadata.metadataset import MetaDataset
from hubtune.metadata.runs import SCORE_TOLERANCE

CONFIG = "config.csv"
CURVE = "curve.csv"
COST = "cost.csv"
META = "meta.csv"
DATASET_COLUMN = "dataset"


def is_qtt(directory: Path) -> bool:
    """Whether ``directory`` looks like Quick-Tune-Tool's CSV layout."""
    return (directory / CONFIG).is_file() and (directory / CURVE).is_file()


def _table(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    """Column names (without the id column) and id -> cells of one CSV."""
    header, rows = read_csv(path)
    table = {run_id: row[1:] for run_id, row in rows_by_id(path, rows).items()}
    return [h.strip() for h in header[1:]], table


def _epoch_columns(path: Path, columns: list[str]) -> None:
    try:
        epochs = [int(float(c)) for c in columns]
    except ValueError:
        raise MetadataError(f"{path}: columns must be epochs 1..N, got {columns[:5]}") from None
    if epochs != list(range(1, len(epochs) + 1)):
        raise MetadataError(f"{path}: columns must be epochs 1..N in order, got {columns[:5]}...")


def _trim(values: list[float]) -> list[float]:
    """Drop the NaN padding after the last recorded epoch."""
    end = len(values)
    while end and math.isnan(values[end - 1]):
        end -= 1
    return values[:end]


def load_qtt(directory: Path) -> MetaDataset:
    """Read Quick-Tune-Tool's CSV layout in ``directory`` (see the module doc)."""
    config_cols, configs = _table(directory / CONFIG)
    curve_cols, curves = _table(directory / CURVE)
    _epoch_columns(directory / CURVE, curve_cols)
    if not (directory / COST).is_file():
        raise MetadataError(f"{directory / COST}: file not found (per-run seconds are required)")
    cost_cols, costs = _table(directory / COST)
    per_epoch_cost = len(cost_cols) > 1
    if per_epoch_cost:
        _epoch_columns(directory / COST, cost_cols)
    elif len(cost_cols) != 1:
        raise MetadataError(f"{directory / COST}: expected a 'cost' column or one column per epoch")

    scores = {r: _trim([float_or_nan(v) for v in row]) for r, row in curves.items()}
    top = max((v for c in scores.values() for v in c if math.isfinite(v)), default=0.0)
    if top > 1 + SCORE_TOLERANCE:
        raise MetadataError(
            f"{directory / CURVE}: scores go up to {top:g}; Quick-Tune-Tool curves are fractions in [0, 1]"
        )

    meta_cols, metas = ([], {})
    if (directory / META).is_file():
        meta_cols, metas = _table(directory / META)
    datasets, meta_features = _datasets(directory, config_cols, configs, meta_cols, metas)

    runs: list[RawRun] = []
    unmapped: list[UnmappedRun] = []
    for run_id, row in configs.items():
        dataset = datasets[run_id]
        if run_id not in scores:
            unmapped.append(UnmappedRun(dataset, run_id, f"no curve in {CURVE}"))
            continue
        if run_id not in costs:
            unmapped.append(UnmappedRun(dataset, run_id, f"no cost in {COST}"))
            continue
        curve = scores[run_id]
        cost_row = [float_or_nan(v) for v in costs[run_id]]
        if per_epoch_cost:
            seconds = cost_row[: len(curve)] + [math.nan] * (len(curve) - len(cost_row))
        else:
            seconds = [cost_row[0] / len(curve)] * len(curve) if curve else []
        hp = {c: v for c, v in zip(config_cols, row, strict=True) if c.lower() != DATASET_COLUMN}
        runs.append(RawRun(dataset, run_id, map_config(hp), curve, seconds))
    for run_id in scores:
        if run_id not in configs:
            unmapped.append(UnmappedRun("", run_id, f"curve without a configuration in {CONFIG}"))
    return assemble(runs, meta_features, str(directory), unmapped)


def _datasets(
    directory: Path,
    config_cols: list[str],
    configs: dict[str, list[str]],
    meta_cols: list[str],
    metas: dict[str, list[str]],
) -> tuple[dict[str, str], dict[str, DatasetMetaFeatures | None]]:
    """Each run's dataset name, and each dataset's meta-features (see the module doc)."""
    lower_config = [c.lower() for c in config_cols]
    lower_meta = [c.lower() for c in meta_cols]
    names: dict[str, str] = {}
    if DATASET_COLUMN in lower_config:
        j = lower_config.index(DATASET_COLUMN)
        names = {r: row[j].strip() for r, row in configs.items()}
    elif DATASET_COLUMN in lower_meta:
        j = lower_meta.index(DATASET_COLUMN)
        names = {r: row[j].strip() for r, row in metas.items()}

    features: dict[str, DatasetMetaFeatures] = {}
    for run_id, row in metas.items():
        values = {c: v for c, v in zip(meta_cols, row, strict=True) if c.lower() != DATASET_COLUMN}
        features[run_id] = descriptor_to_meta_features(values, f"{directory / META}: run {run_id!r}")
    missing_meta = [r for r in configs if metas and r not in features]
    if missing_meta:
        raise MetadataError(f"{directory / META}: no row for run(s) {', '.join(missing_meta[:5])}")

    if not names:
        if features:
            order: dict[DatasetMetaFeatures, str] = {}
            for run_id in configs:
                order.setdefault(features[run_id], f"{directory.name}-{len(order)}")
            names = {r: order[features[r]] for r in configs}
        else:
            names = {r: directory.name for r in configs}
    missing = [r for r in configs if not names.get(r)]
    if missing:
        raise MetadataError(f"{directory}: no dataset name for run(s) {', '.join(missing[:5])}")

    per_dataset: dict[str, DatasetMetaFeatures | None] = {}
    for run_id in configs:
        name, mf = names[run_id], features.get(run_id)
        if name in per_dataset and per_dataset[name] != mf:
            raise MetadataError(
                f"{directory / META}: runs of dataset {name!r} have different meta-features "
                f"({per_dataset[name]} vs {mf}, run {run_id!r})"
            )
        per_dataset[name] = mf
    return names, per_dataset
