"""The practitioner's baselines: every model with default hyperparameters, within the time.

Each model of the space gets one candidate, the default :class:`~hubtune.space.Config`
(AdamW, lr 1e-3, weight decay 1e-4, cosine schedule, batch 32, no freezing, no
extra regularization; values pinned by the space's ``fixed`` override), trained
one epoch per step; the best by validation is the answer. Two ways to share the
time: ``defaults`` goes round robin (every model gets an equal share of the
budget), ``defaults_sequential`` trains one model at a time to the end of its
schedule, cheapest first (as many models as fit are fully trained). Together
they are what "finetune each model with default hyperparameters for the same
total time" means in the end-to-end comparison of ``hubtune run``.
"""

from __future__ import annotations

import dataclasses

from hubtune.optim.baselines import PoolOptimizer
from hubtune.protocol.context import Candidate, TaskContext
from hubtune.protocol.steps import Step
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


def cheapest_first(models: list[str], ctx: TaskContext) -> list[str]:
    """``models`` by their descriptors' GFLOPs (then parameters), cheapest first;
    models without a descriptor keep their order after the others."""
    def cost(m: str) -> tuple[int, float, float]:
        d = ctx.descriptors.get(m)
        return (1, 0.0, 0.0) if d is None else (0, float(d.gflops), float(d.params_m))

    return sorted(models, key=cost)


class DefaultConfigs(PoolOptimizer):
    """The models' default configs, one epoch per step.

    ``order="round_robin"`` (method ``defaults``): the least-trained model next, so
    every model gets an equal share of the time. ``order="sequential"`` (method
    ``defaults_sequential``): one model at a time to ``max_epochs``, cheapest
    first (by the hub descriptors), so as many models as the budget allows are
    trained to the end of their schedules. Parallel workers get different models.
    """

    def __init__(self, ctx: TaskContext, order: str = "round_robin") -> None:
        if order not in ("round_robin", "sequential"):
            raise ValueError(f"order must be round_robin or sequential, got {order!r}")
        cands = default_candidates(ctx)
        if order == "sequential":
            by_model = {c.config.model: c for c in cands}
            cands = [by_model[m] for m in cheapest_first(list(by_model), ctx)]
        super().__init__(dataclasses.replace(ctx, candidates=cands))
        self.order = order

    def ask(self, budget_left: float | None = None) -> Step | None:
        open_ids = [
            c.trial_id for c in self.candidates
            if c.trial_id not in self.pending
            and self.status.get(c.trial_id, "ok") == "ok"
            and self.epoch.get(c.trial_id, 0) < self.max_epochs
        ]
        if not open_ids:
            return None
        if self.order == "sequential":
            tid = min(open_ids, key=lambda t: self.position[t])
            why = "default config, one model at a time (cheapest first)"
        else:
            tid = min(open_ids, key=lambda t: (self.epoch.get(t, 0), self.position[t]))
            why = "default config, round robin"
        return self.step(tid, self.epoch.get(tid, 0) + 1, why=why)


def make_default_configs(ctx: TaskContext, order: str = "round_robin") -> DefaultConfigs:
    """Factory of the ``defaults`` (round robin) and ``defaults_sequential`` methods."""
    return DefaultConfigs(ctx, order=order)
