"""Held-out evaluation of surrogates: calibration and ranking of unseen models.

Run as a module (leave-one-dataset-out surrogates are meta-trained or taken
from the per-fold cache)::

    python -m hubtune.surrogate.evaluate calibration --datasets APL,PLK,...
    python -m hubtune.surrogate.evaluate unseen-models --models a,b,c,d --datasets ...

*Calibration*: on a held-out dataset, the GP conditions on the first ``k``
epochs of some runs (``k`` random, as during a search) and predicts the next
epoch of other started runs and the first epoch of never-started ones; we
report the fraction of true scores inside the central 50% and 90% predictive
intervals (observation noise included), and the mean absolute error.

*Unseen models*: the surrogate is meta-trained without the test dataset AND
without every run of the held-out models; on the test dataset it predicts,
zero-shot, the final (epoch 50) score of the held-out models' runs; we report
Spearman's rank correlation with their best recorded score (``*`` keys),
over all runs of the dataset (``*_all_runs``), and between per-model mean
predicted and true scores over all models (``*_model_rank``: are the unseen
models placed sensibly among the known ones?), next to a surrogate that did
see those models and one that describes models by a one-hot (which cannot
know an unseen model).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hubtune.hub.descriptor import ModelDescriptor
from hubtune.surrogate.cache import surrogate_for
from hubtune.surrogate.features import curve_rows
from hubtune.surrogate.metatrain import MetaTrainSettings
from hubtune.surrogate.model import Surrogate


def _rows(sur: Surrogate, runs: Any, idx: np.ndarray, prefix: np.ndarray, target: np.ndarray,
          describe: Callable[[str], ModelDescriptor | None]) -> np.ndarray:
    """Rows asking for epoch ``target[j]`` of run ``idx[j]`` after its first ``prefix[j]`` epochs.

    Built by :func:`~hubtune.surrogate.features.curve_rows` exactly as the
    optimizer builds them online (the runs' ``schedule_epochs`` honoured).
    """
    configs = [runs.configs[i] for i in idx]
    descs = {c.model: describe(c.model) for c in configs}
    static = sur.features.static_rows(configs, descs, runs.meta_features)
    return curve_rows(static, np.asarray(runs.scores)[np.asarray(idx, dtype=np.int64)], prefix, target,
                      getattr(runs, "schedule_epochs", None))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def calibration(sur: Surrogate, runs: Any, describe: Callable[[str], ModelDescriptor | None],
                seed: int = 0, n_observed_runs: int = 30, n_query: int = 60) -> dict[str, float]:
    """Interval coverage and error of ``sur`` on one held-out dataset (see module docstring)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(runs.run_ids))
    obs_runs = order[:n_observed_runs]
    rest = order[n_observed_runs:n_observed_runs + n_query]
    xs, ys = [], []
    for i in obs_runs:
        k = int(rng.integers(1, runs.lengths[i] + 1))
        e = np.arange(1, k + 1)
        xs.append(_rows(sur, runs, np.full(k, i), e - 1, e, describe))
        ys.append(runs.scores[i, :k])
    x_obs, y_obs = np.concatenate(xs), np.concatenate(ys)
    # queries: half the rest started (predict the epoch after a random prefix), half never started
    prefix = np.array([int(rng.integers(0, runs.lengths[i])) if j % 2 else 0 for j, i in enumerate(rest)])
    target = prefix + 1
    truth = runs.scores[rest, prefix]
    mean, std = sur.predict(x_obs, y_obs, _rows(sur, runs, rest, prefix, target, describe))
    sd = np.sqrt(std**2 + float(sur.likelihood.noise))
    err = np.abs(mean - truth)
    return {
        "coverage50": float(np.mean(err <= 0.6745 * sd)),
        "coverage90": float(np.mean(err <= 1.6449 * sd)),
        "mae": float(err.mean()),
        "queries": int(len(rest)),
    }


def _without_models(md: Any, models: Sequence[str]) -> Any:
    from hubtune.metadata import DatasetRuns, MetaDataset

    parts = []
    for name in md.datasets:
        r = md[name]
        keep = np.array([c.model not in models for c in r.configs])
        parts.append(DatasetRuns(
            r.dataset, [x for x, k in zip(r.run_ids, keep, strict=True) if k],
            [c for c, k in zip(r.configs, keep, strict=True) if k],
            r.scores[keep], r.seconds[keep], r.lengths[keep], r.meta_features,
            r.schedule_epochs,
        ))
    return MetaDataset(parts)


def unseen_models(md: Any, models: Sequence[str], test: str,
                  describe: Callable[[str], ModelDescriptor | None]) -> dict[str, float]:
    """Spearman of zero-shot final-score predictions for ``models``' runs on ``test``."""
    train = md.without([test])
    runs = md[test]
    idx = np.array([i for i, c in enumerate(runs.configs) if c.model in models])
    truth = np.nanmax(runs.scores[idx], axis=1)
    out: dict[str, float] = {"runs": float(len(idx))}
    variants = {
        "unseen_descriptor": (_without_models(train, models), MetaTrainSettings()),
        "seen_descriptor": (train, MetaTrainSettings()),
        "unseen_onehot": (_without_models(train, models), MetaTrainSettings(model_encoding="onehot")),
    }
    all_idx = np.arange(len(runs.run_ids))
    all_truth = np.nanmax(runs.scores, axis=1)
    models_all = sorted({c.model for c in runs.configs})
    for name, (data, settings) in variants.items():
        sur = surrogate_for(data, describe, seed=0, settings=settings)
        x = _rows(sur, runs, idx, np.zeros(len(idx), dtype=int), np.full(len(idx), 50), describe)
        out[name] = _spearman(sur.prior_mean(x), truth)
        # the held-out models placed among all models: per-model mean predicted vs true
        xa = _rows(sur, runs, all_idx, np.zeros(len(all_idx), dtype=int), np.full(len(all_idx), 50), describe)
        pred = sur.prior_mean(xa)
        per_pred = [pred[[c.model == m for c in runs.configs]].mean() for m in models_all]
        per_true = [all_truth[[c.model == m for c in runs.configs]].mean() for m in models_all]
        out[name + "_model_rank"] = _spearman(np.array(per_pred), np.array(per_true))
        out[name + "_all_runs"] = _spearman(pred, all_truth)
    return out


def _describe(name: str) -> ModelDescriptor | None:
    try:
        from hubtune.hub import get_descriptor  # type: ignore[attr-defined]

        return get_descriptor(name)
    except Exception:
        return None


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry (see module docstring)."""
    import torch

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description="held-out evaluation of Quick-Tune surrogates")
    ap.add_argument("what", choices=["calibration", "unseen-models"])
    ap.add_argument("--metadata", default="../shared/metadata/quicktune-extended")
    ap.add_argument("--datasets", default="", help="comma-separated test datasets (default: all)")
    ap.add_argument("--models", default="", help="held-out models (unseen-models)")
    args = ap.parse_args(argv)
    from hubtune.metadata import load_metadata

    md = load_metadata(args.metadata)
    datasets = [d for d in args.datasets.split(",") if d] or md.datasets
    results = {}
    for ds in datasets:
        if args.what == "calibration":
            sur = surrogate_for(md.without([ds]), _describe, seed=0, settings=MetaTrainSettings())
            results[ds] = calibration(sur, md[ds], _describe)
        else:
            models = [m for m in args.models.split(",") if m]
            results[ds] = unseen_models(md, models, ds, _describe)
        print(ds, json.dumps(results[ds]), flush=True)
    keys = [k for k in next(iter(results.values())) if k not in ("queries", "runs")]
    print("mean", json.dumps({k: round(float(np.nanmean([r[k] for r in results.values()])), 4) for k in keys}))


if __name__ == "__main__":
    main()
