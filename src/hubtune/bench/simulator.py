"""Replay a meta-dataset's recorded learning curves as an :class:`~hubtune.protocol.steps.Evaluator`.

Advancing a trial from epoch ``k`` to ``m`` returns the recorded epochs
``k+1..m`` of its run and costs their recorded seconds, plus
``start_overhead`` on a trial's first step or ``resume_overhead`` on every
later step (a thaw: loading the checkpoint). The overhead is booked as the
``checkpoint_seconds`` of the step's first record, so the cumulative sum of
``record.seconds`` gives the time each epoch finishes.

Trial ids are the table's run ids. ``"<run id>#<tag>"`` names an independent
trial of the same run that starts again from epoch 0 (what a method that
cannot continue a checkpoint pays when it re-trains a config).

Example:
    >>> ev = SimulatedEvaluator(runs, resume_overhead=10.0)          # doctest: +SKIP
    >>> ev.advance(Step(runs.run_ids[0], runs.configs[0], to_epoch=3))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from hubtune.core.records import EpochRecord
from hubtune.protocol.steps import Step, StepResult

if TYPE_CHECKING:
    from hubtune.metadata import DatasetRuns

RESTART_SEPARATOR = "#"


class SimulationError(ValueError):
    """An optimizer asked the simulator for something impossible (unknown trial, going back)."""


class SimulatedEvaluator:
    """Evaluator that replays the recorded curves of one dataset's runs.

    Args:
        runs: the dataset's runs (scores and per-epoch seconds, NaN after a curve ends).
        resume_overhead: seconds charged to every step that continues a paused trial.
        start_overhead: seconds charged to the first step of a trial.
        max_epochs: highest epoch a trial may reach (defaults to the table's width).
    """

    def __init__(
        self,
        runs: DatasetRuns,
        resume_overhead: float = 0.0,
        start_overhead: float = 0.0,
        max_epochs: int | None = None,
    ) -> None:
        for name, value in (("resume_overhead", resume_overhead),
                            ("start_overhead", start_overhead)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative number of seconds, got {value}")
        self.runs = runs
        self.resume_overhead = float(resume_overhead)
        self.start_overhead = float(start_overhead)
        width = int(runs.scores.shape[1])
        self.max_epochs = width if max_epochs is None else min(int(max_epochs), width)
        self._index = {rid: i for i, rid in enumerate(runs.run_ids)}
        self._scores = runs.scores.tolist()
        self._seconds = runs.seconds.tolist()
        self._lengths = [min(int(n), self.max_epochs) for n in runs.lengths]
        self.epochs: dict[str, int] = {}
        """Epoch each trial stands at (trials never advanced are absent)."""
        self.steps = 0
        self.epochs_trained = 0

    def run_index(self, trial_id: str) -> int:
        """Row of the table that ``trial_id`` replays."""
        run_id = trial_id.split(RESTART_SEPARATOR, 1)[0]
        try:
            return self._index[run_id]
        except KeyError:
            raise SimulationError(
                f"unknown trial {trial_id!r}: not a run id of dataset {self.runs.dataset!r}"
            ) from None

    def length(self, trial_id: str) -> int:
        """Number of epochs the trial's recorded curve has (capped at ``max_epochs``)."""
        return self._lengths[self.run_index(trial_id)]

    def advance(self, step: Step) -> StepResult:
        """Replay ``step.trial_id`` from where it stands to ``step.to_epoch``.

        A curve that ends before ``to_epoch`` yields what exists with status
        ``"ended"`` (also when the trial reaches the end of its curve exactly).

        Raises:
            SimulationError: unknown trial, or ``to_epoch`` not beyond the
                trial's current epoch while its curve could go further.
        """
        row = self.run_index(step.trial_id)
        length = self._lengths[row]
        current = self.epochs.get(step.trial_id, 0)
        if step.to_epoch <= current and current < length:
            raise SimulationError(
                f"trial {step.trial_id!r} already stands at epoch {current}; "
                f"cannot advance it to epoch {step.to_epoch}"
            )
        overhead = self.start_overhead if step.trial_id not in self.epochs else self.resume_overhead
        target = min(int(step.to_epoch), length)
        records = []
        scores, seconds = self._scores[row], self._seconds[row]
        for e in range(current + 1, target + 1):
            records.append(EpochRecord(epoch=e, score=scores[e - 1], train_seconds=seconds[e - 1]))
        if records:
            records[0].checkpoint_seconds = overhead
        self.epochs[step.trial_id] = max(current, target)
        self.steps += 1
        self.epochs_trained += len(records)
        ended = self.epochs[step.trial_id] >= length
        total = overhead + sum(r.train_seconds for r in records)
        reason = None
        if ended and step.to_epoch > length:
            reason = f"recorded curve ends at epoch {length}"
        return StepResult(
            step=step,
            records=records,
            status="ended" if ended else "ok",
            reason=reason,
            seconds=total,
        )
