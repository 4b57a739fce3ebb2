"""Executors: what carries out the steps :class:`~hubtune.search.loop.SearchLoop` decides on.

The loop asks the optimizer for a step whenever the executor has a free slot,
submits it, and waits for completions. One loop serves both cases:

- :class:`InlineExecutor`: one slot, the step runs in this process when the
  loop waits for it (the sequential ``hubtune run``; no Ray involved).
- :class:`hubtune.search.raypool.RayExecutor`: ``N`` slots, one Ray actor each,
  steps run concurrently on a local Ray instance or a cluster.

A :class:`Completion` either carries the step's result or says that the worker
running it was lost (its process died); the loop re-queues such a step, which
then continues from the trial's last checkpoint.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from hubtune.protocol.steps import Evaluator, Step, StepResult


@dataclass
class Completion:
    """A submitted step that is no longer running.

    Attributes:
        step: the step as submitted.
        worker: the slot (0-based) it ran on.
        result: its result, or ``None`` when the worker was lost mid-step.
        error: why the worker was lost (``result`` is ``None``).
        started: unix time the worker began the step (submission time if unknown).
        finished: unix time the step ended (or the loss was noticed).
        where: ``{"pid": ..., "host": ...}`` of the process that ran it, when known.
    """

    step: Step
    worker: int
    result: StepResult | None
    error: str | None = None
    started: float = 0.0
    finished: float = 0.0
    where: dict[str, Any] = field(default_factory=dict)

    @property
    def lost(self) -> bool:
        """True when the worker died before the step produced a result."""
        return self.result is None


@runtime_checkable
class Executor(Protocol):
    """Runs steps on a fixed number of worker slots."""

    slots: int
    """How many steps may run at once."""

    def free_slots(self) -> int:
        """Slots with no step running now."""
        ...

    def submit(self, step: Step) -> int:
        """Start ``step`` on a free slot; returns the slot's number."""
        ...

    def running(self) -> dict[int, Step]:
        """Slot -> step for every step submitted and not yet completed."""
        ...

    def wait(self) -> list[Completion]:
        """Block until at least one running step completes; return all that have."""
        ...

    def close(self) -> None:
        """Release the workers (a step still running is abandoned)."""
        ...


class InlineExecutor:
    """One slot; a submitted step runs in this process when :meth:`wait` is called.

    Args:
        evaluator: what advances the step (the real trainer, or a simulator).
    """

    slots = 1

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self._step: Step | None = None
        self._submitted = 0.0

    def free_slots(self) -> int:
        return 0 if self._step is not None else 1

    def submit(self, step: Step) -> int:
        if self._step is not None:
            raise RuntimeError("InlineExecutor runs one step at a time; wait() for it first")
        self._step = step
        self._submitted = time.time()
        return 0

    def running(self) -> dict[int, Step]:
        return {} if self._step is None else {0: self._step}

    def wait(self) -> list[Completion]:
        step, self._step = self._step, None
        if step is None:
            return []
        started = time.time()
        result = self.evaluator.advance(step)
        return [Completion(step, 0, result, started=started, finished=time.time(),
                           where={"pid": os.getpid(), "host": socket.gethostname()})]

    def close(self) -> None:
        self._step = None
