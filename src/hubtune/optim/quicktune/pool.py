"""Quick-Tune's candidate pool: the trials, their static feature rows and cost priors.

A fixed pool (a tabular benchmark's candidates) or, on a search space, one
that grows: each model's default config first (:func:`default_anchors`),
topped up with sampled configs (:func:`sample_fresh`) and one-exchange
neighbours of the best ones (:func:`neighbours`). Every trial keeps its
observed scores and the surrogate rows of its observed epochs (built once per
tell by :func:`hubtune.surrogate.features.observed_rows`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hubtune.hub.descriptor import ModelDescriptor
from hubtune.space.config import Config, linear_probing_epochs
from hubtune.surrogate.cost import OnlineCost
from hubtune.surrogate.features import N_CURVE, observed_rows
from hubtune.surrogate.model import Surrogate


@dataclass
class Trial:
    """One candidate configuration and what has been observed of it."""

    trial_id: str
    config: Config
    scores: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    done: bool = False
    pending: bool = False
    curve: np.ndarray = field(default_factory=lambda: np.zeros(N_CURVE, dtype=np.float32))
    """Curve features of all its scores (the prefix of its next step)."""
    belief: tuple[int, np.ndarray, float] | None = None
    """Pending step's fantasy: (epoch when proposed, its query row, predicted mean)."""
    obs_rows: np.ndarray | None = None
    """Surrogate rows of the observed epochs (row ``e - 1``: epoch ``e`` after ``e - 1``)."""

    @property
    def epoch(self) -> int:
        return len(self.scores)


class CandidatePool:
    """The trials of one run, in the order they joined, with their static rows.

    Args:
        surrogate: gives the feature builder (static rows) and cost model (priors).
        descriptors: hub descriptors by model (models without one get ``None``).
        meta_features: the target dataset's meta-features.
        schedule_epochs: the trials' schedule length (their epoch-valued hyperparameters
            are encoded relative to it; ``None``: the meta-dataset's 50 epochs).
    """

    def __init__(self, surrogate: Surrogate, descriptors: dict[str, ModelDescriptor | None] | None,
                 meta_features: Any, schedule_epochs: int | None = None) -> None:
        self.features = surrogate.features
        self.schedule_epochs = schedule_epochs
        self.cost = surrogate.cost
        self.descriptors = dict(descriptors or {})
        self.meta_features = meta_features
        self.clear()

    def clear(self) -> None:
        """Forget every trial."""
        self.trials: list[Trial] = []
        self.index: dict[str, int] = {}
        self.static = np.zeros((0, 0), dtype=np.float32)
        self.cost_prior = np.zeros(0)

    def __len__(self) -> int:
        return len(self.trials)

    def __contains__(self, trial_id: object) -> bool:
        return trial_id in self.index

    def __getitem__(self, trial_id: str) -> Trial:
        return self.trials[self.index[trial_id]]

    def add(self, items: list[tuple[str, Config]], dedupe: bool = False) -> None:
        """Add new ``(trial_id, config)`` pairs (ids already in the pool are skipped).

        ``dedupe`` (search-space mode) also skips configs that train exactly like
        one already in the pool (e.g. a warmup_lr without warmup epochs).
        """
        new = [(tid, cfg) for tid, cfg in items if tid not in self.index]
        if dedupe:
            seen = {t.config.effective_key() for t in self.trials}
            kept = []
            for tid, cfg in new:
                k = cfg.effective_key()
                if k not in seen:
                    seen.add(k)
                    kept.append((tid, cfg))
            new = kept
        if not new:
            return
        for tid, cfg in new:
            self.index[tid] = len(self.trials)
            self.trials.append(Trial(tid, cfg))
            self.descriptors.setdefault(cfg.model, None)
        cfgs = [c for _, c in new]
        static = self.features.static_rows(cfgs, self.descriptors, self.meta_features, self.schedule_epochs)
        prior = self.cost.predict_log(cfgs, self.descriptors, self.meta_features)
        self.static = static if self.static.size == 0 else np.concatenate([self.static, static])
        self.cost_prior = np.concatenate([self.cost_prior, prior])

    def record(self, trial: Trial, records: list[tuple[int, float, float]], schedule_epochs: int | None,
               error: type[Exception]) -> None:
        """Append a step's ``(epoch, score, seconds)`` records to ``trial`` and rebuild its rows.

        A repeated epoch (a replay) adds nothing; a gap raises ``error``; a
        non-finite score is recorded as 0.
        """
        for epoch, score, sec in records:
            if epoch != trial.epoch + 1:
                if epoch <= trial.epoch:
                    continue
                raise error(f"trial {trial.trial_id!r}: epoch {epoch} follows epoch {trial.epoch}")
            trial.scores.append(float(score) if math.isfinite(score) else 0.0)
            trial.seconds.append(float(sec))
        if trial.scores:
            trial.obs_rows, table = observed_rows(self.static[self.index[trial.trial_id]], trial.scores,
                                                  schedule_epochs)
            trial.curve = table[-1]

    def open_indices(self, max_epochs: int) -> list[int]:
        """Trials that may take a step: not done, not pending, below ``max_epochs``."""
        return [i for i, t in enumerate(self.trials) if not t.done and not t.pending and t.epoch < max_epochs]

    def fresh_count(self) -> int:
        """Never-started, idle trials."""
        return sum(1 for t in self.trials if t.epoch == 0 and not t.pending and not t.done)

    def observations(self, max_observations: int) -> tuple[np.ndarray, np.ndarray]:
        """The observed epochs' rows and scores, at most ``max_observations`` of them.

        Each trial's most recent epoch is kept first, then its first epoch, then
        its other epochs newest first (stable over trials).
        """
        rows, ys, prio = [], [], []
        for t in self.trials:
            n = t.epoch
            if n == 0 or t.obs_rows is None:
                continue
            rows.append(t.obs_rows)
            ys.append(np.asarray(t.scores, dtype=np.float64))
            e = np.arange(1, n + 1)
            prio.append(np.where(e == n, 0, np.where(e == 1, 1, 2 + (n - e))))
        if not rows:
            return np.zeros((0, self.features.dim), dtype=np.float32), np.zeros(0)
        order = np.argsort(np.concatenate(prio), kind="stable")[:max_observations]
        return np.concatenate(rows)[order], np.concatenate(ys)[order]

    def cost_per_epoch(self, schedule_epochs: int) -> np.ndarray:
        """Predicted seconds per epoch of every trial (prior corrected by measured seconds).

        Only trials that trained normally inform the cost model: a trial that
        ended (crashed, diverged) at its first epoch did not pay a real epoch. A
        linear-probing trial's head-only epochs (the trainer's first
        ``linear_probing_epochs`` of the schedule) are far cheaper than the full
        finetuning that follows, so only its later epochs count as its cost.
        """
        head_only = linear_probing_epochs(schedule_epochs)
        observed = {}
        for i, t in enumerate(self.trials):
            secs = t.seconds[head_only:] if t.config.linear_probing else t.seconds
            if secs and np.mean(secs) > 0 and (t.epoch >= 2 or not t.done):
                observed[i] = float(np.mean(secs))
        return OnlineCost(self.cost_prior, [t.config.model for t in self.trials]).per_epoch(observed)

    def best_score(self) -> float | None:
        """The best score observed so far (None before any)."""
        scored = [max(t.scores) for t in self.trials if t.scores]
        return float(max(scored)) if scored else None

    def incumbent(self) -> tuple[str, int, float] | None:
        """``(trial_id, epoch, score)`` of the best epoch observed, or ``None``."""
        best = None
        for t in self.trials:
            if t.scores:
                e = int(np.argmax(t.scores))
                if best is None or t.scores[e] > best[2]:
                    best = (t.trial_id, e + 1, float(t.scores[e]))
        return best

    def incumbent_epoch(self) -> int:
        """The epoch at which the best score so far was observed (0 before any)."""
        best, epoch = -math.inf, 0
        for t in self.trials:
            for e, s in enumerate(t.scores, start=1):
                if s > best:
                    best, epoch = s, e
        return epoch


def default_anchors(space: Any, max_epochs: int) -> list[tuple[str, Config]]:
    """Each model's default config (where the space contains it), tried first."""
    from hubtune.optim.defaults import default_candidates
    from hubtune.protocol.context import TaskContext

    ctx = TaskContext(max_epochs=max_epochs, space=space)
    return [(c.trial_id, c.config) for c in default_candidates(ctx) if space.contains(c.config)]


def sample_fresh(pool: CandidatePool, space: Any, rng: np.random.Generator, pool_size: int) -> list[tuple[str, Config]]:
    """Configs sampled from ``space`` to top never-started trials up to ``pool_size``."""
    want = pool_size - pool.fresh_count()
    if want <= 0:
        return []
    return [(c.key(), c) for c in space.sample(want, seed=int(rng.integers(2**31 - 1)))]


def neighbours(pool: CandidatePool, space: Any, rng: np.random.Generator) -> list[tuple[str, Config]]:
    """One-exchange neighbours (up to 8 each) of the three best configs, inside ``space``."""
    started = [t for t in pool.trials if t.scores]
    started.sort(key=lambda t: -max(t.scores))
    items = []
    choices = space.choices
    for t in started[:3]:
        names = [n for n in t.config.active_hyperparameters() if n in choices and len(choices[n]) > 1]
        for name in rng.permutation(names)[:8]:
            values = [v for v in choices[name] if v != getattr(t.config, name)]
            value = values[int(rng.integers(len(values)))]
            try:
                cfg = t.config.replace(**{name: value})
            except ValueError:
                continue
            if space.contains(cfg):
                items.append((cfg.key(), cfg))
    return items
