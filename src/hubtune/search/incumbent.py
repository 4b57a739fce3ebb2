"""What a search has found so far (:class:`Incumbent`) and how it ended (:class:`LoopOutcome`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hubtune.protocol.steps import StepResult


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
                self.epoch = rec.epoch
                improved = True
        if improved:
            self.trial_id = result.trial_id
            self.config = result.step.config.to_dict()
            self.time = at
        return improved


@dataclass
class LoopOutcome:
    """How the loop ended."""

    why: str
    elapsed: float
    steps: int
    results: list[StepResult] = field(default_factory=list)
    incumbent: Incumbent = field(default_factory=Incumbent)
