"""A trial's folder besides its checkpoint: identity checks, the per-epoch records file, its lock, divergence marks."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from hubtune.core.records import EpochRecord
from hubtune.finetune.runtime import TrainerError, data_fingerprint
from hubtune.space.config import Config

RECORDS_FILE = "records.jsonl"
DIVERGED_FILE = "diverged.json"
LOCK_FILE = ".lock"


def trial_identity(config: Config, max_epochs: int, seed: int, pretrained: bool, data: Any) -> dict[str, Any]:
    """The settings a trial's checkpoint records and every later step must repeat."""
    return {
        "config": config.to_dict(),
        "max_epochs": max_epochs,
        "seed": seed,
        "pretrained": pretrained,
        "data": data_fingerprint(data),
    }


def check_identity(state: dict[str, Any], mine: dict[str, Any], workdir: Path) -> None:
    """Raise :class:`TrainerError` unless checkpoint ``state`` has the settings ``mine``."""
    for key, value in mine.items():
        theirs = state.get(key)
        if key == "config":
            theirs = Config.from_dict(theirs).to_dict() if theirs else None
        if theirs != value:
            what = {
                "config": "a different configuration",
                "max_epochs": f"max_epochs={theirs}, not {value}",
                "seed": f"seed={theirs}, not {value}",
                "pretrained": f"pretrained={theirs}, not {value}",
                "data": "different data",
            }[key]
            raise TrainerError(
                f"the checkpoint in {workdir} was trained with {what}; "
                f"a trial's settings cannot change between steps"
            )


# ------------------------------------------------------------------ records
def read_records(workdir: str | Path) -> list[EpochRecord]:
    """The records of every epoch a trial directory holds (from ``records.jsonl``)."""
    path = Path(workdir) / RECORDS_FILE
    if not path.exists():
        return []
    return [EpochRecord.from_dict(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def _sync_records_file(workdir: Path, records: list[EpochRecord]) -> None:
    """Make ``records.jsonl`` list exactly ``records`` (after a crash it may not)."""
    path = workdir / RECORDS_FILE
    text = "".join(json.dumps(r.to_dict()) + "\n" for r in records)
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _append_records(workdir: Path, records: list[EpochRecord]) -> None:
    with open(workdir / RECORDS_FILE, "a") as fh:
        for r in records:
            fh.write(json.dumps(r.to_dict()) + "\n")


# ------------------------------------------------------------------ advance


@contextlib.contextmanager
def trial_lock(workdir: Path):
    """Hold an exclusive lock on a trial directory while training it.

    Two processes must never train one trial at once (their checkpoint writes
    would interleave): for example a Ray worker of a killed driver that is still
    finishing its epoch while the resumed run redoes the same step. The second
    one waits here until the first is done or dead (the kernel releases a dead
    process's lock). Advisory ``flock``; a no-op where ``fcntl`` is missing.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(workdir / LOCK_FILE, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read_diverged(workdir: Path) -> tuple[str, int] | None:
    """(reason, last good epoch) if the trial in ``workdir`` diverged earlier."""
    path = workdir / DIVERGED_FILE
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    return str(info.get("reason", "diverged")), int(info.get("last_good_epoch", 0))


def _write_diverged(workdir: Path, reason: str, epoch: int) -> None:
    path = workdir / DIVERGED_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"reason": reason, "last_good_epoch": epoch}))
    tmp.replace(path)
