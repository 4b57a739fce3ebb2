"""Clocks for :class:`~hubtune.search.loop.SearchLoop`: the wall clock or a simulated one.

The loop reads the time only through a clock, so the same loop runs a real
search (``hubtune run``: :class:`WallClock`) and a replay of a tabular
meta-dataset (``hubtune bench``: :class:`SimClock`, advanced by each step's
simulated seconds by :class:`~hubtune.search.simexec.SimExecutor`).

Both clocks time the optimizer's own work (every ``ask`` and ``tell``) through
:meth:`Clock.charged`; on the wall clock that time passes anyway, the
simulated clock adds it (measured with its ``timer``), so an expensive
optimizer pays for its thinking in a replay too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

OverheadClock = Literal["process", "wall", "none"]


@dataclass
class Charge:
    """Seconds one timed piece of optimizer work took (set when its block ends)."""

    seconds: float = 0.0


@runtime_checkable
class Clock(Protocol):
    """What the loop reads the time from."""

    def now(self) -> float:
        """Seconds on this clock (any origin; only differences matter)."""
        ...

    def charged(self) -> AbstractContextManager[Charge]:
        """A context manager timing optimizer work; yields a :class:`Charge`."""
        ...


def overhead_timer(kind: OverheadClock) -> Callable[[], float]:
    """The timer that measures optimizer work: process CPU time, wall time, or none (0)."""
    if kind == "process":
        return time.process_time
    if kind == "wall":
        return time.perf_counter
    if kind == "none":
        return lambda: 0.0
    raise ValueError(f"overhead clock must be 'process', 'wall' or 'none', got {kind!r}")


class _Timed:
    """Context manager: times its block with ``timer`` into a :class:`Charge`, then calls ``done``."""

    __slots__ = ("timer", "done", "box", "t0")

    def __init__(self, timer: Callable[[], float], done: Callable[[float], None] | None) -> None:
        self.timer, self.done = timer, done
        self.box = Charge()
        self.t0 = 0.0

    def __enter__(self) -> Charge:
        self.t0 = self.timer()
        return self.box

    def __exit__(self, *exc: object) -> None:
        self.box.seconds = self.timer() - self.t0
        if self.done is not None:
            self.done(self.box.seconds)


class WallClock:
    """Real time (``time.monotonic``); optimizer work is timed but not added (it passed)."""

    def now(self) -> float:
        return time.monotonic()

    def charged(self) -> AbstractContextManager[Charge]:
        return _Timed(time.perf_counter, None)


class SimClock:
    """Simulated seconds: moved by :meth:`advance_to` and by the optimizer's timed work.

    Args:
        timer: what measures the optimizer's work (see :func:`overhead_timer`).
        start: the clock's initial reading.
    """

    def __init__(self, timer: Callable[[], float] | OverheadClock = "none",
                 start: float = 0.0) -> None:
        self.timer = overhead_timer(timer) if isinstance(timer, str) else timer
        self.t = float(start)

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass (ignored if negative)."""
        if seconds > 0:
            self.t += seconds

    def advance_to(self, t: float) -> None:
        """Move the clock to ``t`` (never backwards)."""
        if t > self.t:
            self.t = t

    def charged(self) -> AbstractContextManager[Charge]:
        return _Timed(self.timer, self.advance)
