"""The evaluator wrapper that keeps a resumed or evicted trial from reporting an epoch twice."""

from __future__ import annotations

from typing import Any

from hubtune.protocol.steps import Step, StepResult

DEFAULT_CPU_IMAGE_SIZE = 64

class _ContinuationGuard:
    """Evaluator wrapper: forwards only epochs the optimizer has not seen yet.

    A trial whose checkpoint was evicted (disk quota) restarts from scratch; the
    trainer then returns its early epochs again (identical, schedules being
    prefix-exact), which the optimizer must not be told twice.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seen: dict[str, int] = {}

    def observe(self, result: StepResult) -> None:
        if result.records:
            self.seen[result.trial_id] = max(
                self.seen.get(result.trial_id, 0), result.records[-1].epoch
            )

    def filter(self, result: StepResult) -> StepResult:
        """Drop the epochs of ``result`` that were told already; remember the rest.

        A step that was to train on but brings no new epoch is made a failure: told
        as a plain "ok" with nothing in it, an optimizer would ask for it again and
        again (the run would spin without progress).
        """
        known = self.seen.get(result.trial_id, 0)
        result.records = [r for r in result.records if r.epoch > known]
        if result.status == "ok" and not result.records:
            result.status = "failed"
            result.reason = (f"the step to epoch {result.step.to_epoch} brought no new epoch "
                             f"(epochs up to {known} were reported already)")
        self.observe(result)
        return result

    def advance(self, step: Step) -> StepResult:
        return self.filter(self.inner.advance(step))
