"""SMAC3 (PyPI ``smac`` 2.x) multi-fidelity facade, driven through ask/tell.

``MultiFidelityFacade`` (random-forest surrogate, Hyperband intensifier with
``eta=3``) with budget = epochs (min 1, max ``ctx.max_epochs``). Proposals are
mapped onto table configurations and charged as described in
:mod:`hubtune.bench.peers.fidelity_jobs`: ``smac_mf`` re-trains a promoted
configuration from scratch (SMAC cannot continue a run); ``smac_mf_cont``
adds a continuation cache (labelled as such). SMAC minimises a cost: it is
told ``1 - score``.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from typing import Any

from hubtune.bench.peers.fidelity_jobs import FidelityJobPeer
from hubtune.protocol.context import TaskContext


def _never_called(config: Any, seed: int = 0, budget: float = 1.0) -> float:
    raise RuntimeError("SMAC is driven through ask/tell; its target function is never called")


class SMACMultiFidelity(FidelityJobPeer):
    """SMAC3's multi-fidelity facade over the table's configurations.

    Args:
        ctx: the task (``ctx.candidates`` required).
        continuation: continue earlier trials of a configuration (``smac_mf_cont``).
        eta: Hyperband's reduction factor.
        n_trials: SMAC's trial count, which sizes its initial design (at most a
            quarter of it; 10 random configurations per hyperparameter
            otherwise). Default: the number of table configurations, what a
            user would plan for this pool. It does not stop ``ask``; the
            benchmark's time budget ends a run.
    """

    def __init__(self, ctx: TaskContext, continuation: bool = False, eta: int = 3,
                 n_trials: int | None = None) -> None:
        self.method = "smac_mf_cont" if continuation else "smac_mf"
        super().__init__(ctx, continuation=continuation)
        from smac import MultiFidelityFacade, Scenario

        self._workdir = tempfile.mkdtemp(prefix="hubtune-smac-")
        weakref.finalize(self, shutil.rmtree, self._workdir, True)
        scenario = Scenario(
            self.mapping.configspace, name="hubtune", output_directory=self._workdir,
            deterministic=True, n_trials=int(n_trials or len(self.mapping.candidates)), min_budget=1,
            max_budget=ctx.max_epochs, seed=ctx.seed,
        )
        intensifier = MultiFidelityFacade.get_intensifier(scenario, eta=eta)
        self.smac = MultiFidelityFacade(
            scenario, _never_called, intensifier=intensifier, overwrite=True,
            logging_level=40,
        )

    def _next_job(self) -> tuple[Any, dict[str, Any], float]:
        info = self.smac.ask()
        return info, dict(info.config), float(info.budget)

    def _report(self, job: Any, score: float, cost: float) -> None:
        from smac.runhistory.dataclasses import TrialValue

        self.smac.tell(job, TrialValue(cost=1.0 - float(score), time=float(cost)), save=False)


def make_smac_mf(ctx: TaskContext, continuation: bool = False) -> SMACMultiFidelity:
    """Factory for the registry (``smac_mf``; ``smac_mf_cont`` with ``continuation=True``)."""
    return SMACMultiFidelity(ctx, continuation=continuation)
