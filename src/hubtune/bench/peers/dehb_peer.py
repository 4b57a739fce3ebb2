"""DEHB (PyPI ``dehb``) driven through its ask/tell interface, fidelity = epochs.

DEHB proposes a configuration and a fidelity (min 1, max ``ctx.max_epochs``
epochs, ``eta=3``: on 50 epochs its fidelities are 50/27, 50/9, 50/3 and 50,
trained as 2, 6, 17 and 50 epochs). Proposals are mapped onto table
configurations and charged as described in
:mod:`hubtune.bench.peers.fidelity_jobs`: ``dehb`` re-trains a promoted
configuration from scratch (DEHB cannot continue a run); ``dehb_cont`` adds a
continuation cache (labelled as such).
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from typing import Any

from hubtune.bench.peers.fidelity_jobs import FidelityJobPeer
from hubtune.protocol.context import TaskContext


class DEHBPeer(FidelityJobPeer):
    """DEHB over the table's configurations.

    Args:
        ctx: the task (``ctx.candidates`` required).
        continuation: continue earlier trials of a configuration (``dehb_cont``).
        eta: DEHB's successive-halving factor.
    """

    def __init__(self, ctx: TaskContext, continuation: bool = False, eta: int = 3) -> None:
        self.method = "dehb_cont" if continuation else "dehb"
        super().__init__(ctx, continuation=continuation)
        from dehb import DEHB
        from loguru import logger

        logger.disable("dehb")
        self._workdir = tempfile.mkdtemp(prefix="hubtune-dehb-")
        weakref.finalize(self, shutil.rmtree, self._workdir, True)
        self.dehb = DEHB(
            cs=self.mapping.configspace, min_fidelity=1, max_fidelity=ctx.max_epochs, eta=eta,
            n_workers=1, seed=ctx.seed, output_path=self._workdir, save_freq="end",
        )

    def _next_job(self) -> tuple[Any, dict[str, Any], float]:
        job = self.dehb.ask()
        return job, dict(job["config"]), float(job["fidelity"])

    def _report(self, job: Any, score: float, cost: float) -> None:
        # DEHB minimises its fitness
        self.dehb.tell(job, {"fitness": -float(score), "cost": float(cost)})


def make_dehb(ctx: TaskContext, continuation: bool = False) -> DEHBPeer:
    """Factory for the registry (``dehb``; ``dehb_cont`` with ``continuation=True``)."""
    return DEHBPeer(ctx, continuation=continuation)
