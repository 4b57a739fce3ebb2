"""Epoch-based learning-rate schedules defined over ``max_epochs``.

The learning rate of epoch ``e`` (0-based) is a pure function of the config,
``max_epochs`` and ``e`` for ``cosine``, ``step`` and ``multistep``; ``plateau``
also depends on the validation scores seen so far, which :class:`LRSchedule`
keeps as a small JSON-serialisable state. Because nothing depends on how many
epochs the *current step* trains, training to epoch 2, pausing and continuing
to 4 uses exactly the learning rates of training straight to 4.

Semantics (following timm's epoch-wise schedulers, which the Quick-Tune
meta-dataset used):

* warmup: for ``e < warmup_epochs`` the rate rises linearly from ``warmup_lr``
  towards ``lr``: ``warmup_lr + e * (lr - warmup_lr) / warmup_epochs``.
* ``cosine``: ``0.5 * lr * (1 + cos(pi * e / max_epochs))`` (ends near 0).
* ``step``: ``lr * decay_rate ** (e // decay_epochs)``.
* ``multistep``: decays by ``decay_rate`` at the milestones ``decay_epochs *
  2**k`` (``d, 2d, 4d, ...``): like ``step`` early, then ever longer plateaus.
* ``plateau``: ``lr`` times ``decay_rate`` for every time the validation score
  failed to improve (relative threshold 1e-4) for more than
  ``patience_epochs`` consecutive epochs (timm's ``PlateauLRScheduler`` in
  ``max`` mode, no cooldown). Warmup epochs are not counted.

Example:
    >>> from hubtune.space import Config
    >>> s = LRSchedule(Config(model="m", lr=0.1, sched="step", decay_epochs=2, decay_rate=0.5), 6)
    >>> [round(s.lr_at(e), 4) for e in range(6)]
    [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
"""

from __future__ import annotations

import math
from typing import Any

from hubtune.space.config import Config

PLATEAU_THRESHOLD = 1e-4
"""Relative improvement a plateau schedule needs to count an epoch as better."""


class LRSchedule:
    """The learning rate of every epoch of one trial.

    Args:
        config: the trial's configuration (``lr``, ``sched``, warmup, decay fields).
        max_epochs: the length the schedule is defined over.
    """

    def __init__(self, config: Config, max_epochs: int) -> None:
        if max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
        self.config = config
        self.max_epochs = max_epochs
        # plateau state
        self.best: float | None = None
        self.bad_epochs = 0
        self.num_decays = 0

    # ----------------------------------------------------------------- query
    def lr_at(self, epoch: int) -> float:
        """Learning rate used throughout epoch ``epoch`` (0-based)."""
        c = self.config
        if epoch < c.warmup_epochs:
            return c.warmup_lr + epoch * (c.lr - c.warmup_lr) / c.warmup_epochs
        if c.sched == "cosine":
            return 0.5 * c.lr * (1.0 + math.cos(math.pi * epoch / self.max_epochs))
        if c.sched == "step":
            assert c.decay_epochs is not None and c.decay_rate is not None
            return c.lr * c.decay_rate ** (epoch // c.decay_epochs)
        if c.sched == "multistep":
            assert c.decay_epochs is not None and c.decay_rate is not None
            return c.lr * c.decay_rate ** len(self.milestones(epoch))
        if c.sched == "plateau":
            assert c.decay_rate is not None
            return c.lr * c.decay_rate**self.num_decays
        raise ValueError(f"unknown schedule {c.sched!r}")  # pragma: no cover - Config validates

    def milestones(self, upto: int | None = None) -> list[int]:
        """Multistep milestones (epochs where the rate drops) up to ``upto`` (inclusive)."""
        d = self.config.decay_epochs or 1
        end = self.max_epochs if upto is None else upto
        out, m = [], d
        while m <= end:
            out.append(m)
            m *= 2
        return out

    def lrs(self) -> list[float]:
        """Rates of all epochs for the non-plateau schedules (plateau: current state)."""
        return [self.lr_at(e) for e in range(self.max_epochs)]

    # ---------------------------------------------------------------- update
    def observe(self, epoch: int, score: float) -> None:
        """Tell the schedule epoch ``epoch`` ended with validation ``score``."""
        if self.config.sched != "plateau" or epoch < self.config.warmup_epochs:
            return
        if not math.isfinite(score):
            return
        if self.best is None or score > self.best * (1.0 + PLATEAU_THRESHOLD):
            self.best = score
            self.bad_epochs = 0
            return
        self.bad_epochs += 1
        patience = self.config.patience_epochs or 0
        if self.bad_epochs > patience:
            self.num_decays += 1
            self.bad_epochs = 0

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (only plateau has any)."""
        return {"best": self.best, "bad_epochs": self.bad_epochs, "num_decays": self.num_decays}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.best = state["best"]
        self.bad_epochs = int(state["bad_epochs"])
        self.num_decays = int(state["num_decays"])
