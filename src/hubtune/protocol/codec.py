"""The one JSON codec of :class:`~hubtune.protocol.steps.Step` and ``StepResult``.

The journal, the Ray pool and the peers' saved states all write steps and results
with these four functions, so a record written by one is read by any other.

Example:
    >>> from hubtune.space.config import Config
    >>> from hubtune.protocol.steps import Step
    >>> step = Step("t1", Config(model="resnet18"), 2)
    >>> step_from_dict(step_to_dict(step)) == step
    True
"""

from __future__ import annotations

from typing import Any

from hubtune.core.records import EpochRecord
from hubtune.protocol.steps import Step, StepResult
from hubtune.space.config import Config


def step_to_dict(step: Step) -> dict[str, Any]:
    """JSON form of a :class:`Step`."""
    return {
        "trial_id": step.trial_id,
        "config": step.config.to_dict(),
        "to_epoch": int(step.to_epoch),
        "info": dict(step.info),
    }


def step_from_dict(data: dict[str, Any]) -> Step:
    """Inverse of :func:`step_to_dict`."""
    return Step(
        trial_id=str(data["trial_id"]),
        config=Config.from_dict(data["config"]),
        to_epoch=int(data["to_epoch"]),
        info=dict(data.get("info") or {}),
    )


def result_to_dict(result: StepResult) -> dict[str, Any]:
    """JSON form of a :class:`StepResult`."""
    return {
        "step": step_to_dict(result.step),
        "status": result.status,
        "reason": result.reason,
        "seconds": float(result.seconds),
        "records": [r.to_dict() for r in result.records],
    }


def result_from_dict(data: dict[str, Any]) -> StepResult:
    """Inverse of :func:`result_to_dict`."""
    return StepResult(
        step=step_from_dict(data["step"]),
        records=[EpochRecord.from_dict(r) for r in data.get("records", [])],
        status=data.get("status", "ok"),
        reason=data.get("reason"),
        seconds=float(data.get("seconds", 0.0)),
    )
