"""A simulated executor: steps run on ``N`` simulated workers of a :class:`SimClock`.

:class:`SimExecutor` carries a step out at once (e.g. with the tabular
:class:`~hubtune.bench.simulator.SimulatedEvaluator`, which knows what the step
costs) and holds its result until the simulated clock reaches the step's end:
a step submitted at ``t`` finishes at ``t + result.seconds``. :meth:`wait`
moves the clock to the earliest end among the running steps and hands back
that completion (ties in submission order). With several slots this is the
asynchronous behaviour of real workers: a short step submitted after a long
one finishes first, and the loop refills the freed slot at that time.

With a ``deadline`` (the budget of a benchmark run), steps that would end
after it are cut off there: when the earliest end is past the deadline the
clock stops at the deadline and every running step is dropped (:attr:`cut`);
their epochs that ended before the deadline still show in :attr:`submitted`.
"""

from __future__ import annotations

import heapq

from hubtune.protocol.steps import Evaluator, Step, StepResult
from hubtune.search.clock import SimClock
from hubtune.search.executor import Completion


class PendingTrialError(ValueError):
    """A trial was submitted while a step of it is still running."""


class SimExecutor:
    """``workers`` simulated slots on ``clock``; each step runs ``evaluator.advance`` at submit.

    Attributes:
        submitted: ``(start time, result)`` of every step, in submission order
            (steps still running included; their epochs end at ``start +`` the
            cumulative ``record.seconds``).
    """

    def __init__(self, evaluator: Evaluator, clock: SimClock, workers: int = 1,
                 deadline: float | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.evaluator = evaluator
        self.clock = clock
        self.slots = int(workers)
        self._heap: list[tuple[float, int, int, float, Step, StepResult]] = []
        self._free = list(range(self.slots - 1, -1, -1))  # pop() gives the lowest slot
        self._seq = 0
        self.submitted: list[tuple[float, StepResult]] = []
        self.deadline = deadline
        self.cut: list[Step] = []
        """Steps dropped at the deadline (they had not finished)."""

    def free_slots(self) -> int:
        return len(self._free)

    def submit(self, step: Step) -> int:
        """Run ``step`` now (simulated) and hold its result until its end time."""
        if not self._free:
            raise RuntimeError("no free slot: wait() for a running step first")
        if any(entry[4].trial_id == step.trial_id for entry in self._heap):
            raise PendingTrialError(f"trial {step.trial_id!r} was proposed while it is pending")
        result = self.evaluator.advance(step)
        start = self.clock.now()
        slot = self._free.pop()
        self._seq += 1
        heapq.heappush(self._heap, (start + result.seconds, self._seq, slot, start, step, result))
        self.submitted.append((start, result))
        return slot

    def running(self) -> dict[int, Step]:
        return {entry[2]: entry[4] for entry in self._heap}

    def wait(self) -> list[Completion]:
        """Advance the clock to the earliest end among the running steps; return that step.

        Past the deadline: nothing is returned and no step runs any more.
        """
        if not self._heap:
            return []
        if self.deadline is not None and self._heap[0][0] > self.deadline:
            self.clock.advance_to(self.deadline)
            self.cut.extend(entry[4] for entry in sorted(self._heap))
            self.close()
            return []
        end, _, slot, start, step, result = heapq.heappop(self._heap)
        self.clock.advance_to(end)
        self._free.append(slot)
        self._free.sort(reverse=True)
        return [Completion(step, slot, result, started=start, finished=end)]

    def close(self) -> None:
        self._heap.clear()
        self._free = list(range(self.slots - 1, -1, -1))
