"""The budgeted, crash-safe search loop: ask -> advance -> tell, journaled.

:class:`SearchLoop` is independent of what carries the steps out: the real
trainer for ``hubtune run``, or the tabular simulator in tests. It keeps

- a wall-clock budget covering everything (training, evaluation, checkpoint
  I/O, the optimizer's own time), summed across crashes and resumes;
- the journal (:mod:`hubtune.search.journal`) of every decision and result;
- a snapshot of the optimizer's JSON state after every ask and tell
  (``optimizer_state.json``, written atomically), from which a resumed run
  continues exactly: results that reached the journal after the snapshot are
  told again, and steps that were running are redone from their checkpoint
  (:mod:`hubtune.search.recovery`).

What runs the steps is an :class:`~hubtune.search.executor.Executor`: in this
process, one at a time (the default), or on several Ray workers at once
(:mod:`hubtune.search.raypool`). With several workers the loop is asynchronous:
whenever a worker is free the optimizer is asked for the next step (it never
proposes a trial that is still running), and results are told as they arrive.
A step whose worker died is re-queued and continues from its last checkpoint.

The loop reads the time from a :mod:`clock <hubtune.search.clock>`: the wall
clock for a real run, or a simulated clock that a
:class:`~hubtune.search.simexec.SimExecutor` advances by each step's simulated
seconds (``hubtune bench`` replays every method through this same loop, with
``out=None``: a null journal and no snapshots, nothing written to disk).

The budget is a contract for every optimizer (:mod:`hubtune.search.budget`):
before a step starts, the loop estimates its likely duration from the run's
own measurements; a step that does not fit is shortened to the epochs that
fit, or declined (told back to the optimizer, which proposes something
else), and the loop stops when nothing fits any more. Time for the final
export is kept back from the search (``export_allowance``).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from hubtune.protocol.codec import result_to_dict, step_to_dict
from hubtune.protocol.steps import Evaluator, Optimizer, Step, StepResult
from hubtune.search.budget import BudgetGuard, Verdict, export_allowance, nothing_fits
from hubtune.search.clock import Clock, WallClock
from hubtune.search.executor import Completion, Executor, InlineExecutor
from hubtune.search.incumbent import Incumbent, LoopOutcome
from hubtune.search.journal import Journal, NullJournal
from hubtune.search.recovery import WorkerLosses, resume_session
from hubtune.search.snapshot import write_snapshot

__all__ = ["Allowance", "ChargeHook", "EventHook", "Incumbent", "LoopOutcome", "SearchLoop"]

EventHook = Callable[[str, dict[str, Any]], None]
ChargeHook = Callable[[str, Step | None, StepResult | None, float], None]
"""``(kind, step, result, seconds)``: the optimizer spent ``seconds`` on an ``"ask"``
(``step`` is what it proposed, maybe ``None``) or a ``"tell"`` (of ``result``)."""
Allowance = float | Callable[[list[StepResult]], float] | None


class SearchLoop:
    """Run an optimizer against an evaluator within a budget, journaling everything.

    Args:
        out: the run folder (journal and optimizer snapshot live here); ``None``:
            nothing is written (a null journal, no snapshots; cannot be resumed).
        optimizer: any :class:`~hubtune.protocol.steps.Optimizer`.
        evaluator: any :class:`~hubtune.protocol.steps.Evaluator`.
        budget: seconds for the whole search (all sessions together).
        settings: JSON-compatible run settings, journaled at every start.
        on_event: called with (event, payload) for display/logging.
        after_result: called after each told result (e.g. checkpoint GC).
        max_steps: stop asking after this many steps (redone steps included).
        max_consecutive_failures: stop asking after this many failed results in a row.
        executor: runs the steps; default: ``evaluator`` in this process, one at a time.
        max_worker_losses: a step whose worker died this many times is recorded as failed.
        clock: where the time comes from (default: the wall clock).
        budget_rules: check every step against the remaining budget
            (:class:`~hubtune.search.budget.BudgetGuard`); ``False``: start whatever
            the optimizer proposes while any budget is left.
        guard: the guard to use (default: ``BudgetGuard()``).
        export_allowance: seconds kept back from the search for the final export,
            or a function of the results so far (default:
            :func:`~hubtune.search.budget.export_allowance`); ``None``: nothing.
        on_charge: called with ``(kind, step, result, seconds)`` after every ask and tell.
    """

    SNAPSHOT = "optimizer_state.json"

    def __init__(
        self,
        out: str | Path | None,
        optimizer: Optimizer,
        evaluator: Evaluator,
        budget: float,
        settings: dict[str, Any] | None = None,
        on_event: EventHook | None = None,
        after_result: Callable[[StepResult, Incumbent], None] | None = None,
        max_steps: int | None = None,
        max_consecutive_failures: int = 10,
        executor: Executor | None = None,
        max_worker_losses: int = 3,
        clock: Clock | None = None,
        budget_rules: bool = True,
        guard: BudgetGuard | None = None,
        export_allowance: Allowance = export_allowance,
        on_charge: ChargeHook | None = None,
    ) -> None:
        self.durable = out is not None
        self.out = Path(out) if out is not None else Path(".")
        if self.durable:
            self.out.mkdir(parents=True, exist_ok=True)
        self.clock: Clock = clock if clock is not None else WallClock()
        self.guard: BudgetGuard | None = (guard or BudgetGuard()) if budget_rules else None
        self.export_allowance = export_allowance if budget_rules else None
        self.on_charge = on_charge
        self._reserve = 0.0
        self._predicted: dict[str, float | None] = {}
        self._carry: dict[str, StepResult] = {}  # probes whose rest is running
        self.optimizer = optimizer
        self.evaluator = evaluator
        self.budget = float(budget)
        self.settings = settings or {}
        self.on_event = on_event or (lambda _e, _p: None)
        self._listening = on_event is not None
        self.after_result = after_result
        self.max_steps = max_steps
        self.max_consecutive_failures = max_consecutive_failures
        self.executor: Executor = executor if executor is not None else InlineExecutor(evaluator)
        self.losses = WorkerLosses(max_worker_losses)
        self.journal = Journal(self.out / "journal.jsonl") if self.durable else NullJournal()
        self.incumbent = Incumbent()
        self.results: list[StepResult] = []
        self._pending: dict[str, Step] = {}
        self._prior_elapsed = 0.0
        self._t0 = self.clock.now()
        self._clock_fixed = False
        self.recovered: list[str] = []  # what a resume repaired (told at start)

    # ------------------------------------------------------------- clock
    def start_clock(self, t0: float) -> None:
        """Count this session's time from ``t0`` (a reading of the loop's clock: a
        ``time.monotonic()`` value on the wall clock), e.g. to charge data loading
        and setup that happened before :meth:`run`."""
        self._t0 = t0
        self._clock_fixed = True

    def elapsed(self) -> float:
        """Seconds of budget used so far (earlier sessions included)."""
        return self._prior_elapsed + (self.clock.now() - self._t0)

    def budget_left(self) -> float:
        """Seconds of budget left (never negative)."""
        return max(0.0, self.budget - self.elapsed())

    def reserve(self) -> float:
        """Seconds kept back from the search for the export (see ``export_allowance``)."""
        return self._reserve

    def left_for_steps(self) -> float:
        """Seconds a new step may take: the budget left minus the export's allowance."""
        return max(0.0, self.budget - self.elapsed() - self._reserve)

    def _update_reserve(self) -> None:
        allowance = self.export_allowance
        if allowance is None:
            self._reserve = 0.0
        elif callable(allowance):
            self._reserve = max(0.0, float(allowance(self.results)))
        else:
            self._reserve = max(0.0, float(allowance))

    # --------------------------------------------------------- snapshots
    def _snapshot(self) -> None:
        if self.durable:
            write_snapshot(self.out / self.SNAPSHOT, len(self.results), self._pending.values(),
                           self.optimizer)

    def _resume(self) -> list[Step]:
        """Rebuild state from the run folder (:mod:`~hubtune.search.recovery`); returns steps to redo."""
        state = resume_session(self.journal, self.out / self.SNAPSHOT, self.optimizer)
        self._prior_elapsed, self._pending = state.elapsed, state.pending
        self.recovered += state.recovered
        for res in state.results:
            self.results.append(res)
            self.incumbent.update(res, at=0.0)
            if self.guard is not None:
                self.guard.observe(res)
        return list(self._pending.values())

    # -------------------------------------------------------------- run
    def running_trials(self) -> set[str]:
        """Trial ids of the steps asked for and not finished yet (never evict their checkpoints)."""
        return set(self._pending)

    def _ask(self) -> Step | None:
        """The optimizer's next step (its time charged to the clock)."""
        with self.clock.charged() as charge:
            step = self.optimizer.ask(budget_left=self.left_for_steps())
        if self.on_charge is not None:
            self.on_charge("ask", step, None, charge.seconds)
        return step

    def _tell(self, result: StepResult) -> None:
        with self.clock.charged() as charge:
            self.optimizer.tell(result)
        if self.on_charge is not None:
            self.on_charge("tell", result.step, result, charge.seconds)

    def _complete(self, done: Completion) -> None:
        """A step's result arrived: finish it, or first continue a probe (see ``budget``)."""
        result = done.result
        assert result is not None
        carried = self._carry.pop(result.trial_id, None)
        if carried is not None:  # the rest of a probed step: the optimizer hears of both at once
            assert self.guard is not None
            self.guard.observe(result, self._predicted.pop(result.trial_id, None))
            merged = StepResult(result.step, carried.records + result.records, result.status,
                                result.reason, carried.seconds + result.seconds)
            self._finish(merged, done, observed=True)
            return
        if (self.guard is not None and result.step.info.get("probe") and result.status == "ok"
                and result.records):
            self.guard.observe(result, self._predicted.pop(result.trial_id, None))
            if not self._continue_probe(result):
                info = {k: v for k, v in result.step.info.items() if k != "probe"}
                result.step = replace(result.step, info=info)  # as shortened: no room for more
                self._finish(result, done, observed=True)
            return
        self._finish(result, done)

    def _continue_probe(self, probe: StepResult) -> bool:
        """Start the rest of a probed step if it fits (now that its epoch is measured)."""
        assert self.guard is not None
        asked = int(probe.step.info["shortened_from"])
        info = {k: v for k, v in probe.step.info.items() if k not in ("probe", "shortened_from")}
        if self._why_stop(0) is not None or self.executor.free_slots() < 1:
            return False
        verdict = self.guard.vet(replace(probe.step, to_epoch=asked, info=info),
                                 self.left_for_steps())
        if verdict.action == "decline":
            return False
        step = verdict.step
        self._carry[step.trial_id] = probe
        self._predicted[step.trial_id] = verdict.raw
        self._pending[step.trial_id] = step
        if self.durable:
            self.journal.append("note", what="probe", **result_to_dict(probe))
            self.journal.append("ask", step=step_to_dict(step))
        self._snapshot()
        self._submit(step)
        return True

    def _finish(self, result: StepResult, done: Completion | None = None,
                observed: bool = False) -> None:
        self._pending.pop(result.trial_id, None)
        asked = result.step.info.get("shortened_from")
        if asked is not None and result.status == "ok" and not result.step.info.get("probe"):
            # Shortened to the epochs that fit: the budget leaves no room for more.
            result.status = "ended"
            result.reason = f"shortened to fit the budget (asked for epoch {asked})"
        if self.durable:
            extra: dict[str, Any] = {}
            if done is not None:
                extra = {"worker": done.worker, "started": done.started,
                         "finished": done.finished, **done.where}
            self.journal.append("result", **result_to_dict(result), **extra)
        self.results.append(result)
        if self.guard is not None:
            if not observed:
                self.guard.observe(result, self._predicted.pop(result.trial_id, None))
            self._update_reserve()
        improved = self.incumbent.update(result, at=self.elapsed())
        self._tell(result)
        self._snapshot()
        if self.after_result is not None:
            self.after_result(result, self.incumbent)
        if self._listening:
            self.on_event("result", {"result": result, "incumbent": self.incumbent, "improved": improved,
             "elapsed": self.elapsed(), "budget": self.budget,
             "worker": done.worker if done is not None else 0})

    def unmeasured_reserve(self) -> float:
        """Extra seconds kept back while no evaluation has been measured (5% of the budget):
        the export's allowance is then a guess, and the first step must leave room for it."""
        measured = any(r.eval_seconds > 0 for res in self.results for r in res.records)
        return 0.0 if measured else 0.05 * self.budget

    def deadline_grace(self) -> float:
        """Seconds past the budget a step may run before the trainer abandons it (1%)."""
        return 0.01 * self.budget

    def _submit(self, step: Step) -> None:
        if isinstance(self.clock, WallClock) and math.isfinite(self.budget):
            # The trainer keeps this deadline itself: no epoch starts that would pass it,
            # and a first epoch still running at it is abandoned (the budget is a promise
            # even for a step no estimate could foresee).
            # A copy carries it: the optimizer's step (and ``info``) are never modified.
            step = replace(step, info={**step.info, "stop_at": (
                time.time() + self.left_for_steps() + self.deadline_grace()
                - self.unmeasured_reserve())})
        worker = self.executor.submit(step)
        if self._listening:
            self.on_event("step", {"step": step, "worker": worker, "elapsed": self.elapsed(),
                                   "budget": self.budget})

    def _lost(self, done: Completion, queue: deque[Step]) -> None:
        """A worker died mid-step: re-queue the step (or give up on it after repeated losses)."""
        losses = self.losses.record(done.step)
        self.journal.append("note", what="worker_lost", step=step_to_dict(done.step),
                            worker=done.worker, error=done.error, losses=losses, **done.where)
        give_up = self.losses.give_up(losses)
        self.on_event("requeue", {"step": done.step, "worker": done.worker, "error": done.error,
                                  "losses": losses, "requeued": not give_up,
                                  "elapsed": self.elapsed(), "budget": self.budget})
        if give_up:
            self._finish(WorkerLosses.failed(done, losses), done)
        else:
            queue.appendleft(done.step)  # first in line: it continues from its checkpoint

    def _consecutive_failures(self) -> int:
        n = 0
        for res in reversed(self.results):
            if res.status != "failed":
                break
            n += 1
        return n

    def _why_stop(self, steps: int) -> str | None:
        """Why no further step may be asked for now (None: ask)."""
        failing = self._consecutive_failures()
        if failing >= self.max_consecutive_failures:
            return f"{failing} candidates failed in a row (last: {self.results[-1].reason})"
        if self.max_steps is not None and steps >= self.max_steps:
            return "max_steps"
        if self.guard is None:
            return "budget" if self.budget_left() <= 0 else None
        left = self.left_for_steps()
        if left <= 0 or nothing_fits(left, self.guard.cheapest, self.guard.margin()):
            return "budget"
        return None

    def _decline(self, verdict: Verdict) -> None:
        """Tell the optimizer that ``verdict.step`` will not run (it does not fit the budget).

        An optimizer with a ``decline(step, reason)`` method is told through it;
        any other gets a result with no epochs, status ``failed``, reason ``declined: ...``.
        """
        assert self.guard is not None
        self.guard.declines += 1
        step, left = verdict.step, self.left_for_steps()
        if self.durable:
            self.journal.append("note", what="declined", step=step_to_dict(step),
                                predicted_seconds=verdict.predicted, left=left, why=verdict.why)
        self.on_event("declined", {"step": step, "predicted": verdict.predicted, "left": left,
                                   "why": verdict.why, "elapsed": self.elapsed(),
                                   "budget": self.budget})
        decline = getattr(self.optimizer, "decline", None)
        if callable(decline):
            with self.clock.charged():
                decline(step, verdict.why)
        else:
            self._tell(StepResult(step, [], status="failed", reason=f"declined: {verdict.why}"))
        self._snapshot()

    def _vet(self, step: Step) -> Step | None:
        """The step to start for the optimizer's ``step`` (maybe shortened), or None if declined."""
        if self.guard is None:
            return step
        verdict = self.guard.vet(step, self.left_for_steps())
        if verdict.action == "decline":
            self._decline(verdict)
            return None
        self.guard.declines = 0
        self._predicted[step.trial_id] = verdict.raw
        if verdict.action == "shorten" and self.durable:
            self.journal.append("note", what="shortened", trial_id=step.trial_id,
                                asked_epoch=step.to_epoch, to_epoch=verdict.step.to_epoch,
                                predicted_seconds=verdict.predicted, left=self.left_for_steps())
        return verdict.step

    def _fill(self, queue: deque[Step], steps: int, may_ask: bool) -> tuple[int, str | None]:
        """Start steps on free slots: re-queued ones first, then (if ``may_ask``) the optimizer's.

        Returns the number of steps counted so far and why asking stopped (None: it did not).
        """
        while self.executor.free_slots() > 0:
            if queue:
                step = queue.popleft()
                if self.left_for_steps() <= 0:
                    # Interrupted, but the budget is spent: told as failed, not redone.
                    self._finish(StepResult(
                        step=step, records=[], status="failed",
                        reason="interrupted, and not redone: the budget was spent"))
                    continue
                if self.durable:
                    self.journal.append("note", what="redo", step=step_to_dict(step))
                self._submit(step)
                continue
            if not may_ask:
                return steps, None
            why = self._why_stop(steps)
            if why is not None:
                return steps, why
            if self.guard is not None and not self.guard.may_start_beside(
                    len(self.executor.running())):
                return steps, None  # nothing measured yet: one step at a time
            step = self._ask()
            if step is None:
                # With steps still running the optimizer may have more once they report.
                if self.executor.running():
                    return steps, None
                # Right after declines: what is left was declined, the budget ended the search.
                return steps, ("budget" if self.guard is not None and self.guard.declines
                               else "exhausted")
            vetted = self._vet(step)
            if vetted is None:
                assert self.guard is not None
                if self.guard.declines >= self.guard.max_declines:
                    return steps, "budget"
                continue
            step = vetted
            self._pending[step.trial_id] = step
            if self.durable:
                self.journal.append("ask", step=step_to_dict(step))
            self._snapshot()
            self._submit(step)
            steps += 1
        return steps, None

    def run(self) -> LoopOutcome:
        """Run (or resume) the search until the budget or the candidates are spent.

        Steps that were running when an earlier session died are redone first.
        Once no further step may start (budget spent, nothing left to propose),
        the steps still running are waited for, and their results kept.
        """
        resumed = self.durable and self.journal.path.exists()
        redo = self._resume() if resumed else []
        if not self._clock_fixed:
            self._t0 = self.clock.now()
        self._update_reserve()
        # ``setup``: this session's seconds before its start event (process start-up,
        # data loading), which the budget charges too (replay adds it back).
        entry = self.journal.append("start", settings=self.settings, resumed=resumed,
                                    workers=self.executor.slots,
                                    setup=round(max(0.0, self.clock.now() - self._t0), 3))
        self.journal.start_heartbeat(entry["t"])
        for msg in self.recovered:
            self.journal.append("note", what="recovered", message=msg)
        self.on_event("start", {"resumed": resumed, "redo": len(redo),
                                "recovered": list(self.recovered),
                                "workers": self.executor.slots,
                                "elapsed": self.elapsed(), "budget": self.budget})
        queue: deque[Step] = deque(redo)
        steps = len(redo)
        why: str | None = None
        draining = False
        while True:
            steps, stopped = self._fill(queue, steps, may_ask=why is None)
            why = why or stopped
            running = self.executor.running()
            if not running:
                break
            if why is not None and not draining and not queue:
                draining = True
                if self.durable:
                    self.journal.append("note", what="drain", why=why,
                                        running=[step_to_dict(s) for s in running.values()])
                self.on_event("drain", {"why": why, "running": dict(running),
                                        "elapsed": self.elapsed(), "budget": self.budget})
            for done in self.executor.wait():
                if done.lost:
                    self._lost(done, queue)
                else:
                    assert done.result is not None
                    self._complete(done)
        why = why or "exhausted"
        elapsed = self.elapsed()
        self.journal.append("end", why=why, elapsed=elapsed)
        self.journal.stop_heartbeat()
        self.on_event("end", {"why": why, "elapsed": elapsed, "budget": self.budget})
        return LoopOutcome(why, elapsed, steps, self.results, self.incumbent)

    def advance_outside_search(self, step: Step) -> StepResult | None:
        """Carry out ``step`` on the executor without telling the optimizer (e.g. the
        incumbent's final epochs after the search); ``None`` if its worker died."""
        self.executor.submit(step)
        while True:
            for done in self.executor.wait():
                if done.step == step:
                    return done.result
