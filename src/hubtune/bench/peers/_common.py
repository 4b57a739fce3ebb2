"""Shared machinery of the wrapped peers: replayable state, observed curves, trial ids.

Peer libraries keep their own internal state (populations, run histories,
Optuna studies, a subprocess). Their wrappers are made resumable by
*replay*: :meth:`PeerOptimizer.state_dict` is the JSON log of every ``ask``
and ``tell``; :meth:`PeerOptimizer.load_state_dict` rebuilds the peer from
scratch and replays that log (the peers are deterministic given their seed),
checking that each replayed ``ask`` proposes the same step as recorded. Steps
asked but not yet told when the state was saved are pending again afterwards.
"""

from __future__ import annotations

from typing import Any

from hubtune.protocol.codec import result_from_dict, result_to_dict
from hubtune.protocol.context import TaskContext
from hubtune.protocol.steps import Step, StepResult

RESTART_SEPARATOR = "#"
"""``"<run id>#<n>"`` names the n-th from-scratch re-training of a table run."""


class PeerStateError(RuntimeError):
    """Raised when a saved peer state cannot be replayed (different peer, seed or table)."""


def require_candidates(ctx: TaskContext, method: str) -> None:
    """Peers run on a tabular benchmark: they need ``ctx.candidates``."""
    if not ctx.candidates:
        raise ValueError(
            f"{method} is wrapped for the tabular benchmark and needs ctx.candidates "
            f"(the table's configurations of the test dataset)"
        )


class ObservedCurves:
    """Every epoch score seen so far, per candidate index (union over its trials).

    A table run's recorded curve is the same whichever trial replays it, so
    what any trial of the run observed answers a later request for the same or
    a lower number of epochs without training again.
    """

    def __init__(self, n: int) -> None:
        self.curves: list[list[float]] = [[] for _ in range(n)]
        self.ended: list[bool] = [False] * n

    def add(self, index: int, result: StepResult) -> None:
        curve = self.curves[index]
        for rec in result.records:
            if rec.epoch == len(curve) + 1:
                curve.append(float(rec.score))
        if result.status != "ok":
            self.ended[index] = True

    def covers(self, index: int, epochs: int) -> bool:
        """Whether the score after ``epochs`` epochs (or the run's final one) is known."""
        curve = self.curves[index]
        return len(curve) >= epochs or (self.ended[index] and bool(curve))

    def score(self, index: int, epochs: int) -> float:
        """Score after ``epochs`` epochs, or the final score of a run that ended earlier."""
        curve = self.curves[index]
        return curve[min(epochs, len(curve)) - 1]


def result_score(result: StepResult) -> float:
    """Score a peer is told for a step: the last epoch's score, 0.0 if nothing trained."""
    return float(result.records[-1].score) if result.records else 0.0


class PeerOptimizer:
    """Base of the peer wrappers: logs asks and tells for replayable state.

    Subclasses implement ``_ask(budget_left)`` and ``_tell(result)`` and set
    ``method`` (the registry name).
    """

    method = "peer"

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx
        self._events: list[dict[str, Any]] = []
        self.pending: dict[str, Step] = {}

    # subclasses -----------------------------------------------------------
    def _ask(self, budget_left: float | None) -> Step | None:
        raise NotImplementedError

    def _tell(self, result: StepResult) -> None:
        raise NotImplementedError

    # protocol --------------------------------------------------------------
    def ask(self, budget_left: float | None = None) -> Step | None:
        """The next step (``None`` when the peer has nothing left to propose)."""
        step = self._ask(budget_left)
        if step is not None:
            if step.trial_id in self.pending:  # a wrapper bug, never the caller's
                raise RuntimeError(f"{self.method}: trial {step.trial_id!r} is already pending")
            self.pending[step.trial_id] = step
        self._events.append({"ask": None if step is None else [step.trial_id, step.to_epoch],
                             "budget_left": budget_left})
        return step

    def tell(self, result: StepResult) -> None:
        """Feed back the outcome of a step proposed by :meth:`ask`."""
        if result.step.trial_id not in self.pending:
            raise ValueError(
                f"{self.method}: told about trial {result.step.trial_id!r}, which has no "
                f"pending step"
            )
        del self.pending[result.step.trial_id]
        self._tell(result)
        self._events.append({"tell": result_to_dict(result)})

    def state_dict(self) -> dict[str, Any]:
        """The ask/tell log (JSON); :meth:`load_state_dict` replays it."""
        return {"method": self.method, "seed": self.ctx.seed, "events": list(self._events)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replay a log from :meth:`state_dict` into this freshly built optimizer."""
        if self._events:
            raise PeerStateError(f"{self.method}: load_state_dict needs a freshly built optimizer")
        if state.get("method") != self.method or state.get("seed") != self.ctx.seed:
            raise PeerStateError(
                f"state of {state.get('method')!r} (seed {state.get('seed')}) cannot be loaded "
                f"into {self.method!r} (seed {self.ctx.seed})"
            )
        for event in state.get("events", []):
            if "ask" in event:
                step = self.ask(event.get("budget_left"))
                got = None if step is None else [step.trial_id, step.to_epoch]
                if got != event["ask"]:
                    raise PeerStateError(
                        f"{self.method}: replay diverged: recorded ask {event['ask']}, got {got}"
                    )
            else:
                self.tell(result_from_dict(event["tell"]))
