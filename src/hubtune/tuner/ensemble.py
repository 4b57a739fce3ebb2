"""Greedy ensemble selection over the trials a search trained (``hubtune run --ensemble K``).

After the search, every trial whose checkpoint exists is a candidate member.
Its class probabilities on the validation split (and, once chosen as a member,
on the test split) are computed once and cached in ``RUN/ensemble-cache/``
(:mod:`hubtune.tuner.ensemble_cache`), so finishing the run again (a resume, a
re-export) computes nothing new for an unchanged checkpoint. Under the run's
budget (``time_left``) fewer candidates are evaluated, or a member whose test
pass does not fit is left out, rather than the run overrunning
(:func:`select_members`).

Selection is Caruana et al. (2004), as AutoGluon does it: start from an empty
ensemble and, ``K`` times, add the candidate (with replacement) whose addition
gives the best validation score of the averaged probabilities; ties go to the
lower log-loss, then to the better single model. The weights are the counts
divided by ``K``. The weights are chosen on validation only; the test split is
scored once, with the chosen weights.

Example::

    from hubtune.tuner.ensemble import greedy_selection
    weights = greedy_selection([p_a, p_b, p_c], labels, rounds=5)   # e.g. [0.6, 0.4, 0.0]

The export to ``best/ensemble/`` and loading it back are in
:mod:`hubtune.tuner.ensemble_export`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hubtune.tuner.ensemble_cache import (  # noqa: F401  (re-exported)
    CACHE_DIR,
    Member,
    MemberCache,
    split_size,
    trial_probabilities,
)

MAX_CANDIDATES = 25
"""At most this many trials (the best by their own validation score) are candidates."""


# ------------------------------------------------------------------ scoring
def score_probs(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1, top-5, balanced accuracy, macro F1 and mean log-loss of ``[N, C]`` probabilities."""
    from hubtune.finetune.metrics import confusion_scores

    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, c = probs.shape
    pred = probs.argmax(1)
    k = min(5, c)
    topk = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    confusion = np.bincount(labels * c + pred, minlength=c * c).reshape(c, c)
    loss = -np.log(np.clip(probs[np.arange(n), labels], 1e-12, None)).mean() if n else 0.0
    return {
        "top1": float((pred == labels).mean()) if n else 0.0,
        "top5": float((topk == labels[:, None]).any(1).mean()) if n else 0.0,
        "loss": float(loss),
        **confusion_scores(confusion),
    }


def greedy_selection(candidates: Sequence[np.ndarray], labels: np.ndarray, rounds: int,
                     metric: str = "top1") -> list[float]:
    """Caruana's greedy selection with replacement; returns one weight per candidate.

    ``candidates`` are ``[N, C]`` validation probabilities, best single model
    first (ties in ``metric`` go to the lower log-loss, then to the earlier
    candidate). The weights are counts / ``rounds`` and sum to 1.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"the ensemble needs at least 1 selection round, got {rounds!r}")
    if not candidates:
        raise ValueError("greedy selection needs at least one candidate")
    probs = [np.asarray(p, dtype=np.float64) for p in candidates]
    total = np.zeros_like(probs[0])
    counts = [0] * len(probs)
    for k in range(1, rounds + 1):
        best_i, best_key = 0, (-math.inf, -math.inf)
        for i, p in enumerate(probs):
            s = score_probs((total + p) / k, labels)
            key = (s[metric], -s["loss"])
            if key > best_key:
                best_i, best_key = i, key
        counts[best_i] += 1
        total += probs[best_i]
    return [c / rounds for c in counts]


def weighted_average(probs: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """``sum_i w_i * probs_i`` (members with weight 0 are skipped)."""
    out = np.zeros_like(np.asarray(probs[0], dtype=np.float64))
    for p, w in zip(probs, weights, strict=True):
        if w > 0:
            out += w * np.asarray(p, dtype=np.float64)
    return out


# ------------------------------------------------------------------ the run's ensemble
def next_candidate_fits(time_left: float, spent: Sequence[float], estimate: float | None = None,
                        reserve: float = 0.0) -> bool:
    """Whether one more uncached candidate may be evaluated with ``time_left`` seconds.

    Its cost is the slowest candidate evaluated so far (``spent``), else ``estimate``;
    ``reserve`` seconds must still be left after it (for the members' test pass). With
    neither a measurement nor an estimate it may run while more than ``reserve`` is left.
    """
    need = max(spent) if spent else (estimate if estimate is not None else 0.0)
    return need + reserve <= time_left and time_left > reserve


@dataclass
class _Costs:
    """Seconds to expect for evaluating one more candidate, from what was measured here
    (the cache's own timings) or, before that, from the search (``per_image``)."""

    cache: MemberCache
    data: Any
    per_image: float | None
    load: float = 0.5

    def _rate(self) -> float | None:
        return max(self.cache.image_seconds) if self.cache.image_seconds else self.per_image

    def _load(self) -> float:
        return max(self.cache.load_seconds) if self.cache.load_seconds else self.load

    def split(self, name: str) -> float | None:
        """Load a checkpoint and score it on ``name`` (None: nothing to estimate from)."""
        rate = self._rate()
        return None if rate is None else self._load() + rate * split_size(self.data, name)


def _val_members(cache: MemberCache, data: Any, candidates: Sequence[Path], rounds: int,
                 device: str, on_broken: Callable[[str, str], None],
                 time_left: Callable[[], float] | None, costs: _Costs) -> tuple[list[Member], int]:
    """The candidates' validation probabilities, best candidate first, as many as time
    allows (cached ones are free); returns (members, candidates left out for time)."""
    from hubtune.tuner.export import CHECKPOINT_ERRORS

    members: list[Member] = []
    spent: list[float] = []
    for i, trial_dir in enumerate(candidates):
        hit = cache.cached_member(trial_dir, data)
        if hit is not None:
            members.append(hit)
            continue
        if time_left is not None:
            test = costs.split("test") if split_size(data, "test") else 0.0
            reserve = (test or 0.0) * min(rounds, len(members) + 1)
            if not next_candidate_fits(time_left(), spent, costs.split("val"), reserve):
                rest = [cache.cached_member(t, data) for t in candidates[i + 1:]]
                members.extend(m for m in rest if m is not None)
                return members, 1 + sum(m is None for m in rest)
        t0 = time.monotonic()
        try:
            members.append(cache.get(trial_dir, data, device))
        except CHECKPOINT_ERRORS as exc:
            on_broken(trial_dir.name, (f"{type(exc).__name__}: {exc}".splitlines() or [""])[0][:300])
        spent.append(time.monotonic() - t0)
    return members, 0


def _choose(members: list[Member], labels: np.ndarray, rounds: int, metric: str,
            cache: MemberCache, data: Any, by_id: dict[str, Path], device: str,
            on_broken: Callable[[str, str], None], time_left: Callable[[], float] | None,
            costs: _Costs) -> tuple[list[tuple[Member, float]], int]:
    """Greedy weights on validation, and every chosen member scored on test.

    A chosen member whose test pass no longer fits in ``time_left`` is taken out of
    the pool (the lowest weight first) and the weights are chosen again without it;
    members already scored on test are never taken out. Returns (members with their
    weights, members taken out for time); an empty list when nothing fits.
    """
    from hubtune.tuner.export import CHECKPOINT_ERRORS

    pool, dropped = list(members), 0
    has_test = split_size(data, "test") > 0
    while pool:
        weights = greedy_selection([m.val for m in pool], labels, rounds, metric)
        chosen = [(m, w) for m, w in zip(pool, weights, strict=True) if w > 0]
        missing = [(m, w) for m, w in chosen if m.test is None] if has_test else []
        if not missing:
            return chosen, dropped
        each = costs.split("test")  # None: nothing to estimate from; fits while time is left
        left = math.inf if time_left is None else time_left()
        if (each is None and left > 0) or (each is not None and each * len(missing) <= left):
            member = max(missing, key=lambda mw: mw[1])[0]
            try:
                cache.add_test(member, by_id[member.trial_id], data, device)
            except CHECKPOINT_ERRORS as exc:
                on_broken(member.trial_id, (f"{type(exc).__name__}: {exc}".splitlines()
                                            or [""])[0][:300])
                pool.remove(member)
            continue
        # the lowest weight, then the lowest-ranked candidate, leaves the pool
        out = min(missing, key=lambda mw: (mw[1], -pool.index(mw[0])))[0]
        pool.remove(out)
        dropped += 1
    return [], dropped


def select_members(run_dir: Path, data: Any, trial_dirs: Sequence[Path], rounds: int, metric: str,
                   device: str, on_broken: Callable[[str, str], None],
                   time_left: Callable[[], float] | None = None,
                   per_image: float | None = None,
                   load_seconds: float = 0.5) -> dict[str, Any] | None:
    """Candidates' validation probabilities (cached), greedy weights on val, and only the
    chosen members scored on test.

    ``trial_dirs`` are best first; at most :data:`MAX_CANDIDATES` are used. A
    checkpoint that cannot be loaded is reported as ``on_broken(trial_id, reason)``
    and skipped. ``time_left`` (seconds of the run's budget left for this; ``None``:
    no limit) bounds the work: a candidate is evaluated only if it and the test
    passes of the members still fit (:func:`next_candidate_fits`; the candidates are
    best first, so the least promising are cut; cached ones cost nothing and are
    always used), and a chosen member whose test pass does not fit is replaced by
    choosing again without it. ``per_image`` / ``load_seconds``: seconds per image of
    an evaluation and per checkpoint load, measured by the search, for the estimates
    before anything is measured here.

    Returns ``None`` when no candidate loads or nothing fits in time, else a dict
    with ``members`` (trial id, epoch, weight, count), ``val``/``test`` scores of the
    ensemble, ``cache`` (how many candidates were evaluated / reused, and which were
    scored on test now), ``cut_by_budget`` (candidates left unevaluated for lack of
    time) and ``dropped_by_budget`` (chosen members left out because their test pass
    did not fit).
    """
    cache = MemberCache(run_dir)
    candidates = [Path(t) for t in list(trial_dirs)[:MAX_CANDIDATES]]
    costs = _Costs(cache, data, per_image, load_seconds)
    members, cut = _val_members(cache, data, candidates, rounds, device, on_broken,
                                time_left, costs)
    if not members:
        return None
    val_labels = np.asarray(data.val.labels)
    chosen, dropped = _choose(members, val_labels, rounds, metric, cache, data,
                              {t.name: t for t in candidates}, device, on_broken, time_left, costs)
    if not chosen:
        return None
    out: dict[str, Any] = {
        "rounds": rounds, "metric": metric, "candidates": len(members),
        "members": [{"trial_id": m.trial_id, "epoch": m.epoch, "weight": w,
                     "count": round(w * rounds)} for m, w in chosen],
        "val": score_probs(weighted_average([m.val for m, _ in chosen], [w for _, w in chosen]),
                           val_labels),
        "cache": {"computed": len(cache.computed), "reused": len(members) - len(cache.computed),
                  "computed_trials": list(cache.computed),
                  "test_computed_trials": list(cache.test_computed)},
        "cut_by_budget": cut, "dropped_by_budget": dropped,
    }
    if split_size(data, "test") and all(m.test is not None for m, _ in chosen):
        test = weighted_average([m.test for m, _ in chosen], [w for _, w in chosen])  # type: ignore[misc]
        out["test"] = score_probs(test, np.asarray(data.test.labels))
    return out


def build_ensemble(run_dir: str | Path, data: Any, trial_dirs: Sequence[Path], *, rounds: int,
                   metric: str, device: str, on_broken: Callable[[str, str], None],
                   time_left: Callable[[], float] | None = None,
                   per_image: float | None = None,
                   load_seconds: float = 0.5) -> dict[str, Any] | None:
    """Select the ensemble and add it to ``RUN/best`` (atomically); returns its summary.

    ``time_left`` / ``per_image`` / ``load_seconds``: the time limit of the members'
    evaluation, and the search's seconds per evaluated image and per checkpoint load
    (see :func:`select_members`).

    The summary (members, weights, val/test scores, inference cost) is also
    written under ``"ensemble"`` in ``best/metrics.json``. ``None``: no candidate
    could be loaded, or none fitted in time (``best/`` is left as the single-model export).
    """
    from hubtune.tuner.ensemble_export import add_ensemble_to_best

    run_dir = Path(run_dir)
    summary = select_members(run_dir, data, trial_dirs, rounds, metric, device, on_broken,
                             time_left, per_image, load_seconds)
    if summary is None:
        return None
    by_id = {Path(t).name: Path(t) for t in trial_dirs}
    return add_ensemble_to_best(run_dir / "best", data, summary, by_id, device)
