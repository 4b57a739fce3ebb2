"""Random search: uniformly random candidates without replacement, each trained to the end.

Every step trains a fresh candidate from scratch to ``max_epochs`` (no early
stopping, no continuation); the order is a seeded permutation of the task's
candidates (``ctx.candidates``, or configs sampled from ``ctx.space``).

Example:
    >>> opt = make_random_search(ctx)            # doctest: +SKIP
    >>> step = opt.ask(); step.to_epoch == ctx.max_epochs   # doctest: +SKIP
    True
"""

from __future__ import annotations

from hubtune.optim.baselines import OrderedFullTraining
from hubtune.protocol.context import TaskContext


class RandomSearch(OrderedFullTraining):
    """Seeded random order over the candidates, each trained to ``max_epochs`` in one step."""

    def __init__(self, ctx: TaskContext) -> None:
        super().__init__(ctx, order=[], reason="random")
        self.order = self.random_order()


def make_random_search(ctx: TaskContext) -> RandomSearch:
    """Factory of the ``random`` method."""
    return RandomSearch(ctx)
