"""Meta-training of the surrogate on a meta-dataset of learning curves.

Episodes are drawn from ONE dataset at a time (a few dozen runs, a few
(prefix, target-epoch) pairs each), and the deep-kernel GP maximises their
exact marginal likelihood: the network learns a zero-shot prior mean and a
kernel under which observations of a dataset inform predictions on it. A few
training datasets are held out for model selection (the checkpoint with the
best held-out marginal likelihood is kept). The cost model is fitted on the
same training datasets. Everything is seeded: same data + seed -> same weights.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import gpytorch
import numpy as np
import torch

from hubtune.core.metafeatures import DatasetMetaFeatures
from hubtune.hub.descriptor import ModelDescriptor
from hubtune.space.config import Config
from hubtune.surrogate.cost import CostModel
from hubtune.surrogate.features import FeatureBuilder, assemble_rows, curve_table, epoch_scale
from hubtune.surrogate.model import Surrogate


class _Runs(Protocol):
    configs: list[Config]
    scores: np.ndarray
    seconds: np.ndarray
    meta_features: DatasetMetaFeatures
    schedule_epochs: int | None


class MetaTrainError(ValueError):
    """Raised when meta-training data is unusable (too few datasets, empty curves)."""


@dataclass
class MetaTrainSettings:
    """Knobs of meta-training (defaults: ~30 s on one CPU core for 19 datasets)."""

    steps: int = 1200
    runs_per_episode: int = 32
    pairs_per_run: int = 4
    lr: float = 2e-3
    hidden: int = 128
    emb: int = 16
    val_datasets: int = 2
    eval_every: int = 100
    model_encoding: str = "descriptor"
    residual_mean: bool = False
    """Prior mean = last observed score + the network's correction."""
    mean_loss_weight: float = 0.0
    """Weight of an auxiliary squared error of the prior-mean head (keeps the zero-shot
    mean sharp: with the marginal likelihood alone the kernel absorbs what the mean
    should predict, e.g. that the next epoch scores about what the last one did)."""


@dataclass
class _Prepared:
    name: str
    static: np.ndarray  # [n_runs, static_dim]
    scores: np.ndarray  # [n_runs, E] fraction, NaN after end
    lengths: np.ndarray  # [n_runs]
    curve: np.ndarray  # [n_runs, E + 1, N_CURVE]: curve features of each prefix length
    schedule_epochs: int | None = None  # the runs' schedule length (None: the meta-dataset's 50)

    @property
    def epoch_scale(self) -> float:
        """Meta-dataset epochs per recorded epoch (50 / schedule_epochs)."""
        return epoch_scale(self.schedule_epochs)


def _lengths(scores: np.ndarray) -> np.ndarray:
    finite = np.isfinite(scores)
    # length = index of the last finite epoch + 1 (curves are NaN after their end)
    idx = np.where(finite.any(1), finite.shape[1] - np.argmax(finite[:, ::-1], axis=1), 0)
    return idx.astype(np.int64)


def _prepare(name: str, runs: _Runs, fb: FeatureBuilder, descriptors: dict[str, ModelDescriptor | None]) -> _Prepared:
    scores = np.asarray(runs.scores, dtype=np.float64)
    lengths = _lengths(scores)
    keep = lengths > 0
    scores, lengths = scores[keep], lengths[keep]
    configs = [c for c, k in zip(runs.configs, keep, strict=True) if k]
    static = fb.static_rows(configs, descriptors, runs.meta_features, runs.schedule_epochs)
    # Runs whose schedules spanned another length are presented as the same fraction of
    # a 50-epoch schedule, exactly as QuickTune presents hubtune run's epochs
    # (QuickTuneSettings.schedule_epochs): features.curve_table / assemble_rows scale them.
    curve = curve_table(scores, runs.schedule_epochs)
    return _Prepared(name, static, np.nan_to_num(scores, nan=0.0), lengths, curve, runs.schedule_epochs)


def _episode(rng: np.random.Generator, data: _Prepared, s: MetaTrainSettings) -> tuple[torch.Tensor, torch.Tensor]:
    n = len(data.lengths)
    runs = rng.choice(n, size=min(s.runs_per_episode, n), replace=False)
    runs = np.repeat(runs, s.pairs_per_run)
    L = data.lengths[runs]
    t = rng.integers(1, L + 1)  # target epoch 1..L
    u = rng.random(len(runs))
    p = np.where(u < 0.35, t - 1, np.where(u < 0.6, 0, np.floor(rng.random(len(runs)) * t).astype(np.int64)))
    p = np.minimum(p, t - 1).astype(np.int64)
    x = assemble_rows(data.static[runs], p, t, data.curve[runs, p], data.schedule_epochs)
    y = data.scores[runs, t - 1]
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)


# Long by its docstring, which documents every argument: 52 lines without it.
def metatrain(
    metadata: Any,
    describe: Callable[[str], ModelDescriptor | None],
    seed: int = 0,
    settings: MetaTrainSettings | None = None,
    log: Callable[[str], None] | None = None,
    init: Surrogate | None = None,
    cost: str = "refit",
    cost_datasets: Sequence[str] | None = None,
) -> Surrogate:
    """Meta-train a :class:`Surrogate` (performance GP + cost model) on ``metadata``.

    Args:
        metadata: a :class:`~hubtune.metadata.MetaDataset` (``.datasets``, ``md[name]``).
        describe: model name -> hub descriptor (``None`` if unknown).
        seed: seeds episode sampling, initialisation and the validation split.
        settings: training knobs.
        log: optional progress callback.
        init: continue meta-training this surrogate (e.g. the shipped one) instead of
            starting from random weights: its feature scalers, architecture and
            weights are kept, and its held-out loss before any step competes in the
            model selection, so continuing never returns a surrogate that fits the
            held-out datasets worse than ``init`` did (see :func:`specialise`).
        cost: ``"refit"`` fits the cost model on ``metadata`` (its hardware);
            ``"keep"`` keeps ``init``'s cost model (only with ``init``).
        cost_datasets: fit the cost model on these datasets only (default: all),
            e.g. the ones recorded on the hardware the surrogate will serve.
    """
    s = settings or MetaTrainSettings()
    names = list(metadata.datasets)
    cost_names = _check_arguments(names, init, cost, cost_datasets)
    t0 = time.time()
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    runs = {n: metadata[n] for n in names}
    models = sorted({c.model for r in runs.values() for c in r.configs})
    descriptors = {m: describe(m) for m in models}
    fb = _feature_builder(runs, descriptors, models, s, init)
    n_val = min(s.val_datasets, len(names) - 1)
    val_names = sorted(rng.choice(names, size=n_val, replace=False).tolist()) if n_val else []
    train_names = [n for n in names if n not in val_names]
    prepared = {n: _prepare(n, runs[n], fb, descriptors) for n in names}
    if cost == "keep":
        assert init is not None
        cost_model = copy.deepcopy(init.cost)
    else:
        cost_model = _fit_cost_model(runs, cost_names, descriptors)

    sur = _initial_surrogate(fb, cost_model, s, init)
    val_rng = np.random.default_rng(seed + 1)
    val_batches = [_episode(val_rng, prepared[n], s) for n in val_names for _ in range(6)]
    best_val, best_step, history = _train(sur, s, rng, [prepared[n] for n in train_names], val_batches,
                                          init is not None, log)
    sur.record = {
        "seed": seed,
        "datasets": names,
        "train_datasets": train_names,
        "val_datasets": val_names,
        "models": models,
        "settings": s.__dict__,
        "best_step": best_step,
        "best_val_loss": best_val if val_batches else None,
        "history": history,
        "cost_residual_std": cost_model.residual_std,
        "cost": cost,
        "cost_datasets": cost_names,
        "seconds": round(time.time() - t0, 2),
    }
    _record_lineage(sur, init, getattr(metadata, "provenance", {}), names)
    return sur


def _initial_surrogate(fb: FeatureBuilder, cost_model: CostModel, s: MetaTrainSettings,
                       init: Surrogate | None) -> Surrogate:
    """A copy of ``init``'s network to continue from, or a fresh one with ``s``'s shape."""
    if init is not None:
        sur = Surrogate(fb, cost_model, hidden=init.hidden, emb=init.emb, residual_mean=init.residual_mean)
        sur.gp.load_state_dict(copy.deepcopy(init.gp.state_dict()))
    else:
        sur = Surrogate(fb, cost_model, hidden=s.hidden, emb=s.emb, residual_mean=s.residual_mean)
        sur.likelihood.noise = 1e-3
        sur.gp.covar.outputscale = 0.05
    return sur


def _record_lineage(sur: Surrogate, init: Surrogate | None, provenance: dict[str, Any],
                    names: list[str]) -> None:
    """Record what ``sur`` continued from and the run folders' data it (and ``init``) learnt
    from: the list ``hubtune run --surrogate``'s leak guard refuses."""
    if init is not None:
        sur.record["continued_from"] = {
            k: init.record.get(k) for k in ("command", "datasets", "seed", "best_step", "continued_from")
            if k in init.record
        }
    from hubtune.surrogate.provenance import RECORD_KEY, provenance_entries

    trained_on = list(init.record.get(RECORD_KEY, [])) if init is not None else []
    trained_on += provenance_entries(provenance, names)
    if trained_on:
        sur.record[RECORD_KEY] = trained_on


def _check_arguments(names: list[str], init: Surrogate | None, cost: str,
                     cost_datasets: Sequence[str] | None) -> list[str]:
    """Validate :func:`metatrain`'s arguments; the names of the cost model's datasets."""
    if init is None and len(names) < 2:
        raise MetaTrainError(f"meta-training needs at least 2 datasets, got {len(names)}")
    if not names:
        raise MetaTrainError("meta-training needs at least 1 dataset, got none")
    if cost not in ("refit", "keep"):
        raise MetaTrainError(f"cost must be 'refit' or 'keep', got {cost!r}")
    if cost == "keep" and init is None:
        raise MetaTrainError("cost='keep' needs a surrogate to continue from (init)")
    cost_names = list(cost_datasets) if cost_datasets is not None else names
    unknown = [n for n in cost_names if n not in names]
    if unknown or not cost_names:
        raise MetaTrainError(f"cost_datasets must name datasets of the meta-dataset; unknown: {unknown or 'none given'}")
    return cost_names


def _feature_builder(runs: dict[str, Any], descriptors: dict[str, ModelDescriptor | None], models: list[str],
                     s: MetaTrainSettings, init: Surrogate | None) -> FeatureBuilder:
    """``init``'s feature builder (its network learned on features scaled that way), or a
    new one whose scalers are fitted on these runs' descriptors and meta-features."""
    if init is not None:
        return FeatureBuilder.from_dict(init.features.to_dict())
    fb = FeatureBuilder(model_encoding=s.model_encoding, models=models)
    desc_rows = np.array([d.feature_vector() for d in descriptors.values() if d is not None] or [[0.0] * 5])
    meta_rows = np.array(
        [r.meta_features.vector() for r in runs.values() if r.meta_features is not None] or [[0.0] * 4]
    )
    fb.fit_scalers(desc_rows, meta_rows)
    return fb


def _fit_cost_model(runs: dict[str, Any], cost_names: list[str],
                    descriptors: dict[str, ModelDescriptor | None]) -> CostModel:
    """The cost model fitted on the per-epoch seconds of the runs of ``cost_names``."""
    cfgs, metas, secs = [], [], []
    for n in cost_names:
        r = runs[n]
        per_epoch = np.nanmean(np.where(np.isfinite(r.seconds), r.seconds, np.nan), axis=1)
        lengths = _lengths(np.asarray(r.scores, dtype=np.float64))
        for c, sec, length in zip(r.configs, per_epoch, lengths, strict=True):
            # a run that stopped after its first epoch mostly crashed early: its
            # seconds are not an epoch's cost, so the cost model learns from the rest
            if length >= 2 and np.isfinite(sec) and sec > 0:
                cfgs.append(c)
                metas.append(r.meta_features)
                secs.append(float(sec))
    if not cfgs:
        raise MetaTrainError("no run with at least 2 recorded epochs to fit the cost model on")
    return CostModel().fit(cfgs, descriptors, metas, secs)


def _train(sur: Surrogate, s: MetaTrainSettings, rng: np.random.Generator, train: list[_Prepared],
           val_batches: list[tuple[torch.Tensor, torch.Tensor]], continued: bool,
           log: Callable[[str], None] | None) -> tuple[float, int, list[dict[str, float]]]:
    """Maximise the episodes' marginal likelihood; keep the best held-out checkpoint.

    Leaves ``sur`` in eval mode with the best weights; returns (best held-out
    loss, its step, history). With ``continued``, the starting weights compete.
    """
    gp, lik = sur.gp, sur.likelihood
    gp.train()
    lik.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(lik, gp)
    opt = torch.optim.Adam(gp.parameters(), lr=s.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=s.steps, eta_min=s.lr * 0.05)

    def val_loss() -> float:
        if not val_batches:
            return float("nan")
        total = 0.0
        with torch.no_grad(), gpytorch.settings.max_cholesky_size(4096):
            for x, y in val_batches:
                gp.set_train_data(x, y, strict=False)
                total += float(-mll(gp(x), y))
        return total / len(val_batches)

    best = (float("inf"), copy.deepcopy(gp.state_dict()), 0)
    history: list[dict[str, float]] = []
    if continued and val_batches:
        # the starting point competes: continuing must beat it on the held-out datasets
        vl0 = val_loss()
        history.append({"step": 0, "train_loss": float("nan"), "val_loss": vl0})
        if log:
            log(f"step 0 (initial surrogate): val {vl0:.3f}")
        best = (vl0, copy.deepcopy(gp.state_dict()), 0)
    run_loss = 0.0
    with gpytorch.settings.max_cholesky_size(4096):
        for step in range(1, s.steps + 1):
            x, y = _episode(rng, train[int(rng.integers(len(train)))], s)
            gp.set_train_data(x, y, strict=False)
            loss = -mll(gp(x), y)
            if s.mean_loss_weight:
                loss = loss + s.mean_loss_weight * torch.mean((gp.net(x)[0] - y) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            run_loss += float(loss.detach())
            if step % s.eval_every == 0 or step == s.steps:
                vl = val_loss()
                history.append({"step": step, "train_loss": run_loss / s.eval_every, "val_loss": vl})
                if log:
                    log(f"step {step}: train {run_loss / s.eval_every:.3f} val {vl:.3f}")
                run_loss = 0.0
                score = vl if val_batches else -step
                if score < best[0]:
                    best = (score, copy.deepcopy(gp.state_dict()), step)
    gp.load_state_dict(best[1])
    gp.train(False)
    lik.train(False)
    return best[0], best[2], history


SPECIALISE_SETTINGS = {"steps": 300, "lr": 5e-4, "eval_every": 25, "val_datasets": 1}
"""Defaults of :func:`specialise`: a short, gentle continuation with one held-out dataset."""


def specialise(
    base: Surrogate,
    metadata: Any,
    describe: Callable[[str], ModelDescriptor | None],
    seed: int = 0,
    settings: MetaTrainSettings | None = None,
    log: Callable[[str], None] | None = None,
    cost: str = "refit",
    cost_datasets: Sequence[str] | None = None,
) -> Surrogate:
    """Continue meta-training ``base`` (e.g. the shipped surrogate) on ``metadata``.

    What a team runs to specialise the surrogate to its own model hub and
    hardware: the performance GP continues from ``base``'s weights
    (:data:`SPECIALISE_SETTINGS` unless ``settings`` is given; the result is the
    step with the best held-out marginal likelihood, ``base`` itself included)
    and the cost model is refit on ``metadata``'s seconds (``cost="keep"`` keeps
    ``base``'s).

    Example:
        >>> from hubtune.surrogate.cache import load_default_surrogate          # doctest: +SKIP
        >>> sur = specialise(load_default_surrogate(), load_metadata(out), get_descriptor)  # doctest: +SKIP
    """
    s = settings or MetaTrainSettings(**{**SPECIALISE_SETTINGS, "model_encoding": base.features.model_encoding})
    return metatrain(metadata, describe, seed=seed, settings=s, log=log, init=base, cost=cost,
                     cost_datasets=cost_datasets)


def dataset_names(metadata: Any) -> Sequence[str]:
    """The dataset names of a meta-dataset (helper for CLIs and caches)."""
    return list(metadata.datasets)
