"""How the search loop recovers from what died: an earlier session, or a worker mid-step.

- A session killed at any moment is resumed from the run folder
  (:func:`resume_session`): the journal's torn last line is moved aside, the
  dead session is charged up to its last heartbeat, the optimizer is restored
  from its snapshot (:mod:`hubtune.search.snapshot`) and told the results that
  reached the journal after it, and the steps that were running are redone.
- A step whose worker died is re-queued and continues from its checkpoint;
  after ``limit`` losses of the same step it is recorded as failed
  (:class:`WorkerLosses`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hubtune.protocol.steps import Optimizer, Step, StepResult
from hubtune.search.executor import Completion
from hubtune.search.journal import Journal, replay
from hubtune.search.snapshot import restore_optimizer


@dataclass
class Resumed:
    """What an earlier session left: its seconds, results and running steps, and repairs."""

    elapsed: float = 0.0
    results: list[StepResult] = field(default_factory=list)
    pending: dict[str, Step] = field(default_factory=dict)  # running when it died: redo them
    recovered: list[str] = field(default_factory=list)  # what was repaired, in words


def resume_session(journal: Journal, snapshot: Path, optimizer: Optimizer) -> Resumed:
    """Repair the run folder's journal and bring ``optimizer`` up to date with it.

    The optimizer is loaded from ``snapshot`` and told each result the journal
    holds beyond what the snapshot had been told (a damaged snapshot: every result).
    """
    recovered = []
    torn = journal.repair()
    if torn:
        recovered.append(f"the journal's last line was torn: {torn} bytes moved to "
                         f"{journal.TORN}; the journal continues on a fresh line")
    journal.fold_heartbeat()  # charge a dead session up to its last heartbeat
    history = replay(journal)
    state = restore_optimizer(snapshot, optimizer, history)
    if state.problem:
        recovered.append(state.problem)
    for res in history.results[state.n_told:]:
        # Reached the journal after the last snapshot: tell it now.
        state.pending.pop(res.trial_id, None)
        optimizer.tell(res)
    return Resumed(history.elapsed, list(history.results), state.pending, recovered)


class WorkerLosses:
    """How often each step's worker died; the step is given up after ``limit`` losses."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._count: dict[tuple[str, int], int] = {}

    def record(self, step: Step) -> int:
        """Count one more loss of ``step``'s worker; returns the losses so far."""
        key = (step.trial_id, step.to_epoch)
        self._count[key] = self._count.get(key, 0) + 1
        return self._count[key]

    def give_up(self, losses: int) -> bool:
        """Whether a step lost ``losses`` times is recorded as failed instead of re-queued."""
        return losses >= self.limit

    @staticmethod
    def failed(done: Completion, losses: int) -> StepResult:
        """The result recorded for a step given up on."""
        return StepResult(done.step, [], status="failed",
                          reason=f"its worker died {losses} times (last: {done.error})",
                          seconds=max(0.0, done.finished - done.started))
