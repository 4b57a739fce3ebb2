"""The practitioner's baseline: every model with default hyperparameters, sharing the time.

Each model of the space gets one candidate, the default :class:`~hubtune.space.Config`
(AdamW, lr 1e-3, weight decay 1e-4, cosine schedule, batch 32, no freezing, no
extra regularization; values pinned by the space's ``fixed`` override). Steps go
round-robin, one epoch at a time, to the least-trained model, so every model
gets an equal share of the budget; the best by validation is the answer. This is
what "finetune each model with default hyperparameters for the same total time"
means in the end-to-end comparison of ``hubtune run``.
"""

from __future__ import annotations

import dataclasses

from hubtune.optim.baselines import PoolOptimizer
from hubtune.optim.context import Candidate, TaskContext
from hubtune.optim.protocol import Step
from hubtune.space.config import Config


def default_candidates(ctx: TaskContext) -> list[Candidate]:
    """One default config per model (from ``ctx.space``, or the models of ``ctx.candidates``)."""
    if ctx.space is not None:
        models = list(ctx.space.models)
        fixed = {k: v for k, v in ctx.space.fixed.items() if k != "model"}
    else:
        assert ctx.candidates is not None
        models = list(dict.fromkeys(c.config.model for c in ctx.candidates))
        fixed = {}
    out = []
    for m in models:
        cfg = Config(model=m).replace(**fixed) if fixed else Config(model=m)
        out.append(Candidate(cfg.key(), cfg))
    return out


class DefaultConfigs(PoolOptimizer):
    """Round-robin over the models' default configs, one epoch per step."""

    def __init__(self, ctx: TaskContext) -> None:
        super().__init__(dataclasses.replace(ctx, candidates=default_candidates(ctx)))

    def ask(self, budget_left: float | None = None) -> Step | None:
        open_ids = [
            c.trial_id for c in self.candidates
            if c.trial_id not in self.pending
            and self.status.get(c.trial_id, "ok") == "ok"
            and self.epoch.get(c.trial_id, 0) < self.max_epochs
        ]
        if not open_ids:
            return None
        tid = min(open_ids, key=lambda t: (self.epoch.get(t, 0), self.position[t]))
        return self.step(tid, self.epoch.get(tid, 0) + 1, why="default config, round robin")


def make_default_configs(ctx: TaskContext) -> DefaultConfigs:
    """Factory of the ``defaults`` method."""
    return DefaultConfigs(ctx)
