"""Greedy ensemble selection over the trials a search trained (``hubtune run --ensemble K``).

After the search, every trial whose checkpoint exists is a candidate member.
Its class probabilities on the validation (and test) split are computed once
and cached in ``RUN/ensemble-cache/`` (one safetensors file per trial and
checkpoint epoch, indexed by ``index.json``), so finishing the run again (a
resume, a re-export) computes nothing new for an unchanged checkpoint.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

CACHE_DIR = "ensemble-cache"
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


# ------------------------------------------------------------------ member probabilities
@torch.no_grad()
def trial_probabilities(trial: Any, split: Any, batch_size: int = 256) -> np.ndarray:
    """``[N, C]`` softmax of a loaded :class:`~hubtune.finetune.trial.Trial` on ``split``
    (the trial's own normalisation, un-augmented, in dataset order)."""
    trial.model.eval()
    out = []
    for x, _y in trial.pipeline.eval_batches(split.images, split.labels, batch_size):
        with trial._autocast():
            logits = trial.model(x)
        out.append(logits.float().softmax(-1).cpu())
    return torch.cat(out).numpy().astype(np.float32)


@dataclass
class Member:
    """A candidate: its trial, checkpoint epoch, validation (and test) probabilities."""

    trial_id: str
    epoch: int
    val: np.ndarray
    test: np.ndarray | None


class MemberCache:
    """Per-trial probabilities cached in ``RUN/ensemble-cache`` (safetensors + ``index.json``).

    The key is (trial id, checkpoint epoch): a checkpoint trained further is
    evaluated again; an unchanged one never is. ``computed`` lists the trial ids
    evaluated by this object (the rest came from the cache).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.root = Path(run_dir) / CACHE_DIR
        self.index_path = self.root / "index.json"
        self.index: dict[str, Any] = {}
        if self.index_path.exists():
            import json

            try:
                loaded = json.loads(self.index_path.read_text())
                self.index = loaded.get("members", {}) if isinstance(loaded, dict) else {}
            except (ValueError, OSError):
                self.index = {}  # a damaged index only costs recomputation
        self.computed: list[str] = []

    def _cached(self, trial_id: str, epoch: int, sizes: tuple[int, int]) -> Member | None:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        entry = self.index.get(trial_id)
        if not isinstance(entry, dict) or entry.get("epoch") != epoch:
            return None
        try:
            tensors = load_file(str(self.root / str(entry["file"])))
        except (SafetensorError, OSError, ValueError, KeyError):
            return None
        val, test = tensors.get("val"), tensors.get("test")
        if val is None or val.shape[0] != sizes[0] or (sizes[1] and (test is None or test.shape[0] != sizes[1])):
            return None
        return Member(trial_id, epoch, val, test if sizes[1] else None)

    def _key(self, trial_dir: Path, data: Any) -> tuple[str, int, tuple[int, int]] | None:
        from hubtune.finetune.checkpoint import read_state

        try:
            epoch = int(read_state(trial_dir)["epoch"])
        except Exception:  # noqa: BLE001 - an unreadable state is reported by get()
            return None
        test_split = getattr(data, "test", None)
        n_test = len(test_split.labels) if test_split is not None else 0
        return trial_dir.name, epoch, (len(data.val.labels), n_test)

    def cached_member(self, trial_dir: Path, data: Any) -> Member | None:
        """The cached member of ``trial_dir`` at its current checkpoint, or ``None``."""
        key = self._key(trial_dir, data)
        return None if key is None else self._cached(*key)

    def is_cached(self, trial_dir: Path, data: Any) -> bool:
        """Whether :meth:`get` would compute nothing for ``trial_dir``."""
        return self.cached_member(trial_dir, data) is not None

    def get(self, trial_dir: Path, data: Any, device: str) -> Member:
        """The member of ``trial_dir`` (from the cache, or evaluated and stored)."""
        from safetensors.numpy import save_file

        from hubtune.core.atomic import write_json_atomic
        from hubtune.finetune.checkpoint import read_state
        from hubtune.tuner.export import _load_trial

        trial_id = trial_dir.name
        epoch = int(read_state(trial_dir)["epoch"])
        test_split = getattr(data, "test", None)
        n_test = len(test_split.labels) if test_split is not None else 0
        hit = self._cached(trial_id, epoch, (len(data.val.labels), n_test))
        if hit is not None:
            return hit
        _state, _config, trial = _load_trial(trial_dir, data, device)
        val = trial_probabilities(trial, data.val)
        test = trial_probabilities(trial, test_split) if n_test else None
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"{trial_id}-e{epoch}.safetensors"
        tensors = {"val": val} if test is None else {"val": val, "test": test}
        tmp = self.root / f".{name}.tmp"
        save_file(tensors, str(tmp))
        tmp.replace(self.root / name)
        old = self.index.get(trial_id)
        self.index[trial_id] = {"epoch": epoch, "file": name}
        write_json_atomic(self.index_path, {"format_version": 1, "members": self.index}, indent=2)
        if isinstance(old, dict) and old.get("file") != name:
            (self.root / str(old.get("file"))).unlink(missing_ok=True)
        self.computed.append(trial_id)
        return Member(trial_id, epoch, val, test)


# ------------------------------------------------------------------ the run's ensemble
def next_candidate_fits(time_left: float, spent: Sequence[float], have: int) -> bool:
    """Whether one more uncached candidate may be evaluated with ``time_left`` seconds.

    ``spent``: seconds each candidate evaluated so far took. The first candidate
    is always evaluated (without it there is no ensemble at all); after that a
    candidate is only started if the slowest one so far would still end in time.
    """
    if have == 0 or not spent:
        return True
    return max(spent) <= time_left


def select_members(run_dir: Path, data: Any, trial_dirs: Sequence[Path], rounds: int, metric: str,
                   device: str, on_broken: Callable[[str, str], None],
                   time_left: Callable[[], float] | None = None) -> dict[str, Any] | None:
    """Candidates' probabilities (cached), greedy weights on val, one test score.

    ``trial_dirs`` are best first; at most :data:`MAX_CANDIDATES` are used. A
    checkpoint that cannot be loaded is reported as ``on_broken(trial_id, reason)``
    and skipped. ``time_left`` (seconds of the run's budget left for this; ``None``:
    no limit) stops evaluating further candidates once the next would not end in
    time (:func:`next_candidate_fits`); the candidates are best first, so the
    budget cuts the least promising ones, and cached ones cost nothing and are
    always used. Returns ``None`` when no candidate loads, else a dict with
    ``members`` (trial id, epoch, weight, count), ``val``/``test`` scores of the
    ensemble, ``cache`` (how many members were computed / reused) and
    ``cut_by_budget`` (candidates left out for lack of time).
    """
    import time

    from hubtune.tuner.export import CHECKPOINT_ERRORS

    cache = MemberCache(run_dir)
    members: list[Member] = []
    spent: list[float] = []
    candidates = list(trial_dirs)[:MAX_CANDIDATES]
    cut = 0
    for i, trial_dir in enumerate(candidates):
        cached = cache.is_cached(Path(trial_dir), data)
        if (not cached and time_left is not None
                and not next_candidate_fits(time_left(), spent, len(members))):
            hits = [cache.cached_member(Path(t), data) for t in candidates[i:]]
            members.extend(m for m in hits if m is not None)
            cut = sum(m is None for m in hits)
            break
        t0 = time.monotonic()
        try:
            members.append(cache.get(Path(trial_dir), data, device))
        except CHECKPOINT_ERRORS as exc:
            on_broken(Path(trial_dir).name, (f"{type(exc).__name__}: {exc}".splitlines() or [""])[0][:300])
        if not cached:
            spent.append(time.monotonic() - t0)
    if not members:
        return None
    val_labels = np.asarray(data.val.labels)
    weights = greedy_selection([m.val for m in members], val_labels, rounds, metric)
    chosen = [(m, w) for m, w in zip(members, weights, strict=True) if w > 0]
    out: dict[str, Any] = {
        "rounds": rounds, "metric": metric, "candidates": len(members),
        "members": [{"trial_id": m.trial_id, "epoch": m.epoch, "weight": w,
                     "count": round(w * rounds)} for m, w in chosen],
        "val": score_probs(weighted_average([m.val for m, _ in chosen], [w for _, w in chosen]),
                           val_labels),
        "cache": {"computed": len(cache.computed), "reused": len(members) - len(cache.computed),
                  "computed_trials": list(cache.computed)},
        "cut_by_budget": cut,
    }
    if all(m.test is not None for m, _ in chosen) and getattr(data, "test", None) is not None:
        test = weighted_average([m.test for m, _ in chosen], [w for _, w in chosen])  # type: ignore[misc]
        out["test"] = score_probs(test, np.asarray(data.test.labels))
    return out


def build_ensemble(run_dir: str | Path, data: Any, trial_dirs: Sequence[Path], *, rounds: int,
                   metric: str, device: str, on_broken: Callable[[str, str], None],
                   time_left: Callable[[], float] | None = None) -> dict[str, Any] | None:
    """Select the ensemble and add it to ``RUN/best`` (atomically); returns its summary.

    ``time_left``: seconds of the run's budget left for evaluating candidates
    (see :func:`select_members`).

    The summary (members, weights, val/test scores, inference cost) is also
    written under ``"ensemble"`` in ``best/metrics.json``. ``None``: no candidate
    could be loaded (``best/`` is left as the single-model export).
    """
    from hubtune.tuner.ensemble_export import add_ensemble_to_best

    run_dir = Path(run_dir)
    summary = select_members(run_dir, data, trial_dirs, rounds, metric, device, on_broken, time_left)
    if summary is None:
        return None
    by_id = {Path(t).name: Path(t) for t in trial_dirs}
    return add_ensemble_to_best(run_dir / "best", data, summary, by_id, device)
