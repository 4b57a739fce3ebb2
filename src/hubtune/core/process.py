"""This process's age, so that a command's budget clock can start when the process did.

Example:
    >>> 0.0 <= seconds_since_process_start() < 3600 * 24 * 365
    True
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_command_started: float | None = None  # monotonic time of the process start, once marked


def seconds_since_process_start() -> float:
    """Seconds since this process started (interpreter start-up and imports included).

    Read from ``/proc`` on Linux; ``0.0`` where that is not available, so the caller
    then charges from the moment it asks.
    """
    try:
        stat = Path("/proc/self/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        start_ticks = int(fields[19])  # field 22 of proc(5); the first two are cut above
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


def mark_command_process() -> None:
    """Declare that this whole process is one command (called by the CLI's entry point)."""
    global _command_started
    _command_started = time.monotonic() - seconds_since_process_start()


def command_started() -> float:
    """``time.monotonic()`` value a command's budget clock starts from.

    The process start where :func:`mark_command_process` was called, else now.
    """
    return _command_started if _command_started is not None else time.monotonic()
