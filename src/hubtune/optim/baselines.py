"""Simple search baselines, and the candidate-pool machinery they share.

All of them speak the ask/tell protocol, are deterministic given
``ctx.seed``, and work on a table (``ctx.candidates``) or on a search space
(``ctx.space``: a pool of ``pool_size`` sampled configs, trial id =
``Config.key()``).

- :func:`make_one_epoch_topk` (``one_epoch_topk``): every candidate is trained
  for 1 epoch, in a random order. Then the best ``ceil(10%)`` (at least one)
  are continued to epoch 3, the best half of those (rounded up) to 9, half
  again to 27, half again to ``max_epochs``; within a rung the best go first.
  When that is done, the remaining candidates are continued, best current
  score first, rung by rung, until everything is trained to the end.
- :func:`make_largest_model_default` (``largest_model_default``): models by
  size (parameters, from ``ctx.descriptors``; models without a descriptor
  come after, in the order they first appear among the candidates); for each
  model the candidate closest to hubtune's default config (AdamW, lr 1e-3,
  wd 1e-4, cosine, no extra regularisation; :func:`default_config`) is
  trained to the end, largest model first; then the second closest config of
  every model, and so on.
- :func:`make_best_on_average` (``best_on_average``): every candidate gets the
  mean, over the meta-training datasets, of the normalized final score
  ``(final - worst) / (best - worst)`` of the same config there (exact
  ``Config`` equality; else its nearest neighbour in :func:`encode_config`'s
  space); candidates are trained to the end in decreasing order of it.
"""

from __future__ import annotations

import functools
import math
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from hubtune.protocol.context import Candidate, TaskContext
from hubtune.protocol.steps import Step, StepResult
from hubtune.space.config import Config

if TYPE_CHECKING:
    from hubtune.metadata import MetaDataset

DEFAULT_POOL_SIZE = 512
"""Configs sampled from ``ctx.space`` when the task has no fixed candidate list."""

DEAD_STATUSES = ("diverged", "failed")


def candidate_pool(ctx: TaskContext, pool_size: int = DEFAULT_POOL_SIZE) -> list[Candidate]:
    """The task's candidates: ``ctx.candidates``, or distinct configs sampled from ``ctx.space``."""
    if ctx.candidates is not None:
        if not ctx.candidates:
            raise ValueError("the task has an empty candidate list")
        return list(ctx.candidates)
    assert ctx.space is not None  # TaskContext guarantees one of the two
    seen: dict[str, Candidate] = {}
    for cfg in ctx.space.sample(pool_size, seed=ctx.seed):
        seen.setdefault(cfg.key(), Candidate(cfg.key(), cfg))
    return list(seen.values())


def fidelity_rungs(max_epochs: int, min_epoch: int = 1, eta: int = 3) -> list[int]:
    """Epoch rungs ``min_epoch * eta**k`` below ``max_epochs``, then ``max_epochs``.

    >>> fidelity_rungs(50)
    [1, 3, 9, 27, 50]
    """
    if eta < 2:
        raise ValueError(f"eta must be >= 2, got {eta}")
    if not 1 <= min_epoch <= max_epochs:
        raise ValueError(f"min_epoch must be in [1, max_epochs={max_epochs}], got {min_epoch}")
    rungs = []
    r = min_epoch
    while r < max_epochs:
        rungs.append(r)
        r *= eta
    rungs.append(max_epochs)
    return rungs


class PoolOptimizer:
    """Bookkeeping shared by the baselines: candidates, trial states, pending steps.

    Subclasses implement :meth:`ask`; :meth:`tell` records every trial's epoch,
    last score and status. ``state_dict`` holds only JSON types.
    """

    def __init__(self, ctx: TaskContext, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self.ctx = ctx
        self.max_epochs = ctx.max_epochs
        self.seed = ctx.seed
        self.candidates = candidate_pool(ctx, pool_size)
        self.config = {c.trial_id: c.config for c in self.candidates}
        if len(self.config) != len(self.candidates):
            raise ValueError("candidate trial ids must be unique")
        self.position = {c.trial_id: i for i, c in enumerate(self.candidates)}
        self.epoch: dict[str, int] = {}
        self.score: dict[str, float] = {}
        self.status: dict[str, str] = {}
        self.pending: set[str] = set()

    # ------------------------------------------------------------ helpers
    def random_order(self) -> list[str]:
        """The candidates' trial ids in a seeded random order."""
        rng = np.random.default_rng(self.seed)
        return [self.candidates[i].trial_id for i in rng.permutation(len(self.candidates))]

    def can_continue(self, trial_id: str) -> bool:
        """The trial was started, is not pending, and can be trained further."""
        return (
            trial_id in self.epoch
            and trial_id not in self.pending
            and self.status.get(trial_id) == "ok"
            and self.epoch[trial_id] < self.max_epochs
        )

    def step(self, trial_id: str, to_epoch: int, **info: Any) -> Step:
        """A step for ``trial_id`` (marked pending)."""
        self.pending.add(trial_id)
        return Step(trial_id, self.config[trial_id], min(int(to_epoch), self.max_epochs), info)

    def continue_best(self, rungs: list[int]) -> Step | None:
        """Continue the best-scoring unfinished trial to its next rung (``None`` if none)."""
        open_trials = [t for t in self.epoch if self.can_continue(t)]
        if not open_trials:
            return None
        best = max(open_trials, key=lambda t: (self.score.get(t, -math.inf), -self.position[t]))
        nxt = next(r for r in rungs if r > self.epoch[best])
        return self.step(best, nxt, reason="continue best unfinished")

    # ----------------------------------------------------------- protocol
    def ask(self, budget_left: float | None = None) -> Step | None:  # pragma: no cover
        raise NotImplementedError

    def tell(self, result: StepResult) -> None:
        """Record a step's outcome."""
        tid = result.trial_id
        self.pending.discard(tid)
        if result.records:
            self.epoch[tid] = result.last_epoch
            score = result.records[-1].score
            self.score[tid] = float(score) if score is not None else -math.inf
        else:
            self.epoch.setdefault(tid, 0)
            self.score.setdefault(tid, -math.inf)
        self.status[tid] = result.status
        if result.status == "ok" and self.epoch[tid] >= self.max_epochs:
            self.status[tid] = "ended"
        self.on_tell(result)

    def on_tell(self, result: StepResult) -> None:
        """Hook for subclasses (called after the bookkeeping of :meth:`tell`)."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (trial ids, epochs, scores, statuses, pending)."""
        return {
            "epoch": dict(self.epoch),
            "score": {k: (v if math.isfinite(v) else None) for k, v in self.score.items()},
            "status": dict(self.status),
            "pending": sorted(self.pending),
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` produced (same ctx)."""
        unknown = set(state["epoch"]) - set(self.config)
        if unknown:
            raise ValueError(f"state names trials that are not candidates: {sorted(unknown)[:5]}")
        self.epoch = {k: int(v) for k, v in state["epoch"].items()}
        self.score = {k: (-math.inf if v is None else float(v)) for k, v in state["score"].items()}
        self.status = dict(state["status"])
        self.pending = set(state["pending"])
        self.load_extra_state(state.get("extra", {}))

    def extra_state(self) -> dict[str, Any]:
        """Subclass state (JSON types)."""
        return {}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        """Restore :meth:`extra_state`."""


class OrderedFullTraining(PoolOptimizer):
    """Trains candidates one after another to ``max_epochs``, in a fixed order."""

    def __init__(self, ctx: TaskContext, order: list[str], pool_size: int = DEFAULT_POOL_SIZE,
                 reason: str = "") -> None:
        super().__init__(ctx, pool_size)
        self.order = order
        self.reason = reason
        self.next_index = 0

    def ask(self, budget_left: float | None = None) -> Step | None:
        """The next candidate in order, trained to the end in one step."""
        if self.next_index >= len(self.order):
            return None
        tid = self.order[self.next_index]
        self.next_index += 1
        return self.step(tid, self.max_epochs, reason=self.reason, rank=self.next_index)

    def extra_state(self) -> dict[str, Any]:
        return {"next_index": self.next_index}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        self.next_index = int(extra["next_index"])


class SuccessiveHalvingBracket:
    """One synchronous successive-halving bracket over ``members``.

    Members are trained to ``rungs[start]``; when all results of a rung are in,
    ``keep(rung_index, n)`` of them (best score first, only those that can
    continue) go on to the next rung, continuing from their checkpoint.
    """

    def __init__(self, members: list[str], rungs: list[int], start: int, keep) -> None:
        self.rungs = rungs
        self.rung = start
        self.keep = keep
        self.todo = list(members)  # to be issued at the current rung
        self.issued: list[str] = []
        self.done = not members

    def next_step(self, opt: PoolOptimizer) -> Step | None:
        """The next step of this bracket, or ``None`` if it waits for results or is done."""
        while not self.done:
            if self.todo:
                tid = self.todo.pop(0)
                self.issued.append(tid)
                return opt.step(tid, self.rungs[self.rung], rung=self.rung)
            if any(t in opt.pending for t in self.issued):
                return None  # wait for this rung's results
            self._promote(opt)
        return None

    def _promote(self, opt: PoolOptimizer) -> None:
        if self.rung + 1 >= len(self.rungs):
            self.done = True
            return
        ranked = sorted(self.issued, key=lambda t: (-opt.score.get(t, -math.inf), opt.position[t]))
        n_keep = self.keep(self.rung, len(ranked))
        survivors = [t for t in ranked[:n_keep] if opt.can_continue(t)]
        self.rung += 1
        self.todo, self.issued = survivors, []
        self.done = not survivors

    def state(self) -> dict[str, Any]:
        return {"rung": self.rung, "todo": self.todo, "issued": self.issued, "done": self.done}

    def load(self, state: dict[str, Any]) -> None:
        self.rung = int(state["rung"])
        self.todo = list(state["todo"])
        self.issued = list(state["issued"])
        self.done = bool(state["done"])


class OneEpochTopK(PoolOptimizer):
    """Every candidate 1 epoch, then the top ``first_keep`` fraction, halving up to the end."""

    def __init__(self, ctx: TaskContext, first_keep: float = 0.1, eta: int = 2,
                 pool_size: int = DEFAULT_POOL_SIZE) -> None:
        super().__init__(ctx, pool_size)
        if not 0 < first_keep <= 1:
            raise ValueError(f"first_keep must be in (0, 1], got {first_keep}")
        self.first_keep, self.eta = first_keep, eta
        self.rungs = fidelity_rungs(self.max_epochs, 1, 3)

        def keep(rung: int, n: int) -> int:
            frac = self.first_keep if rung == 0 else 1.0 / self.eta
            return max(1, math.ceil(n * frac))

        self.bracket = SuccessiveHalvingBracket(self.random_order(), self.rungs, 0, keep)

    def ask(self, budget_left: float | None = None) -> Step | None:
        """Next step of the 1-epoch sweep / halving; then continue the best unfinished."""
        step = self.bracket.next_step(self)
        if step is not None or not self.bracket.done:
            return step
        return self.continue_best(self.rungs)

    def extra_state(self) -> dict[str, Any]:
        return {"bracket": self.bracket.state()}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        self.bracket.load(extra["bracket"])


# ------------------------------------------------------------- encodings
_CATEGORICAL = ("model", "opt", "sched", "data_augmentation", "auto_augment", "opt_betas")


@functools.lru_cache(maxsize=65536)
def encode_config(cfg: Config) -> dict[str, float]:
    """A simple numeric encoding for nearest-neighbour matching between tables.

    Ordinal hyperparameters become their (interpolated) position on the v6
    grid, scaled to [0, 1] (the grids are near log-spaced, so this is a
    log-like scale); inactive conditionals and "off" become -0.5; booleans
    0/1; categoricals one-hot (keys ``"name=value"``). Cached: do not mutate the result.
    """
    from hubtune.space.searchspace import ORDINAL, V6_CHOICES

    out: dict[str, float] = {}
    for name, value in cfg.to_dict().items():
        if name in _CATEGORICAL:
            token = "none" if value is None else str(tuple(value) if isinstance(value, list) else value)
            out[f"{name}={token}"] = 1.0
        elif isinstance(value, bool):
            out[name] = float(value)
        elif name in ORDINAL:
            if value is None:
                out[name] = -0.5
                continue
            grid = sorted(float(v) for v in V6_CHOICES[name] if v is not None)
            pos = float(np.interp(float(value), grid, np.arange(len(grid))))
            out[name] = pos / max(len(grid) - 1, 1)
    return out


def encode_matrix(configs: list[Config], keys: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Stack :func:`encode_config` vectors (columns ``keys``, default: the union, sorted)."""
    encoded = [encode_config(c) for c in configs]
    if keys is None:
        keys = sorted({k for e in encoded for k in e})
    col = {k: j for j, k in enumerate(keys)}
    mat = np.zeros((len(configs), len(keys)))
    for i, e in enumerate(encoded):
        for k, v in e.items():
            j = col.get(k)
            if j is not None:
                mat[i, j] = v
    return mat, keys


def default_config(model: str) -> Config:
    """hubtune's default finetuning config for ``model`` (``Config``'s defaults)."""
    return Config(model=model)


# ------------------------------------------------------------- factories
def make_one_epoch_topk(ctx: TaskContext, first_keep: float = 0.1, eta: int = 2) -> OneEpochTopK:
    """Factory of ``one_epoch_topk`` (see the module docstring)."""
    return OneEpochTopK(ctx, first_keep=first_keep, eta=eta)


def make_largest_model_default(ctx: TaskContext) -> OrderedFullTraining:
    """Factory of ``largest_model_default`` (see the module docstring)."""
    pool = candidate_pool(ctx)
    first_seen: dict[str, int] = {}
    for i, c in enumerate(pool):
        first_seen.setdefault(c.config.model, i)

    def size_key(model: str) -> tuple[int, float, int]:
        d = ctx.descriptors.get(model)
        return (0, -d.params_m, first_seen[model]) if d is not None else (1, 0.0, first_seen[model])

    models = sorted(first_seen, key=size_key)
    per_model: dict[str, list[str]] = {}
    for m in models:
        members = [c for c in pool if c.config.model == m]
        mat, keys = encode_matrix([c.config for c in members])
        ref, _ = encode_matrix([default_config(m)], keys)
        dist = np.linalg.norm(mat - ref, axis=1)
        ranked = sorted(range(len(members)), key=lambda i: (dist[i], i))
        per_model[m] = [members[i].trial_id for i in ranked]
    order = []
    for depth in range(max(len(v) for v in per_model.values())):
        order.extend(per_model[m][depth] for m in models if depth < len(per_model[m]))
    return OrderedFullTraining(ctx, order, reason="largest model, closest to default")


_ENCODED_RUNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _encoded_runs(runs: Any) -> tuple[np.ndarray, list[str], np.ndarray, dict[Config, int]]:
    """Encoded configs, column keys, normalized final scores and exact-match index of a
    dataset's runs (cached per ``DatasetRuns`` object)."""
    cached = _ENCODED_RUNS.get(runs)
    if cached is None:
        mat, keys = encode_matrix(runs.configs)
        last = runs.scores[np.arange(len(runs)), runs.lengths - 1]
        span = runs.best - runs.worst
        norm = (last - runs.worst) / span if span > 0 else np.ones(len(runs))
        exact = {cfg: i for i, cfg in enumerate(runs.configs)}
        cached = (mat, keys, norm, exact)
        _ENCODED_RUNS[runs] = cached
    return cached


def mean_normalized_final_scores(
    configs: list[Config], train_metadata: MetaDataset
) -> np.ndarray:
    """For each config, the mean over ``train_metadata``'s datasets of the normalized
    final score ``(last - worst) / (best - worst)`` of the same config there (exact
    ``Config`` match, else its Euclidean nearest neighbour in :func:`encode_config`'s space)."""
    names = [d for d in train_metadata.datasets if len(train_metadata[d])]
    if not names:
        raise ValueError("best_on_average needs at least one non-empty meta-training dataset")
    target, keys = encode_matrix(configs)
    total = np.zeros(len(configs))
    for name in names:
        source, skeys, norm, exact = _encoded_runs(train_metadata[name])
        # distance over the union of columns = over the target's columns + the rest of the source's
        col = {k: j for j, k in enumerate(skeys)}
        shared = [(i, col[k]) for i, k in enumerate(keys) if k in col]
        src = np.zeros((len(source), len(keys)))
        if shared:
            ti, si = zip(*shared, strict=True)
            src[:, list(ti)] = source[:, list(si)]
        rest = np.ones(len(skeys), dtype=bool)
        rest[[j for _, j in shared]] = False
        extra = (source[:, rest] ** 2).sum(axis=1)
        d2 = ((target**2).sum(axis=1)[:, None] - 2.0 * target @ src.T
              + ((src**2).sum(axis=1) + extra)[None, :])
        nearest = d2.argmin(axis=1)
        for i, cfg in enumerate(configs):
            j = exact.get(cfg)
            total[i] += norm[nearest[i] if j is None else j]
    return total / len(names)


def make_best_on_average(ctx: TaskContext) -> OrderedFullTraining:
    """Factory of ``best_on_average`` (see the module docstring)."""
    if ctx.train_metadata is None:
        raise ValueError("best_on_average needs meta-training data (ctx.train_metadata)")
    pool = candidate_pool(ctx)
    score = mean_normalized_final_scores([c.config for c in pool], ctx.train_metadata)
    ranked = sorted(range(len(pool)), key=lambda i: (-score[i], i))
    return OrderedFullTraining(
        ctx, [pool[i].trial_id for i in ranked], reason="best on average over meta-training"
    )
