"""A meta-dataset: recorded finetuning runs of many datasets, sliced by dataset in O(1)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from hubtune.core.metafeatures import DatasetMetaFeatures
from hubtune.core.records import EpochRecord
from hubtune.metadata.errors import MetadataError, UnmappedRun
from hubtune.metadata.runs import DatasetRuns
from hubtune.space.config import Config

log = logging.getLogger("hubtune.metadata")


class MetaDataset:
    """Runs of many datasets: ``meta["APL"]`` is a :class:`DatasetRuns`.

    All datasets share one array width, :attr:`max_epochs`. Runs the loader
    could not map into a :class:`Config` are kept in :attr:`unmapped` with the
    reason, never dropped silently. :attr:`provenance` maps a dataset name to
    where its runs came from when the source says so (run folders converted by
    ``hubtune.metagen.runfolder``: the data's fingerprints, source and
    the run folders); meta-training records it so that a search can refuse
    data the surrogate was trained on.

    Example:
        >>> from hubtune.metadata import load_metadata
        >>> meta = load_metadata("../shared/metadata/quicktune-extended")  # doctest: +SKIP
        >>> train = meta.without(["APL"]); test = meta["APL"]               # doctest: +SKIP
    """

    def __init__(
        self,
        runs: Mapping[str, DatasetRuns] | Iterable[DatasetRuns] = (),
        unmapped: Sequence[UnmappedRun] = (),
        max_epochs: int | None = None,
        provenance: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        items = list(runs.values()) if isinstance(runs, Mapping) else list(runs)
        by_name: dict[str, DatasetRuns] = {}
        for r in items:
            if not isinstance(r, DatasetRuns):
                raise TypeError(f"expected DatasetRuns, got {type(r).__name__}")
            if r.dataset in by_name:
                raise MetadataError(f"dataset {r.dataset!r} appears twice")
            by_name[r.dataset] = r
        width = max((r.max_epochs for r in items), default=0)
        if max_epochs is not None:
            if max_epochs < width:
                raise MetadataError(f"max_epochs={max_epochs} is below the longest array width {width}")
            width = max_epochs
        self.max_epochs: int = width
        self._runs: dict[str, DatasetRuns] = {
            name: by_name[name].widened(width) for name in sorted(by_name)
        }
        self.unmapped: list[UnmappedRun] = list(unmapped)
        self.provenance: dict[str, dict[str, Any]] = {
            name: dict(p) for name, p in sorted((provenance or {}).items()) if name in self._runs
        }

    # ------------------------------------------------------------- access
    @property
    def datasets(self) -> list[str]:
        """Dataset names, sorted."""
        return list(self._runs)

    def __getitem__(self, dataset: str) -> DatasetRuns:
        try:
            return self._runs[dataset]
        except KeyError:
            raise KeyError(
                f"dataset {dataset!r} is not in this meta-dataset (it has: {', '.join(self._runs) or 'none'})"
            ) from None

    def __contains__(self, dataset: object) -> bool:
        return dataset in self._runs

    def __iter__(self) -> Iterator[str]:
        return iter(self._runs)

    def __len__(self) -> int:
        return len(self._runs)

    @property
    def n_runs(self) -> int:
        """Total number of (mapped) runs over all datasets."""
        return sum(len(r) for r in self._runs.values())

    def models(self) -> list[str]:
        """Sorted names of the models appearing in any run's config."""
        return sorted({c.model for r in self._runs.values() for c in r.configs})

    def meta_features(self) -> dict[str, DatasetMetaFeatures | None]:
        """Each dataset's meta-features (``None`` where the source had none)."""
        return {name: r.meta_features for name, r in self._runs.items()}

    def __repr__(self) -> str:
        return (
            f"MetaDataset(datasets={len(self)}, runs={self.n_runs}, max_epochs={self.max_epochs}, "
            f"unmapped={len(self.unmapped)})"
        )

    # ------------------------------------------------------------ slicing
    def _check_names(self, datasets: Iterable[str], what: str) -> list[str]:
        if isinstance(datasets, str):
            datasets = [datasets]
        names = list(datasets)
        missing = [d for d in names if d not in self._runs]
        if missing:
            raise MetadataError(f"{what}: unknown dataset(s) {', '.join(map(repr, missing))}")
        return names

    def only(self, datasets: Iterable[str]) -> MetaDataset:
        """A meta-dataset with just these datasets (unknown names raise :class:`MetadataError`)."""
        keep = set(self._check_names(datasets, "only"))
        return MetaDataset(
            [r for n, r in self._runs.items() if n in keep],
            [u for u in self.unmapped if u.dataset in keep],
            self.max_epochs,
            self.provenance,
        )

    def without(self, datasets: Iterable[str]) -> MetaDataset:
        """A meta-dataset without these datasets (unknown names raise :class:`MetadataError`)."""
        drop = set(self._check_names(datasets, "without"))
        return MetaDataset(
            [r for n, r in self._runs.items() if n not in drop],
            [u for u in self.unmapped if u.dataset not in drop],
            self.max_epochs,
            self.provenance,
        )

    # ----------------------------------------------------------- building
    def append(
        self,
        dataset: str,
        run_id: str,
        config: Config,
        records: Sequence[EpochRecord],
        meta_features: DatasetMetaFeatures | None = None,
        schedule_epochs: int | None = None,
    ) -> None:
        """Add one run recorded by the trainer (epochs 1..n in order).

        ``schedule_epochs``: the epochs its learning-rate schedule spanned
        (:attr:`DatasetRuns.schedule_epochs`); one value per dataset.

        The per-epoch seconds stored are ``train_seconds + eval_seconds`` (the
        same quantity the published tables record; checkpoint I/O is left out).
        A new dataset takes ``meta_features``; for a known one they must match
        (or be ``None``).
        """
        if not isinstance(config, Config):
            raise MetadataError(f"run {run_id!r}: config must be a hubtune Config")
        if not records:
            raise MetadataError(f"run {run_id!r} on {dataset!r}: no epoch records")
        epochs = [r.epoch for r in records]
        if epochs != list(range(1, len(records) + 1)):
            raise MetadataError(
                f"run {run_id!r} on {dataset!r}: records must be epochs 1..{len(records)} in order, got {epochs}"
            )
        scores = [float(r.score) for r in records]
        seconds = [float(r.train_seconds) + float(r.eval_seconds) for r in records]
        existing = self._runs.get(dataset)
        if existing is not None:
            _check_joins(existing, run_id, meta_features, schedule_epochs)
        width = max(self.max_epochs, len(records))
        new = DatasetRuns.from_curves(
            dataset, [str(run_id)], [config], [scores], [seconds],
            meta_features if existing is None else (existing.meta_features or meta_features),
            max_epochs=width, schedule_epochs=schedule_epochs,
        )
        if existing is not None:
            old = existing.widened(width)
            new = DatasetRuns(
                dataset,
                old.run_ids + new.run_ids,
                old.configs + new.configs,
                np.vstack([old.scores, new.scores]),
                np.vstack([old.seconds, new.seconds]),
                np.concatenate([old.lengths, new.lengths]),
                new.meta_features,
                schedule_epochs,
            )
        if width > self.max_epochs:
            self._runs = {n: r.widened(width) for n, r in self._runs.items()}
            self.max_epochs = width
        self._runs[dataset] = new
        self._runs = dict(sorted(self._runs.items()))

    @classmethod
    def merge(cls, *parts: MetaDataset) -> MetaDataset:
        """One meta-dataset holding all datasets of ``parts`` (names must not clash)."""
        seen: dict[str, int] = {}
        for i, part in enumerate(parts):
            for name in part.datasets:
                if name in seen:
                    raise MetadataError(
                        f"cannot merge: dataset {name!r} is in part {seen[name]} and part {i}; "
                        f"rename or drop it first (MetaDataset.without)"
                    )
                seen[name] = i
        width = max((p.max_epochs for p in parts), default=0)
        runs = [p[name] for p in parts for name in p.datasets]
        unmapped = [u for p in parts for u in p.unmapped]
        provenance = {n: v for p in parts for n, v in p.provenance.items()}
        return cls(runs, unmapped, width, provenance)


def _check_joins(existing: DatasetRuns, run_id: str, meta_features: DatasetMetaFeatures | None,
                 schedule_epochs: int | None) -> None:
    """A new run may join a recorded dataset: a new id, the same meta-features and schedule."""
    dataset = existing.dataset
    if str(run_id) in existing.run_ids:
        raise MetadataError(f"run {run_id!r} is already recorded for dataset {dataset!r}")
    if (
        meta_features is not None
        and existing.meta_features is not None
        and existing.meta_features != meta_features
    ):
        raise MetadataError(
            f"dataset {dataset!r}: meta-features {meta_features} differ from the recorded "
            f"{existing.meta_features}"
        )
    if existing.schedule_epochs != schedule_epochs:
        raise MetadataError(
            f"dataset {dataset!r}: runs with {schedule_epochs} schedule epochs cannot join "
            f"runs recorded with {existing.schedule_epochs}"
        )
