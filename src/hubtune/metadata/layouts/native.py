"""hubtune's own meta-dataset format: safetensors arrays + JSON (docs/metadata-format.md).

A directory with:

- ``metadata.json``: ``{"format": "hubtune-metadata", "version": 1, "max_epochs": int,
  "datasets": [{"name", "run_ids", "configs", "meta_features"[, "schedule_epochs"][, "provenance"]}...],
  "unmapped": [...]}``
- ``arrays.safetensors``: for the dataset at position ``i`` of ``datasets``:
  ``{i}/scores`` and ``{i}/seconds`` (float64 ``[n_runs, max_epochs]``, NaN after
  the end) and ``{i}/lengths`` (int64 ``[n_runs]``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from hubtune.core.metafeatures import DatasetMetaFeatures
from hubtune.metadata.errors import MetadataError, UnmappedRun
from hubtune.metadata.layouts.common import read_json
from hubtune.metadata.metadataset import MetaDataset
from hubtune.metadata.runs import DatasetRuns
from hubtune.space.config import Config, ConfigError

FORMAT = "hubtune-metadata"
VERSION = 1
MANIFEST = "metadata.json"
ARRAYS = "arrays.safetensors"


def is_native(directory: Path) -> bool:
    """Whether ``directory`` holds hubtune's own format."""
    if not (directory / MANIFEST).is_file():
        return False
    if (directory / ARRAYS).is_file():
        return True
    try:
        with open(directory / MANIFEST, encoding="utf-8") as fh:
            head = fh.read(200)
    except OSError:
        return False
    return FORMAT in head


def save_native(meta: MetaDataset, directory: Path) -> None:
    """Write ``meta`` into ``directory`` (created if needed; existing files are replaced)."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, np.ndarray] = {}
    entries = []
    for i, name in enumerate(meta.datasets):
        runs = meta[name]
        tensors[f"{i}/scores"] = np.ascontiguousarray(runs.scores, dtype=np.float64)
        tensors[f"{i}/seconds"] = np.ascontiguousarray(runs.seconds, dtype=np.float64)
        tensors[f"{i}/lengths"] = np.ascontiguousarray(runs.lengths, dtype=np.int64)
        entries.append(
            {
                "name": name,
                "run_ids": runs.run_ids,
                "configs": [c.to_dict() for c in runs.configs],
                "meta_features": None if runs.meta_features is None else runs.meta_features.to_dict(),
                **({} if runs.schedule_epochs is None else {"schedule_epochs": runs.schedule_epochs}),
                **({"provenance": meta.provenance[name]} if name in meta.provenance else {}),
            }
        )
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "max_epochs": meta.max_epochs,
        "datasets": entries,
        "unmapped": [u.to_dict() for u in meta.unmapped],
    }
    save_file(tensors, str(directory / ARRAYS), metadata={"format": FORMAT, "version": str(VERSION)})
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest), encoding="utf-8")  # "format" first
    tmp.replace(directory / MANIFEST)


def load_native(directory: Path) -> MetaDataset:
    """Read a directory written by :func:`save_native`."""
    path = directory / MANIFEST
    manifest = read_json(path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise MetadataError(f"{path}: not a hubtune meta-dataset (no \"format\": \"{FORMAT}\")")
    if manifest.get("version") != VERSION:
        raise MetadataError(f"{path}: format version {manifest.get('version')!r} is not supported (need {VERSION})")
    try:
        arrays = load_file(str(directory / ARRAYS))
    except FileNotFoundError:
        raise MetadataError(f"{directory / ARRAYS}: file not found") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise MetadataError(f"{directory / ARRAYS}: cannot read safetensors ({exc})") from None
    try:
        parts = []
        provenance = {}
        for i, entry in enumerate(manifest["datasets"]):
            name = entry["name"]
            try:
                configs = [Config.from_dict(c) for c in entry["configs"]]
            except ConfigError as exc:
                raise MetadataError(f"{path}: dataset {name!r}: invalid config ({exc})") from None
            mf = entry.get("meta_features")
            if isinstance(entry.get("provenance"), dict):
                provenance[name] = entry["provenance"]
            parts.append(
                DatasetRuns(
                    name,
                    entry["run_ids"],
                    configs,
                    _array(arrays, f"{i}/scores", directory),
                    _array(arrays, f"{i}/seconds", directory),
                    _array(arrays, f"{i}/lengths", directory),
                    None if mf is None else DatasetMetaFeatures.from_dict(mf),
                    entry.get("schedule_epochs"),
                )
            )
        unmapped = [UnmappedRun.from_dict(u) for u in manifest.get("unmapped", [])]
        return MetaDataset(parts, unmapped, int(manifest["max_epochs"]), provenance)
    except (KeyError, TypeError) as exc:
        raise MetadataError(f"{path}: malformed manifest (missing or wrong entry {exc})") from None


def _array(arrays: dict[str, np.ndarray], key: str, directory: Path) -> np.ndarray:
    if key not in arrays:
        raise MetadataError(f"{directory / ARRAYS}: missing tensor {key!r}")
    return arrays[key]
