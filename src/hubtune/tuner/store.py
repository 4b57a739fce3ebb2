"""Checkpoint store with a disk quota: paused trials' checkpoints, evicted least-promising first.

Each trial keeps its checkpoint in ``root/<trial_id>/``. When the store grows
past its quota, checkpoints of the trials least likely to be continued are
deleted first (lowest priority; by default lowest best validation score). The
incumbent's checkpoint and the checkpoints of running trials are never deleted.
A trial whose checkpoint was evicted can still be continued: it is retrained
from scratch to where it stood (schedules are prefix-exact, so the result is the
same, only slower), and the run's journal notes the eviction.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hubtune.core.units import parse_size


def dir_size(path: Path) -> int:
    """Bytes used by the regular files below ``path``."""
    if not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@dataclass
class Eviction:
    """A checkpoint that was deleted to stay within the quota."""

    trial_id: str
    bytes: int


class CheckpointStore:
    """Trial checkpoint folders under ``root``, kept within ``quota`` bytes."""

    CHECKPOINT_PREFIXES = ("checkpoint.json", "tensors-")
    """Files of a trial checkpoint (see :mod:`hubtune.finetune.checkpoint`); records stay."""

    def __init__(self, root: str | Path, quota: int | str = "10GB") -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.quota = parse_size(quota)

    def trial_dir(self, trial_id: str) -> Path:
        """Folder holding ``trial_id``'s checkpoint and records."""
        return self.root / trial_id

    def _checkpoint_paths(self, trial_id: str) -> list[Path]:
        d = self.trial_dir(trial_id)
        if not d.exists():
            return []
        return [p for p in d.iterdir() if p.name.startswith(self.CHECKPOINT_PREFIXES)]

    def has_checkpoint(self, trial_id: str) -> bool:
        """Whether ``trial_id`` still has a checkpoint on disk."""
        return bool(self._checkpoint_paths(trial_id))

    def usage(self) -> int:
        """Bytes used by all checkpoints."""
        return dir_size(self.root)

    def checkpoint_bytes(self, trial_id: str) -> int:
        """Bytes used by ``trial_id``'s checkpoint files."""
        total = 0
        for p in self._checkpoint_paths(trial_id):
            total += dir_size(p) if p.is_dir() else p.stat().st_size
        return total

    def enforce_quota(
        self,
        priority: Mapping[str, float],
        protected: Iterable[str],
    ) -> list[Eviction]:
        """Delete lowest-priority checkpoints until usage fits the quota.

        Args:
            priority: trial id -> how much it is worth keeping (higher keeps longer).
                Trials missing from it count as least valuable.
            protected: trial ids never evicted (the incumbent, running trials).
        """
        keep = set(protected)
        usage = self.usage()
        evicted: list[Eviction] = []
        if usage <= self.quota:
            return evicted
        trials = [d.name for d in self.root.iterdir() if d.is_dir() and d.name not in keep]
        trials.sort(key=lambda t: priority.get(t, float("-inf")))
        for trial_id in trials:
            if usage <= self.quota:
                break
            size = self.checkpoint_bytes(trial_id)
            if size == 0:
                continue
            # checkpoint.json (the commit point) goes first, so a crash mid-eviction
            # leaves "no checkpoint" rather than a checkpoint with missing tensors.
            paths = sorted(self._checkpoint_paths(trial_id), key=lambda q: q.suffix != ".json")
            for p in paths:
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
            usage -= size
            evicted.append(Eviction(trial_id, size))
        return evicted
