"""All recorded runs of one dataset, as numpy arrays that are fast to slice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hubtune.core.metafeatures import DatasetMetaFeatures
from hubtune.metadata.errors import MetadataError
from hubtune.space.config import Config

SCORE_TOLERANCE = 1e-6
"""Scores this far outside [0, 1] (rounding in the source files) are clipped, not rejected."""


@dataclass(eq=False)
class DatasetRuns:
    """The learning curves and configurations of every run on one dataset.

    Row ``i`` describes run ``run_ids[i]`` trained with ``configs[i]``. Column
    ``j`` is epoch ``j + 1``. Entries after a run's last recorded epoch
    (``j >= lengths[i]``) are NaN.

    Attributes:
        dataset: the dataset's name.
        run_ids: one id per run (unique within the dataset).
        configs: one :class:`~hubtune.space.config.Config` per run.
        scores: float64 ``[n_runs, max_epochs]``, validation top-1 as a fraction in [0, 1].
        seconds: float64 ``[n_runs, max_epochs]``, per-epoch training plus evaluation seconds.
        lengths: int64 ``[n_runs]``, number of recorded epochs of each run.
        meta_features: the dataset's meta-features, or ``None`` where the source had none.
        schedule_epochs: how many epochs the runs' learning-rate schedules spanned, when
            known and not the source's usual length (``hubtune metadata generate``
            records its ``--max-epochs``); ``None`` for the Quick-Tune tables, whose
            runs follow 50-epoch schedules. Meta-training presents epoch ``e`` as
            epoch ``e * 50 / schedule_epochs``, as Quick-Tune does on ``hubtune run``.
        best: highest score over all epochs of all runs held (NaN when empty).
        worst: lowest score over all epochs of all runs held (NaN when empty).

    The arrays are read-only: a ``DatasetRuns`` may be shared between
    meta-datasets (``only``, ``without``, ``merge`` do not copy).

    Example:
        >>> runs = DatasetRuns.from_curves(
        ...     "toy", ["a"], [Config(model="resnet18")], [[0.5, 0.7]], [[10.0, 11.0]])
        >>> runs.lengths.tolist(), runs.best
        ([2], 0.7)
    """

    dataset: str
    run_ids: list[str]
    configs: list[Config]
    scores: np.ndarray
    seconds: np.ndarray
    lengths: np.ndarray
    meta_features: DatasetMetaFeatures | None = None
    schedule_epochs: int | None = None
    best: float = field(init=False)
    worst: float = field(init=False)

    def __post_init__(self) -> None:
        self.run_ids = [str(r) for r in self.run_ids]
        self.configs = list(self.configs)
        self.scores = np.array(self.scores, dtype=np.float64, ndmin=2, copy=True)
        self.seconds = np.array(self.seconds, dtype=np.float64, ndmin=2, copy=True)
        self.lengths = np.array(self.lengths, dtype=np.int64, ndmin=1, copy=True)
        self._validate()
        np.clip(self.scores, 0.0, 1.0, out=self.scores)  # NaN stays NaN
        for arr in (self.scores, self.seconds, self.lengths):
            arr.setflags(write=False)
        if self.scores.size and len(self):
            self.best = float(np.nanmax(self.scores))
            self.worst = float(np.nanmin(self.scores))
        else:
            self.best = self.worst = float("nan")
        self._index: dict[str, int] | None = None

    def _validate(self) -> None:
        n = len(self.run_ids)
        where = f"dataset {self.dataset!r}"
        se = self.schedule_epochs
        if se is not None and (isinstance(se, bool) or not isinstance(se, int) or se < 1):
            raise MetadataError(f"{where}: schedule_epochs must be a positive integer or None, got {se!r}")
        if len(self.configs) != n:
            raise MetadataError(f"{where}: {n} run ids but {len(self.configs)} configs")
        if not all(isinstance(c, Config) for c in self.configs):
            raise MetadataError(f"{where}: configs must be hubtune Config objects")
        if len(set(self.run_ids)) != n:
            dup = sorted({r for r in self.run_ids if self.run_ids.count(r) > 1})[:5]
            raise MetadataError(f"{where}: duplicate run ids {dup}")
        if n == 0:  # allow an empty (n, 0) or (0, w) array
            self.scores = self.scores.reshape(0, self.scores.shape[-1] if self.scores.ndim == 2 else 0)
            self.seconds = self.seconds.reshape(self.scores.shape)
            self.lengths = self.lengths.reshape(0)
            return
        if self.scores.ndim != 2 or self.scores.shape[0] != n:
            raise MetadataError(f"{where}: scores must have shape [{n}, max_epochs], got {self.scores.shape}")
        if self.seconds.shape != self.scores.shape:
            raise MetadataError(
                f"{where}: seconds shape {self.seconds.shape} differs from scores shape {self.scores.shape}"
            )
        if self.lengths.shape != (n,):
            raise MetadataError(f"{where}: lengths must have shape [{n}], got {self.lengths.shape}")
        width = self.scores.shape[1]
        if (self.lengths < 1).any() or (self.lengths > width).any():
            raise MetadataError(f"{where}: every run needs between 1 and {width} recorded epochs")
        recorded = np.arange(width)[None, :] < self.lengths[:, None]
        for name, arr in (("scores", self.scores), ("seconds", self.seconds)):
            if not np.isfinite(arr[recorded]).all():
                row = int(np.argmax(~np.isfinite(np.where(recorded, arr, 0.0)).all(axis=1)))
                raise MetadataError(f"{where}: run {self.run_ids[row]!r} has non-finite {name} within its curve")
            if not np.isnan(arr[~recorded]).all():
                raise MetadataError(f"{where}: {name} must be NaN after each run's last epoch")
        rec = self.scores[recorded]
        if rec.min() < -SCORE_TOLERANCE or rec.max() > 1 + SCORE_TOLERANCE:
            raise MetadataError(
                f"{where}: scores must be fractions in [0, 1], found {rec.min():.4g}..{rec.max():.4g}"
            )
        if self.seconds[recorded].min() < 0:
            raise MetadataError(f"{where}: per-epoch seconds must be >= 0")

    # ------------------------------------------------------------ building
    @classmethod
    def from_curves(
        cls,
        dataset: str,
        run_ids: Sequence[str],
        configs: Sequence[Config],
        scores: Sequence[Sequence[float]],
        seconds: Sequence[Sequence[float]],
        meta_features: DatasetMetaFeatures | None = None,
        max_epochs: int | None = None,
        schedule_epochs: int | None = None,
    ) -> DatasetRuns:
        """Build from ragged per-run curves (scores as fractions, seconds per epoch).

        ``max_epochs`` sets the array width (default: the longest curve).
        """
        lengths = np.array([len(s) for s in scores], dtype=np.int64)
        if len(seconds) != len(scores) or any(len(a) != len(b) for a, b in zip(scores, seconds, strict=False)):
            raise MetadataError(f"dataset {dataset!r}: each run needs as many seconds as scores")
        width = int(lengths.max()) if len(lengths) else 0
        if max_epochs is not None:
            if max_epochs < width:
                raise MetadataError(
                    f"dataset {dataset!r}: a run has {width} epochs, more than max_epochs={max_epochs}"
                )
            width = max_epochs
        s = np.full((len(lengths), width), np.nan)
        c = np.full((len(lengths), width), np.nan)
        for i, (a, b) in enumerate(zip(scores, seconds, strict=True)):
            s[i, : len(a)] = a
            c[i, : len(b)] = b
        return cls(dataset, list(run_ids), list(configs), s, c, lengths, meta_features,
                   schedule_epochs)

    # ------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.run_ids)

    @property
    def max_epochs(self) -> int:
        """Width of the score/seconds arrays (epochs)."""
        return int(self.scores.shape[1])

    def index(self, run_id: str) -> int:
        """Row of ``run_id`` (``KeyError`` naming the dataset when absent)."""
        if self._index is None:
            self._index = {r: i for i, r in enumerate(self.run_ids)}
        try:
            return self._index[str(run_id)]
        except KeyError:
            raise KeyError(f"run {run_id!r} is not in dataset {self.dataset!r}") from None

    def curve(self, i: int) -> np.ndarray:
        """Recorded scores of run ``i`` (no NaN padding)."""
        return self.scores[i, : self.lengths[i]]

    def cost(self, i: int) -> np.ndarray:
        """Recorded per-epoch seconds of run ``i`` (no NaN padding)."""
        return self.seconds[i, : self.lengths[i]]

    def subset(self, idx: Any) -> DatasetRuns:
        """The runs selected by ``idx`` (integer indices, a boolean mask or a slice).

        ``best``/``worst`` of the result describe the selected runs only.
        """
        rows = np.arange(len(self))[idx]
        rows = np.atleast_1d(rows)
        return DatasetRuns(
            self.dataset,
            [self.run_ids[i] for i in rows],
            [self.configs[i] for i in rows],
            self.scores[rows],
            self.seconds[rows],
            self.lengths[rows],
            self.meta_features,
            self.schedule_epochs,
        )

    def widened(self, max_epochs: int) -> DatasetRuns:
        """The same runs with arrays padded (NaN) to ``max_epochs`` columns."""
        width = self.max_epochs
        if max_epochs == width:
            return self
        if max_epochs < width:
            raise MetadataError(f"dataset {self.dataset!r}: cannot narrow {width} epochs to {max_epochs}")
        pad = np.full((len(self), max_epochs - width), np.nan)
        return DatasetRuns(
            self.dataset,
            self.run_ids,
            self.configs,
            np.hstack([self.scores, pad]),
            np.hstack([self.seconds, pad]),
            self.lengths,
            self.meta_features,
            self.schedule_epochs,
        )

    def __repr__(self) -> str:
        return (
            f"DatasetRuns({self.dataset!r}, runs={len(self)}, max_epochs={self.max_epochs}, "
            f"best={self.best:.4f}, worst={self.worst:.4f})"
        )
