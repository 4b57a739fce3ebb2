"""``hubtune run`` folders as a meta-dataset: every trial's learning curve on the user's hardware.

A run folder (``run.json`` + ``journal.jsonl``, finished or interrupted) becomes
one dataset of hubtune's own format (docs/from-runs.md):

- one run per trial of the journal: its ``Config`` (from the trial's steps), per
  epoch the validation top-1 (``val_metrics["top1"]``, else the record's score)
  and ``train_seconds + eval_seconds``, epochs ``1..n`` in order (an epoch
  journaled twice keeps its first record; a curve stops at a gap or at a
  non-finite score);
- the dataset's meta-features and fingerprint from ``data-cache/<key>.json``
  (the run's decoded data), ``schedule_epochs`` = the run's ``--max-epochs``;
- trials without any usable epoch (failed, interrupted mid-step) are kept in
  ``unmapped`` with their reason.

The journal is read as :class:`hubtune.search.journal.Journal` reads it: a torn
last line (the run was killed mid-write) is skipped, so an interrupted folder
converts as it stands. Several folders of the same data (same fingerprint and
``--max-epochs``) merge into one dataset; run ids are ``<folder>/<trial id>``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubtune.core.metafeatures import DatasetMetaFeatures
from hubtune.data.naming import data_source, dataset_base_name  # noqa: F401  (data_source: re-exported)
from hubtune.metadata.errors import MetadataError, UnmappedRun
from hubtune.metadata.loader import register_layout
from hubtune.metadata.metadataset import MetaDataset
from hubtune.metadata.runs import DatasetRuns
from hubtune.space.config import Config, ConfigError

log = logging.getLogger("hubtune.metadata")

RUN_SETTINGS = "run.json"
JOURNAL = "journal.jsonl"
DATA_CACHE = "data-cache"


def is_run_folder(directory: Path) -> bool:
    """Whether ``directory`` is a ``hubtune run`` folder (``run.json`` and ``journal.jsonl``)."""
    return (directory / RUN_SETTINGS).is_file() and (directory / JOURNAL).is_file()


@dataclass
class TrialCurve:
    """One trial of a run folder as the journal records it."""

    trial_id: str
    config: Config | None = None
    scores: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    status: str = "interrupted"
    reason: str | None = None
    config_error: str | None = None
    cut: bool = False  # a gap or a non-finite score ended the curve


@dataclass
class RunFolder:
    """What one run folder holds for meta-training (see the module docstring)."""

    path: Path
    settings: dict[str, Any]
    name: str
    fingerprint: str | None
    source: str | None
    meta_features: DatasetMetaFeatures | None
    schedule_epochs: int
    trials: list[TrialCurve]
    ended: bool

    @property
    def group_key(self) -> tuple[str, int]:
        """Runs with equal keys (same data, same schedule length) form one dataset."""
        return (self.fingerprint or f"path:{self.path.resolve()}", self.schedule_epochs)


def _read_settings(directory: Path) -> dict[str, Any]:
    path = directory / RUN_SETTINGS
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MetadataError(f"{path}: cannot read the run's settings ({exc})") from None
    if not isinstance(settings, dict) or "data" not in settings:
        raise MetadataError(f"{path}: not a hubtune run.json (no \"data\")")
    return settings


def _trial_fingerprints(directory: Path) -> list[str]:
    out = []
    for ck in sorted((directory / "trials").glob("*/checkpoint.json")):
        try:
            fp = json.loads(ck.read_text()).get("data")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(fp, str) and fp:
            out.append(fp)
    return out


def _data_cache(directory: Path) -> tuple[str | None, DatasetMetaFeatures | None]:
    """The run's data fingerprint and meta-features from its decoded-data cache."""
    entries = {}
    for path in sorted((directory / DATA_CACHE).glob("*.json")):
        try:
            meta = json.loads(path.read_text())
            entries[str(meta["fingerprint"])] = DatasetMetaFeatures.from_dict(meta["meta_features"])
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("%s: unreadable data-cache entry, ignored", path)
    if len(entries) > 1:  # pick the one the trials trained on
        used = [fp for fp in _trial_fingerprints(directory) if fp in entries]
        if used:
            entries = {used[0]: entries[used[0]]}
    if len(entries) == 1:
        fp, mf = next(iter(entries.items()))
        return fp, mf
    used = _trial_fingerprints(directory)
    return (used[0] if used else None), None


def _data_from_source(settings: dict[str, Any]) -> tuple[str | None, DatasetMetaFeatures | None]:
    """Fingerprint and meta-features by loading the run's data again (no cache left)."""
    from hubtune.data import load_dataset

    try:
        ds = load_dataset(settings["data"], image_size=int(settings.get("image_size") or 64),
                          subset=settings.get("subset"), seed=int(settings.get("seed") or 0),
                          download=False)
    except Exception as exc:  # the data may be gone; the curves are still usable
        log.warning("cannot load %s again for its meta-features: %s", settings["data"], exc)
        return None, None
    return ds.fingerprint, ds.meta_features


def _score(rec: dict[str, Any]) -> float:
    vm = rec.get("val_metrics")
    if isinstance(vm, dict) and vm.get("top1") is not None:
        return float(vm["top1"])
    return float(rec.get("score", math.nan))


def read_trials(directory: Path) -> tuple[list[TrialCurve], bool]:
    """Every trial of ``directory``'s journal in order of first appearance, and whether it ended."""
    from hubtune.search.journal import Journal

    trials: dict[str, TrialCurve] = {}
    ended = False

    def trial(step: dict[str, Any]) -> TrialCurve:
        tid = str(step["trial_id"])
        t = trials.get(tid)
        if t is None:
            t = trials[tid] = TrialCurve(tid)
        if t.config is None and t.config_error is None:
            try:
                t.config = Config.from_dict(step["config"])
            except (ConfigError, KeyError, TypeError, ValueError) as exc:
                t.config_error = f"invalid configuration: {exc}"
        return t

    for e in Journal(directory / JOURNAL):
        kind = e.get("event")
        try:
            if kind == "ask":
                trial(e["step"])
            elif kind == "result":
                t = trial(e["step"])
                # A failed step is not always the trial's end (a step abandoned at the
                # deadline is continued by a resumed run): later epochs still count.
                for rec in [] if t.cut else (e.get("records") or []):
                    epoch = int(rec["epoch"])
                    if epoch in t.epochs:
                        continue
                    if epoch != len(t.epochs) + 1:
                        t.cut, t.reason = True, f"epoch {epoch} follows epoch {len(t.epochs)}; curve cut"
                        break
                    score = _score(rec)
                    if not math.isfinite(score):
                        t.cut, t.status, t.reason = True, "diverged", f"non-finite score at epoch {epoch}"
                        break
                    t.epochs.append(epoch)
                    t.scores.append(score)
                    t.seconds.append(float(rec.get("train_seconds") or 0.0)
                                     + float(rec.get("eval_seconds") or 0.0))
                status = str(e.get("status") or "ok")
                if status in ("failed", "diverged"):
                    t.status, t.reason = status, e.get("reason") or t.reason or status
                elif not t.cut:
                    t.status = status
            elif kind == "end":
                ended = True
            elif kind == "start":
                ended = False
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("%s: skipping a malformed %s event (%s)", directory / JOURNAL, kind, exc)
    return list(trials.values()), ended


def read_run_folder(directory: str | Path) -> RunFolder:
    """Read one run folder (finished or interrupted); raises :class:`MetadataError` if it is none."""
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise MetadataError(f"{path}: no such run folder")
    if not is_run_folder(path):
        raise MetadataError(f"{path}: not a hubtune run folder (expected {RUN_SETTINGS} and {JOURNAL})")
    settings = _read_settings(path)
    fingerprint, mf = _data_cache(path)
    if mf is None:
        fp2, mf = _data_from_source(settings)
        fingerprint = fingerprint or fp2
    if mf is None:
        log.warning("%s: no meta-features (no data-cache and the data cannot be loaded)", path)
    trials, ended = read_trials(path)
    seed = int(settings.get("seed") or 0)
    return RunFolder(
        path=path,
        settings=settings,
        name=dataset_base_name(settings["data"], settings.get("subset"), seed),
        fingerprint=fingerprint,
        source=data_source(settings["data"], base=path.parent),
        meta_features=mf,
        schedule_epochs=int(settings.get("max_epochs") or 10),
        trials=trials,
        ended=ended,
    )


def _unique_names(folders: Sequence[RunFolder]) -> dict[tuple[str, int], str]:
    groups: dict[tuple[str, int], RunFolder] = {}
    for f in folders:
        groups.setdefault(f.group_key, f)
    names: dict[tuple[str, int], str] = {}
    by_base: dict[str, list[tuple[str, int]]] = {}
    for key, f in groups.items():
        by_base.setdefault(f.name, []).append(key)
    for base, keys in by_base.items():
        if len(keys) == 1:
            names[keys[0]] = base
            continue
        epochs = {k[1] for k in keys}
        for k in keys:
            name = base + (f"-e{k[1]}" if len(epochs) > 1 else "")
            if sum(1 for j in keys if j[1] == k[1]) > 1:
                name += f"-{k[0].removeprefix('path:')[-8:]}"
            names[k] = name
    return names


def load_run_folders(directories: Iterable[str | Path]) -> MetaDataset:
    """Convert run folders into one meta-dataset (docs/from-runs.md).

    Folders of the same data and ``--max-epochs`` merge into one dataset. The
    result's :attr:`MetaDataset.provenance` holds, per dataset, the data's
    ``fingerprints``, ``sources`` and the ``run_dirs`` it came from.

    Raises:
        MetadataError: a path is not a run folder, the same folder is given twice,
            or no folder has any usable epoch.
    """
    folders = _read_folders(directories)
    names = _unique_names(folders)
    curves: dict[str, dict[str, Any]] = {}
    unmapped: list[UnmappedRun] = []
    prefixes: dict[str, set[str]] = {}
    for f in folders:
        ds = names[f.group_key]
        entry = curves.setdefault(ds, {"ids": [], "configs": [], "scores": [], "seconds": [],
                                       "mf": f.meta_features, "schedule": f.schedule_epochs,
                                       "prov": {"fingerprints": [], "sources": [], "run_dirs": []}})
        if entry["mf"] is None:
            entry["mf"] = f.meta_features
        prov = entry["prov"]
        for key, value in (("fingerprints", f.fingerprint), ("sources", f.source),
                           ("run_dirs", str(f.path.resolve()))):
            if value and value not in prov[key]:
                prov[key].append(value)
        taken = prefixes.setdefault(ds, set())
        prefix, k = f.path.resolve().name, 1
        while prefix in taken:  # two folders of one dataset with the same name
            k += 1
            prefix = f"{f.path.resolve().name}-{k}"
        taken.add(prefix)
        _add_trials(entry, f, ds, prefix, unmapped)
    parts = []
    provenance = {}
    for ds, e in curves.items():
        provenance[ds] = e["prov"]
        if not e["ids"]:
            log.warning("dataset %s: no trial of %s has a recorded epoch", ds,
                        ", ".join(e["prov"]["run_dirs"]))
            continue
        parts.append(DatasetRuns.from_curves(ds, e["ids"], e["configs"], e["scores"], e["seconds"],
                                             e["mf"], schedule_epochs=e["schedule"]))
    if not parts:
        raise MetadataError("no run folder has a trial with a recorded epoch: "
                            + ", ".join(str(f.path) for f in folders))
    if unmapped:
        log.info("%d trial(s) of the run folders have no usable epoch (see unmapped)", len(unmapped))
    meta = MetaDataset(parts, unmapped, provenance=provenance)
    return meta


def _read_folders(directories: Iterable[str | Path]) -> list[RunFolder]:
    """Each directory read as a run folder (one folder may not be given twice)."""
    folders: list[RunFolder] = []
    seen: set[Path] = set()
    for d in directories:
        f = read_run_folder(d)
        real = f.path.resolve()
        if real in seen:
            raise MetadataError(f"{f.path}: run folder given twice")
        seen.add(real)
        folders.append(f)
    if not folders:
        raise MetadataError("no run folders given")
    return folders


def _add_trials(entry: dict[str, Any], f: RunFolder, ds: str, prefix: str,
                unmapped: list[UnmappedRun]) -> None:
    """Add the curves of ``f``'s trials to ``entry`` (ids ``prefix/trial``); the trials
    without a configuration or a finished epoch go to ``unmapped`` with the reason."""
    for t in f.trials:
        run_id = f"{prefix}/{t.trial_id}"
        if t.config is None:
            unmapped.append(UnmappedRun(ds, run_id, t.config_error or "no configuration journaled"))
            continue
        if not t.scores:
            why = (f"{t.status}: {t.reason}" if t.status in ("failed", "diverged") and t.reason
                   else t.status if t.status in ("failed", "diverged")
                   else "interrupted before its first epoch finished")
            unmapped.append(UnmappedRun(ds, run_id, why))
            continue
        entry["ids"].append(run_id)
        entry["configs"].append(t.config)
        entry["scores"].append(t.scores)
        entry["seconds"].append(t.seconds)


def load_run_folder(directory: Path) -> MetaDataset:
    """One run folder as a meta-dataset (the layout ``load_metadata`` detects)."""
    return load_run_folders([directory])


register_layout("run", is_run_folder, load_run_folder)
