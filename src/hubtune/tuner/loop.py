"""The budgeted, crash-safe search loop: ask -> advance -> tell, journaled.

:class:`SearchLoop` is independent of what carries the steps out: the real
trainer for ``hubtune run``, or the tabular simulator in tests. It keeps

- a wall-clock budget covering everything (training, evaluation, checkpoint
  I/O, the optimizer's own time), summed across crashes and resumes;
- the journal (:mod:`hubtune.tuner.journal`) of every decision and result;
- a snapshot of the optimizer's JSON state after every ask and tell
  (``optimizer_state.json``, written atomically), from which a resumed run
  continues exactly: results that reached the journal after the snapshot are
  told again, and steps that were running are redone from their checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubtune.optim.protocol import Evaluator, Optimizer, Step, StepResult, step_prediction
from hubtune.tuner.journal import (
    Journal,
    replay,
    result_to_dict,
    step_from_dict,
    step_to_dict,
)

EventHook = Callable[[str, dict[str, Any]], None]


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` via a temporary file and ``os.replace`` (never torn)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass
class Incumbent:
    """The best validation score seen so far, and where it came from."""

    score: float = -math.inf
    trial_id: str | None = None
    epoch: int = 0
    config: dict[str, Any] | None = None
    time: float = 0.0

    def update(self, result: StepResult, at: float) -> bool:
        """Take ``result``'s best epoch if it beats the incumbent; True if it did."""
        improved = False
        for rec in result.records:
            if math.isfinite(rec.score) and rec.score > self.score:
                self.score = rec.score
                self.trial_id = result.trial_id
                self.epoch = rec.epoch
                self.config = result.step.config.to_dict()
                self.time = at
                improved = True
        return improved


@dataclass
class LoopOutcome:
    """How the loop ended."""

    why: str
    elapsed: float
    steps: int
    results: list[StepResult] = field(default_factory=list)
    incumbent: Incumbent = field(default_factory=Incumbent)


class SearchLoop:
    """Run an optimizer against an evaluator within a budget, journaling everything.

    Args:
        out: the run folder (journal and optimizer snapshot live here).
        optimizer: any :class:`~hubtune.optim.protocol.Optimizer`.
        evaluator: any :class:`~hubtune.optim.protocol.Evaluator`.
        budget: seconds for the whole search (all sessions together).
        settings: JSON-compatible run settings, journaled at every start.
        on_event: called with (event, payload) for display/logging.
        after_result: called after each told result (e.g. checkpoint GC).
    """

    SNAPSHOT = "optimizer_state.json"

    def __init__(
        self,
        out: str | Path,
        optimizer: Optimizer,
        evaluator: Evaluator,
        budget: float,
        settings: dict[str, Any] | None = None,
        on_event: EventHook | None = None,
        after_result: Callable[[StepResult, Incumbent], None] | None = None,
        max_steps: int | None = None,
        max_consecutive_failures: int = 10,
    ) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.optimizer = optimizer
        self.evaluator = evaluator
        self.budget = float(budget)
        self.settings = settings or {}
        self.on_event = on_event or (lambda _e, _p: None)
        self.after_result = after_result
        self.max_steps = max_steps
        self.max_consecutive_failures = max_consecutive_failures
        self.journal = Journal(self.out / "journal.jsonl")
        self.incumbent = Incumbent()
        self.results: list[StepResult] = []
        self._pending: dict[str, Step] = {}
        self._prior_elapsed = 0.0
        self._t0 = time.monotonic()
        self._clock_fixed = False

    # ------------------------------------------------------------- clock
    def start_clock(self, t0: float) -> None:
        """Count this session's time from ``t0`` (a ``time.monotonic()`` value), e.g.
        to charge data loading and setup that happened before :meth:`run`."""
        self._t0 = t0
        self._clock_fixed = True

    def elapsed(self) -> float:
        """Seconds of budget used so far (earlier sessions included)."""
        return self._prior_elapsed + (time.monotonic() - self._t0)

    def budget_left(self) -> float:
        """Seconds of budget left (never negative)."""
        return max(0.0, self.budget - self.elapsed())

    # --------------------------------------------------------- snapshots
    def _snapshot(self) -> None:
        write_json_atomic(
            self.out / self.SNAPSHOT,
            {
                "n_results": len(self.results),
                "pending": [step_to_dict(s) for s in self._pending.values()],
                "state": self.optimizer.state_dict(),
            },
        )

    def _restore(self) -> list[Step]:
        """Rebuild state from the journal + snapshot; returns steps to redo."""
        history = replay(self.journal)
        self._prior_elapsed = history.elapsed
        snap_path = self.out / self.SNAPSHOT
        n_told = 0
        redo: list[Step] = []
        if snap_path.exists():
            snap = json.loads(snap_path.read_text())
            self.optimizer.load_state_dict(snap["state"])
            n_told = int(snap["n_results"])
            self._pending = {
                s["trial_id"]: step_from_dict(s) for s in snap.get("pending", [])
            }
        for i, res in enumerate(history.results):
            self.results.append(res)
            self.incumbent.update(res, at=0.0)
            if i >= n_told:
                # Reached the journal after the last snapshot: tell it now.
                self._pending.pop(res.trial_id, None)
                self.optimizer.tell(res)
        redo = list(self._pending.values())
        return redo

    # -------------------------------------------------------------- run
    def _finish(self, result: StepResult) -> None:
        self._pending.pop(result.trial_id, None)
        self.journal.append("result", **result_to_dict(result))
        self.results.append(result)
        improved = self.incumbent.update(result, at=self.elapsed())
        self.optimizer.tell(result)
        self._snapshot()
        if self.after_result is not None:
            self.after_result(result, self.incumbent)
        self.on_event(
            "result",
            {"result": result, "incumbent": self.incumbent, "improved": improved,
             "elapsed": self.elapsed(), "budget": self.budget},
        )

    def _run_step(self, step: Step) -> None:
        self.on_event("step", {"step": step, "elapsed": self.elapsed(), "budget": self.budget})
        result = self.evaluator.advance(step)
        self._finish(result)

    def _consecutive_failures(self) -> int:
        n = 0
        for res in reversed(self.results):
            if res.status != "failed":
                break
            n += 1
        return n

    def run(self) -> LoopOutcome:
        """Run (or resume) the search until the budget or the candidates are spent."""
        resumed = self.journal.path.exists()
        redo = self._restore() if resumed else []
        if not self._clock_fixed:
            self._t0 = time.monotonic()
        self.journal.append("start", settings=self.settings, resumed=resumed)
        self.on_event("start", {"resumed": resumed, "redo": len(redo),
                                "elapsed": self.elapsed(), "budget": self.budget})
        steps = 0
        for step in redo:
            self.journal.append("note", what="redo", step=step_to_dict(step))
            self._run_step(step)
            steps += 1
        why = "budget"
        while True:
            failing = self._consecutive_failures()
            if failing >= self.max_consecutive_failures:
                last = self.results[-1]
                why = f"{failing} candidates failed in a row (last: {last.reason})"
                break
            if self.max_steps is not None and steps >= self.max_steps:
                why = "max_steps"
                break
            left = self.budget_left()
            if left <= 0:
                why = "budget"
                break
            step = self.optimizer.ask(budget_left=left)
            if step is None:
                why = "exhausted"
                break
            predicted = step_prediction(step, "seconds")
            if predicted is not None and predicted > self.budget_left():
                # Not worth starting: it would not finish within the budget.
                why = "budget"
                self.journal.append("note", what="declined", step=step_to_dict(step),
                                    predicted_seconds=predicted, left=self.budget_left())
                break
            self._pending[step.trial_id] = step
            self.journal.append("ask", step=step_to_dict(step))
            self._snapshot()
            self._run_step(step)
            steps += 1
        elapsed = self.elapsed()
        self.journal.append("end", why=why, elapsed=elapsed)
        self.on_event("end", {"why": why, "elapsed": elapsed, "budget": self.budget})
        return LoopOutcome(why, elapsed, steps, self.results, self.incumbent)
