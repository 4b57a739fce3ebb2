"""Append-only, fsync'd JSON-lines journal of a search: every decision and result.

The journal is the run's source of truth. After a crash (or Ctrl-C) the same
command replays it: finished steps are told to a fresh optimizer in their
original order, and a step that was running when the process died is redone
from its trial's last checkpoint.

Each line is one event: ``{"event": "...", "t": <unix time>, ...}``. Events:

- ``start``: a session began (``settings``; ``resumed`` is true on resume; ``setup``:
  the seconds the session spent before this event, start-up and data loading,
  charged to the budget).
- ``ask``: the optimizer proposed a step (``step`` with trial id, config, epoch, info).
- ``result``: a step finished (``step``, ``status``, ``reason``, ``records``, ``seconds``).
- ``note``: anything worth keeping (evicted checkpoints, retries).
- ``end``: the search loop ended (``why``, ``elapsed``).
- ``heartbeat``: the last sign of life of a session that died after its last
  event (read from ``heartbeat.json`` and journaled by the next session, with
  that session's time ``t``), so the budget charges the dead session's running
  time and not the downtime before the resume.

A torn last line (the process died mid-write) is ignored on read, and moved
aside by :meth:`Journal.repair` before a new session appends.
"""

from __future__ import annotations

import base64
import json
import os
import threading
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

    TORN = "journal.torn.jsonl"
    HEARTBEAT = "heartbeat.json"

    def repair(self) -> int:
        """Move a torn tail (last line without newline, or not valid JSON) aside.

        The bytes are appended (base64, with their offset) to ``journal.torn.jsonl``
        next to the journal, then the journal is truncated after its last good
        line, so the next event starts on a fresh line. Returns the bytes moved.
        """
        if not self.path.exists():
            return 0
        data = self.path.read_bytes()
        keep = len(data)
        while keep > 0:
            end = keep if data[:keep].endswith(b"\n") else None
            body = data[:keep].rstrip(b"\n") if end else data[:keep]
            start = body.rfind(b"\n") + 1
            line = body[start:]
            if end is not None and (not line.strip() or _parses(line)):
                break
            keep = start
        if keep == len(data):
            return 0
        torn = data[keep:]
        record = {"t": time.time(), "offset": keep, "length": len(torn),
                  "base64": base64.b64encode(torn).decode("ascii"),
                  "text": torn.decode("utf-8", "replace")}
        with open(self.path.with_name(self.TORN), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        with open(self.path, "r+b") as fh:
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
        return len(torn)

    def fold_heartbeat(self) -> float:
        """Journal the last heartbeat of the session that died after its last event.

        Returns the seconds this adds to that session's time (0 if none).
        """
        try:
            beat = json.loads(self.path.with_name(self.HEARTBEAT).read_text())
            session, t = float(beat["session"]), float(beat["t"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0.0
        start, last = None, None
        for e in self:
            if e.get("event") == "start":
                start = float(e.get("t", 0.0))
            last = float(e.get("t", 0.0))
        if start is None or last is None or session != start or t <= last:
            return 0.0
        self.append("heartbeat", t=t, session=session)
        return t - last

    def start_heartbeat(self, session: float, interval: float = 2.0) -> None:
        """Rewrite ``heartbeat.json`` ({session, t}) every ``interval`` s until stopped."""
        self.stop_heartbeat()
        stop = threading.Event()
        path = self.path.with_name(self.HEARTBEAT)

        def beat() -> None:
            tmp = path.with_name(path.name + ".tmp")
            while True:
                tmp.write_text(json.dumps({"session": session, "t": time.time(),
                                           "pid": os.getpid()}))
                os.replace(tmp, path)
                if stop.wait(interval):
                    return

        thread = threading.Thread(target=beat, name="hubtune-heartbeat", daemon=True)
        self._beat = (stop, thread)
        thread.start()

    def stop_heartbeat(self) -> None:
        """Stop the heartbeat thread (if any)."""
        beat = getattr(self, "_beat", None)
        if beat is not None:
            beat[0].set()
            beat[1].join()
            self._beat = None

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
                    # A torn line; before torn tails were repaired, the next event
                    # could follow a fragment on the same line: recover it.
                    cut = line.rfind('{"event": ')
                    if cut > 0 and _parses(line[cut:].encode()):
                        yield json.loads(line[cut:])
                    continue

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """All events (of one kind, if given) in order."""
        return [e for e in self if kind is None or e.get("event") == kind]


def _parses(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line.decode("utf-8")), dict)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False


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
            elapsed += float(e.get("setup") or 0.0)  # start-up before the start event
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


class NullJournal(Journal):
    """A journal that keeps nothing: no file, no heartbeat (replays in memory, e.g. ``hubtune bench``).

    A loop with a null journal cannot be resumed; it is as fast as the loop itself.
    """

    def __init__(self) -> None:
        self.path = Path(os.devnull)

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Build the event (as :meth:`Journal.append` would) and drop it."""
        return {"event": event, "t": 0.0, **fields}

    def repair(self) -> int:
        return 0

    def fold_heartbeat(self) -> float:
        return 0.0

    def start_heartbeat(self, session: float, interval: float = 2.0) -> None:
        return None

    def stop_heartbeat(self) -> None:
        return None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(())
