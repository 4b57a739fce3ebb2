"""Common driver for peers that propose (configuration, fidelity) jobs: DEHB, SMAC3.

Such a peer asks for "train configuration c for b epochs" and learns the score
at b epochs. Every proposal is mapped onto the nearest table configuration
(:class:`~hubtune.bench.peers.mapping.TableMapping`; identical proposals map to
the same configuration, new ones prefer configurations not used yet).

Charging:

* from scratch (default): every job is a new training run of its
  configuration; a promoted configuration is re-trained from epoch 0 under a
  fresh trial id ``"<run id>#<n>"`` (what a user of the library pays);
* continuation cache (``continuation=True``, the ``*_cont`` variants): a job
  for a configuration trained before continues that trial from its
  checkpoint, paying only the extra epochs.

In both modes a job whose (configuration, epochs) was already observed is
answered from the observation at no cost: on a table two different proposals
can map onto the same configuration, which would not happen in the peer's own
space, and paying for such an artefact would be unfair to the peer.
"""

from __future__ import annotations

import json
from typing import Any

from hubtune.bench.peers._common import (
    RESTART_SEPARATOR,
    ObservedCurves,
    PeerOptimizer,
    require_candidates,
    result_score,
)
from hubtune.bench.peers.mapping import TableMapping
from hubtune.protocol.context import TaskContext
from hubtune.protocol.steps import Step, StepResult

MAX_FREE_ANSWERS = 10_000
"""Jobs answered from observed curves within one ``ask`` before giving up (all seen)."""


def epochs_of(fidelity: float, max_epochs: int) -> int:
    """A (float) fidelity as a whole number of epochs in ``[1, max_epochs]``."""
    return max(1, min(int(round(float(fidelity))), int(max_epochs)))


class FidelityJobPeer(PeerOptimizer):
    """Base of DEHB / SMAC wrappers: map jobs to table runs, charge as configured.

    Subclasses implement :meth:`_next_job` (returns the library's job handle,
    the proposal as ``{hyperparameter: token or value}`` and the fidelity) and
    :meth:`_report` (tells the library the score and cost of a job).
    """

    def __init__(self, ctx: TaskContext, continuation: bool = False) -> None:
        require_candidates(ctx, self.method)
        super().__init__(ctx)
        self.continuation = continuation
        self.mapping = TableMapping(ctx.candidates, seed=ctx.seed)
        self.observed = ObservedCurves(len(self.mapping.candidates))
        self._mapped: dict[str, int] = {}
        self._trials: dict[int, list[str]] = {}  # candidate -> its trial ids, oldest first
        self._stands: dict[str, int] = {}  # trial id -> epoch it stands at
        self._jobs: dict[str, tuple[Any, int, int]] = {}
        self.free_answers = 0

    # library side ----------------------------------------------------------
    def _next_job(self) -> tuple[Any, dict[str, Any], float]:
        raise NotImplementedError

    def _report(self, job: Any, score: float, cost: float) -> None:
        raise NotImplementedError

    # mapping ---------------------------------------------------------------
    def _candidate_of(self, proposal: dict[str, Any]) -> tuple[int, float]:
        values = self.mapping.values_from(proposal)
        key = json.dumps(values, sort_keys=True, default=str)
        if key in self._mapped:
            return self._mapped[key], 0.0
        idx, dist = self.mapping.nearest(values, prefer_unused=True)
        self._mapped[key] = idx
        return idx, dist

    def _trial_for(self, idx: int, epochs: int) -> str:
        run_id = self.mapping.candidates[idx].trial_id
        trials = self._trials.setdefault(idx, [])
        if self.continuation:
            for tid in reversed(trials):
                if tid not in self.pending and self._stands.get(tid, 0) < epochs:
                    return tid
        tid = run_id if not trials else f"{run_id}{RESTART_SEPARATOR}{len(trials)}"
        trials.append(tid)
        return tid

    # protocol --------------------------------------------------------------
    def _ask(self, budget_left: float | None) -> Step | None:
        for _ in range(MAX_FREE_ANSWERS):
            job, proposal, fidelity = self._next_job()
            idx, dist = self._candidate_of(proposal)
            epochs = epochs_of(fidelity, self.ctx.max_epochs)
            if self.observed.covers(idx, epochs):
                self._report(job, self.observed.score(idx, epochs), 0.0)
                self.free_answers += 1
                continue
            tid = self._trial_for(idx, epochs)
            self._jobs[tid] = (job, idx, epochs)
            return Step(trial_id=tid, config=self.mapping.candidates[idx].config, to_epoch=epochs,
                        info={"fidelity": float(fidelity), "mapping_distance": dist,
                              "restart": RESTART_SEPARATOR in tid})
        return None

    def _tell(self, result: StepResult) -> None:
        job, idx, epochs = self._jobs.pop(result.step.trial_id)
        self.observed.add(idx, result)
        if result.records:
            self._stands[result.step.trial_id] = int(result.records[-1].epoch)
        score = self.observed.score(idx, epochs) if self.observed.covers(idx, epochs) \
            else result_score(result)
        self._report(job, score, float(result.seconds))
