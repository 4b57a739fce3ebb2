"""Successive-halving methods with continuation: ASHA and Hyperband.

Both use epoch rungs ``1, 3, 9, 27, ..., max_epochs`` (``eta = 3``) and a
promotion always *continues* the trial from its checkpoint, so it only pays
for the extra epochs.

- :class:`ASHA` (Li et al., 2020, asynchronous successive halving): on every
  ``ask``, promote a trial that is in the top ``1/eta`` of its rung (counted
  over all results recorded at that rung) and not yet promoted, highest rung
  first; otherwise start a new random candidate at the lowest rung. When the
  candidates are used up, the best unfinished trial is continued to its next
  rung (so the budget is never left idle on a finite table).
- :class:`Hyperband` (Li et al., 2017): brackets ``s = s_max .. 0`` of
  synchronous successive halving, bracket ``s`` starting
  ``ceil((s_max + 1) / (s + 1) * eta**s)`` new candidates at rung
  ``s_max - s`` and keeping the best ``floor(n / eta)`` (at least 1) per rung;
  the bracket cycle repeats with fresh candidates, and when they are used up
  the best unfinished trial is continued, as in ASHA.
"""

from __future__ import annotations

import math
from typing import Any

from hubtune.optim.baselines import (
    DEFAULT_POOL_SIZE,
    PoolOptimizer,
    SuccessiveHalvingBracket,
    fidelity_rungs,
)
from hubtune.protocol.context import TaskContext
from hubtune.protocol.steps import Step, StepResult


class ASHA(PoolOptimizer):
    """Asynchronous successive halving with continuation (see the module docstring)."""

    def __init__(self, ctx: TaskContext, eta: int = 3, min_epoch: int = 1,
                 pool_size: int = DEFAULT_POOL_SIZE) -> None:
        super().__init__(ctx, pool_size)
        self.eta = eta
        self.rungs = fidelity_rungs(self.max_epochs, min_epoch, eta)
        self.order = self.random_order()
        self.next_new = 0
        # rung index -> trial ids recorded there (in arrival order); promoted per rung
        self.at_rung: list[list[str]] = [[] for _ in self.rungs]
        self.rung_score: list[dict[str, float]] = [{} for _ in self.rungs]
        self.promoted: list[set[str]] = [set() for _ in self.rungs]
        self.target_rung: dict[str, int] = {}

    def ask(self, budget_left: float | None = None) -> Step | None:
        """Promote a top-1/eta trial (highest rung first), else start a new candidate."""
        for k in range(len(self.rungs) - 2, -1, -1):
            scores = self.rung_score[k]
            ranked = sorted(scores, key=lambda t: (-scores[t], self.position[t]))
            for tid in ranked[: len(ranked) // self.eta]:
                if tid not in self.promoted[k] and self.can_continue(tid):
                    return self._to_rung(tid, k + 1, reason="promotion")
        if self.next_new < len(self.order):
            tid = self.order[self.next_new]
            self.next_new += 1
            return self._to_rung(tid, 0, reason="new")
        open_trials = [t for t in self.epoch if self.can_continue(t)]
        if not open_trials:
            return None
        best = max(open_trials, key=lambda t: (self.score[t], -self.position[t]))
        k = self.target_rung[best]
        return self._to_rung(best, k + 1, reason="candidates used up: continue best")

    def _to_rung(self, tid: str, k: int, reason: str) -> Step:
        if k > 0:
            self.promoted[k - 1].add(tid)
        self.target_rung[tid] = k
        return self.step(tid, self.rungs[k], rung=k, reason=reason)

    def on_tell(self, result: StepResult) -> None:
        tid = result.trial_id
        k = self.target_rung.get(tid)
        if k is None or self.rungs[k] < result.step.to_epoch:
            k = self._adopt(tid, result.step.to_epoch)  # not asked here: rebuilt from a journal
        self.at_rung[k].append(tid)
        self.rung_score[k][tid] = self.score[tid]

    def _adopt(self, tid: str, to_epoch: int) -> int:
        """Take in a step this optimizer did not ask for (the journal's): its epoch names its rung."""
        k = max((i for i, r in enumerate(self.rungs) if r <= to_epoch), default=0)
        self.target_rung[tid] = k
        if k > 0:
            self.promoted[k - 1].add(tid)
        if tid in self.order:
            self.next_new = max(self.next_new, self.order.index(tid) + 1)
        return k

    def extra_state(self) -> dict[str, Any]:
        return {
            "next_new": self.next_new,
            "rung_score": [{t: (s if math.isfinite(s) else None) for t, s in r.items()}
                           for r in self.rung_score],
            "promoted": [sorted(p) for p in self.promoted],
            "target_rung": dict(self.target_rung),
        }

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        self.next_new = int(extra["next_new"])
        self.rung_score = [{t: (-math.inf if s is None else float(s)) for t, s in r.items()}
                           for r in extra["rung_score"]]
        self.at_rung = [list(r) for r in self.rung_score]
        self.promoted = [set(p) for p in extra["promoted"]]
        self.target_rung = {t: int(k) for t, k in extra["target_rung"].items()}


class Hyperband(PoolOptimizer):
    """Hyperband with continuation (see the module docstring)."""

    def __init__(self, ctx: TaskContext, eta: int = 3, min_epoch: int = 1,
                 pool_size: int = DEFAULT_POOL_SIZE) -> None:
        super().__init__(ctx, pool_size)
        self.eta = eta
        self.rungs = fidelity_rungs(self.max_epochs, min_epoch, eta)
        self.s_max = len(self.rungs) - 1
        self.order = self.random_order()
        self.next_new = 0
        self.bracket_index = 0  # counts brackets started; s = s_max - index % (s_max + 1)
        self.bracket: SuccessiveHalvingBracket | None = None

    def _keep(self, rung: int, n: int) -> int:
        return max(1, n // self.eta)

    def _new_bracket(self) -> SuccessiveHalvingBracket | None:
        if self.next_new >= len(self.order):
            return None
        s = self.s_max - self.bracket_index % (self.s_max + 1)
        n = math.ceil((self.s_max + 1) / (s + 1) * self.eta**s)
        members = self.order[self.next_new:self.next_new + n]
        self.next_new += len(members)
        self.bracket_index += 1
        return SuccessiveHalvingBracket(members, self.rungs, self.s_max - s, self._keep)

    def ask(self, budget_left: float | None = None) -> Step | None:
        """Next step of the current bracket; a new bracket when it is done."""
        while True:
            if self.bracket is None or self.bracket.done:
                self.bracket = self._new_bracket()
                if self.bracket is None:
                    return self.continue_best(self.rungs)
            step = self.bracket.next_step(self)
            if step is not None or not self.bracket.done:
                return step  # a step, or None while this bracket waits for results

    def extra_state(self) -> dict[str, Any]:
        return {
            "next_new": self.next_new,
            "bracket_index": self.bracket_index,
            "bracket": None if self.bracket is None else self.bracket.state(),
        }

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        self.next_new = int(extra["next_new"])
        self.bracket_index = int(extra["bracket_index"])
        if extra["bracket"] is None:
            self.bracket = None
        else:
            self.bracket = SuccessiveHalvingBracket([], self.rungs, 0, self._keep)
            self.bracket.load(extra["bracket"])


def make_asha(ctx: TaskContext, eta: int = 3, min_epoch: int = 1) -> ASHA:
    """Factory of the ``asha`` method."""
    return ASHA(ctx, eta=eta, min_epoch=min_epoch)


def make_hyperband(ctx: TaskContext, eta: int = 3, min_epoch: int = 1) -> Hyperband:
    """Factory of the ``hyperband`` method."""
    return Hyperband(ctx, eta=eta, min_epoch=min_epoch)
