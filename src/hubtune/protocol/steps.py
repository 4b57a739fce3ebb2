"""The ask/tell protocol every optimizer speaks, and the evaluator protocol it drives.

An optimizer proposes :class:`Step` s (advance trial ``trial_id`` with config
``config`` to epoch ``to_epoch``); an evaluator (the real trainer or the
tabular simulator) carries a step out and returns a :class:`StepResult`; the
optimizer learns from it through ``tell``. The optimizer never knows whether
it drives a real trainer or a replayed table.

Trial ids are strings chosen by whoever owns the candidate pool (the table's
run id in a benchmark, ``Config.key()`` for sampled configs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from hubtune.core.records import EpochRecord, StepStatus
from hubtune.space.config import Config


@dataclass(frozen=True)
class Step:
    """Advance trial ``trial_id`` (configuration ``config``) to epoch ``to_epoch``.

    ``info`` carries the optimizer's reasons (predicted mean, std, cost,
    acquisition value) for the decision log; it must be JSON-serialisable.
    """

    trial_id: str
    config: Config
    to_epoch: int
    info: dict[str, Any] = field(default_factory=dict, compare=False)


PREDICTION_KEYS: dict[str, tuple[str, ...]] = {
    "mean": ("predicted_mean", "mean"),
    "std": ("predicted_std", "std"),
    "seconds": ("predicted_seconds", "cost"),
    "acquisition": ("acquisition", "acq"),
}
"""Names under which optimizers put their predictions in ``Step.info``."""


def step_prediction(step: Step, what: str) -> float | None:
    """The optimizer's prediction ``what`` (mean, std, seconds, acquisition) for ``step``, if any."""
    for key in PREDICTION_KEYS[what]:
        value = step.info.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


@dataclass
class StepResult:
    """What advancing a trial produced: the new epochs and how it ended."""

    step: Step
    records: list[EpochRecord]
    status: StepStatus = "ok"
    reason: str | None = None
    seconds: float = 0.0
    """Total seconds the step cost, overheads included."""

    @property
    def trial_id(self) -> str:
        return self.step.trial_id

    @property
    def last_epoch(self) -> int:
        """Epoch the trial stands at after this step (0 if nothing was trained)."""
        return self.records[-1].epoch if self.records else 0


@runtime_checkable
class Evaluator(Protocol):
    """Carries out steps: trains (or replays) a trial from its checkpoint."""

    def advance(self, step: Step) -> StepResult:
        """Train ``step.trial_id`` from where it stands to ``step.to_epoch``."""
        ...


@runtime_checkable
class Optimizer(Protocol):
    """Proposes steps and learns from their results.

    ``ask`` returns ``None`` when it has nothing left to propose. With several
    workers, ``ask`` may be called again before earlier steps are told; an
    optimizer never proposes a trial that is still pending.
    """

    def ask(self, budget_left: float | None = None) -> Step | None:
        """The next step to run (``budget_left``: seconds left, if known)."""
        ...

    def tell(self, result: StepResult) -> None:
        """Record the outcome of a step proposed by :meth:`ask`."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state from which :meth:`load_state_dict` resumes."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state produced by :meth:`state_dict`."""
        ...
