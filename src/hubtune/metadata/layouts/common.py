"""Shared steps of every loader: read files with clear errors, assemble runs into a MetaDataset."""

from __future__ import annotations

import csv
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hubtune.core.metafeatures import DatasetMetaFeatures
from hubtune.metadata.errors import MetadataError, UnmappedRun
from hubtune.metadata.mapping import config_from_hyperparameters
from hubtune.metadata.metadataset import MetaDataset
from hubtune.metadata.runs import SCORE_TOLERANCE, DatasetRuns
from hubtune.space.config import Config, ConfigError

log = logging.getLogger("hubtune.metadata")


def read_json(path: Path) -> Any:
    """Parse a JSON file; a missing or malformed file raises :class:`MetadataError` naming it."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise MetadataError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise MetadataError(f"{path}: not valid JSON ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MetadataError(f"{path}: cannot read ({exc})") from None


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file; ragged rows raise :class:`MetadataError` naming the line."""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        raise MetadataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MetadataError(f"{path}: cannot read as CSV ({exc})") from None
    if not rows:
        raise MetadataError(f"{path}: empty file (expected a header row)")
    header, body = rows[0], [r for r in rows[1:] if r]
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise MetadataError(f"{path}, line {line}: {len(row)} fields, but the header has {len(header)}")
    return header, body


def rows_by_id(path: Path, rows: Sequence[list[str]]) -> dict[str, list[str]]:
    """Rows keyed by their first cell (the run id); empty or repeated ids raise, naming the line."""
    table: dict[str, list[str]] = {}
    for line, row in enumerate(rows, start=2):
        run_id = row[0].strip()
        if not run_id:
            raise MetadataError(f"{path}, line {line}: empty run id in the first column")
        if run_id in table:
            raise MetadataError(f"{path}, line {line}: run id {run_id!r} appears twice")
        table[run_id] = row
    return table


def expect_mapping(value: Any, path: Path, what: str) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else :class:`MetadataError` naming the file."""
    if not isinstance(value, Mapping):
        raise MetadataError(f"{path}: {what} must be a JSON object, got {type(value).__name__}")
    return value


def descriptor_to_meta_features(value: Any, where: str) -> DatasetMetaFeatures:
    """Meta-features from ``[n_images, n_classes, image_size, channels]`` or a dict.

    Dict keys may be hubtune's (``n_images``, ``n_classes``, ``mean_resolution``,
    ``channels``) or Quick-Tune-Tool's (``num-samples``, ``num-classes``,
    ``num-features``, ``num-channels``).
    """
    try:
        if isinstance(value, (list, tuple)):
            if len(value) != 4:
                raise ValueError(f"expected 4 numbers, got {len(value)}")
            n_images, n_classes, resolution, channels = value
        elif isinstance(value, Mapping):
            d = {str(k).lower().replace("-", "_"): v for k, v in value.items()}

            def pick(*names: str) -> Any:
                for n in names:
                    if n in d:
                        return d[n]
                raise ValueError(f"missing {names[0]!r}")

            n_images = pick("n_images", "num_samples", "n_samples")
            n_classes = pick("n_classes", "num_classes")
            resolution = pick("mean_resolution", "image_size", "resolution", "num_features")
            channels = pick("channels", "num_channels", "n_channels")
        else:
            raise ValueError(f"expected a list or object, got {type(value).__name__}")
        mf = DatasetMetaFeatures(
            n_images=_whole(n_images), n_classes=_whole(n_classes),
            mean_resolution=float(resolution), channels=_whole(channels),
        )
    except (TypeError, ValueError) as exc:
        raise MetadataError(f"{where}: bad meta-features {value!r} ({exc})") from None
    if mf.n_images < 1 or mf.n_classes < 1 or mf.mean_resolution <= 0 or mf.channels < 1:
        raise MetadataError(f"{where}: meta-features must be positive, got {value!r}")
    return mf


def float_or_nan(value: Any) -> float:
    """``float(value)``, or NaN for values that are not numbers (``None``, ``""``, text)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _whole(value: Any) -> int:
    number = float(value)
    if number != int(number):
        raise ValueError(f"{value!r} is not a whole number")
    return int(number)


def map_config(raw: Mapping[str, Any]) -> Config | str:
    """The Config for ``raw`` hyperparameters, or the reason it cannot be built."""
    try:
        return config_from_hyperparameters(raw)
    except ConfigError as exc:
        return f"invalid configuration: {exc}"
    except (TypeError, ValueError) as exc:  # e.g. an unexpected keyword in the source
        return f"invalid configuration: {exc}"


@dataclass
class RawRun:
    """One run as read from a source, before checks: scores are fractions, seconds per epoch."""

    dataset: str
    run_id: str
    config: Config | str  # a Config, or why there is none
    scores: Sequence[float] | np.ndarray
    seconds: Sequence[float] | np.ndarray


def _as_array(values: Sequence[float]) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return np.array([float_or_nan(v) for v in values], dtype=np.float64)


def _clean_curve(run: RawRun) -> tuple[np.ndarray, np.ndarray] | str:
    """Recorded epochs up to the first non-finite score/time, or why the run has none."""
    if len(run.scores) != len(run.seconds):
        return f"{len(run.scores)} scores but {len(run.seconds)} per-epoch times"
    scores, seconds = _as_array(run.scores), _as_array(run.seconds)
    finite = np.isfinite(scores) & np.isfinite(seconds)
    n = len(finite) if finite.all() else int(np.argmin(finite))
    scores, seconds = scores[:n], seconds[:n]
    if n == 0:
        return "no recorded epoch with a finite score and time"
    bad = np.flatnonzero((scores < -SCORE_TOLERANCE) | (scores > 1 + SCORE_TOLERANCE))
    if bad.size:
        e = int(bad[0])
        return f"score {scores[e]:g} at epoch {e + 1} is outside [0, 1] (after unit conversion)"
    negative = np.flatnonzero(seconds < 0)
    if negative.size:
        e = int(negative[0])
        return f"negative time {seconds[e]:g} at epoch {e + 1}"
    return scores, seconds


def assemble(
    runs: Iterable[RawRun],
    meta_features: Mapping[str, DatasetMetaFeatures | None],
    source: str,
    unmapped: Sequence[UnmappedRun] = (),
) -> MetaDataset:
    """Check every run, group by dataset and build the :class:`MetaDataset`.

    Runs without a Config or without a usable epoch go to ``unmapped``. A curve
    is cut at its first non-finite value (a run that diverged); the number of
    cut curves is logged.
    """
    unmapped = list(unmapped)
    grouped: dict[str, list[tuple[str, Config, np.ndarray, np.ndarray]]] = defaultdict(list)
    cut = 0
    for run in runs:
        if isinstance(run.config, str):
            unmapped.append(UnmappedRun(run.dataset, run.run_id, run.config))
            continue
        curve = _clean_curve(run)
        if isinstance(curve, str):
            unmapped.append(UnmappedRun(run.dataset, run.run_id, curve))
            continue
        cut += len(curve[0]) < len(run.scores)
        grouped[run.dataset].append((run.run_id, run.config, *curve))
    width = max((len(s) for rows in grouped.values() for _, _, s, _ in rows), default=0)
    parts = []
    for dataset, rows in grouped.items():
        ids, cfgs, scores, seconds = zip(*rows, strict=True)
        parts.append(
            DatasetRuns.from_curves(
                dataset, list(ids), list(cfgs), list(scores), list(seconds),
                meta_features.get(dataset), max_epochs=width,
            )
        )
    meta = MetaDataset(parts, unmapped, width)
    missing = [d for d in meta.datasets if meta[d].meta_features is None]
    log.info("loaded %s: %d datasets, %d runs, max %d epochs", source, len(meta), meta.n_runs, width)
    if cut:
        log.info("%s: %d curves end at a non-finite value and were cut there", source, cut)
    if unmapped:
        log.warning(
            "%s: %d run(s) could not be used and are listed in MetaDataset.unmapped (first: %s)",
            source, len(unmapped), unmapped[0].reason,
        )
    if missing:
        log.warning("%s: no meta-features for dataset(s) %s", source, ", ".join(missing))
    return meta
