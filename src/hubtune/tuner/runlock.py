"""Single writer per run folder: an exclusive ``flock`` on ``DIR/run.lock``.

The holder writes ``{"pid", "host", "started"}`` into the file. The kernel
releases a ``flock`` when its process dies (also on ``kill -9``), so a lock
file left by a dead run is simply taken over by the next one.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any


class RunLockedError(RuntimeError):
    """Another live process holds the run folder."""


class RunLock:
    """An exclusive lock on a run folder, held until :meth:`release` (or process exit)."""

    NAME = "run.lock"

    def __init__(self, out: str | Path) -> None:
        self.path = Path(out) / self.NAME
        self._fd: int | None = None
        self.previous: dict[str, Any] | None = None
        """Holder recorded by a dead process whose lock was taken over (None if none)."""

    def _read_holder(self, fd: int) -> dict[str, Any] | None:
        for _ in range(10):  # the holder may be between truncate and write
            os.lseek(fd, 0, os.SEEK_SET)
            raw = os.read(fd, 4096)
            try:
                data = json.loads(raw.decode("utf-8"))
                if isinstance(data, dict):
                    return data
            except (UnicodeDecodeError, json.JSONDecodeError):
                pass
            time.sleep(0.05)
        return None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunLockedError` naming the holder (pid, host)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read_holder(fd) or {}
            os.close(fd)
            raise RunLockedError(
                f"{self.path.parent} is in use by another hubtune run (pid "
                f"{holder.get('pid', '?')} on host {holder.get('host', '?')}, started "
                f"{holder.get('started', '?')}); wait for it to end or use another --out"
            ) from None
        self.previous = self._read_holder_once(fd)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    @staticmethod
    def _read_holder_once(fd: int) -> dict[str, Any] | None:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            data = json.loads(os.read(fd, 4096).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def release(self) -> None:
        """Empty the lock file and release the lock (an empty file means: not held)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
