"""Append-only, fsync'd JSON-lines journal of a search: every decision and result.

The journal is the run's source of truth. After a crash (or Ctrl-C) the same
command replays it: finished steps are told to a fresh optimizer in their
original order, and a step that was running when the process died is redone
from its trial's last checkpoint.

Each line is one event: ``{"event": "...", "t": <unix time>, ...}``. Events:

- ``start``: a session began (``settings``; ``resumed`` is true on resume).
- ``ask``: the optimizer proposed a step (``step`` with trial id, config, epoch, info).
- ``result``: a step finished (``step``, ``status``, ``reason``, ``records``, ``seconds``).
- ``note``: anything worth keeping (evicted checkpoints, retries).
- ``end``: the search loop ended (``why``, ``elapsed``).

A torn last line (the process died mid-write) is ignored on read.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubtune.protocol.codec import result_from_dict, step_from_dict
from hubtune.protocol.steps import Step, StepResult


class Journal:
    """An append-only JSON-lines file; every append is flushed and fsync'd."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one event durably and return it."""
        entry = {"event": event, "t": time.time(), **fields}
        line = json.dumps(entry, allow_nan=True) + "\n"
        # Open/append/fsync per event: a few events per training step, so the
        # cost is negligible next to an epoch, and nothing is lost on a crash.
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        return entry

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    # Only the last line can be torn (append-only writes).
                    continue

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """All events (of one kind, if given) in order."""
        return [e for e in self if kind is None or e.get("event") == kind]


@dataclass
class Replay:
    """What a journal says happened: finished results, the interrupted step, time used."""

    results: list[StepResult]
    interrupted: list[Step]
    elapsed: float
    settings: dict[str, Any] | None
    ended: bool


def replay(journal: Journal) -> Replay:
    """Reconstruct the search's history from its journal.

    ``elapsed`` sums each session's time from its ``start`` to its last event, so
    the budget spans crashes and resumes. Steps asked but never finished are
    returned as ``interrupted`` (to be redone).
    """
    results: list[StepResult] = []
    pending: dict[str, Step] = {}
    elapsed = 0.0
    session_start: float | None = None
    last_t: float | None = None
    settings: dict[str, Any] | None = None
    ended = False
    for e in journal:
        kind = e.get("event")
        t = float(e.get("t", 0.0))
        if kind == "start":
            if session_start is not None and last_t is not None:
                elapsed += last_t - session_start
            session_start = t
            settings = settings or e.get("settings")
            ended = False
        elif kind == "ask":
            step = step_from_dict(e["step"])
            pending[step.trial_id] = step
        elif kind == "result":
            res = result_from_dict(e)
            pending.pop(res.trial_id, None)
            results.append(res)
        elif kind == "end":
            ended = True
        last_t = t
    if session_start is not None and last_t is not None:
        elapsed += last_t - session_start
    return Replay(results, list(pending.values()), elapsed, settings, ended)
