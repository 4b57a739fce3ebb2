"""Factories that build :class:`~hubtune.optim.quicktune.QuickTune` for a task, and its ablations.

``make_quicktune(ctx)`` uses a surrogate meta-trained on ``ctx.train_metadata``
(cached per training set; see :mod:`hubtune.surrogate.cache`), or the shipped
default surrogate when the context carries no meta-training data. Variants:

* ``full``: the method as shipped;
* ``no_meta``: same network and GP, but not meta-trained (random init);
* ``no_cost``: acquisition ignores predicted cost (EI only);
* ``blackbox``: every trial runs to ``max_epochs`` in one step (no freeze-thaw);
* ``onehot``: models described by a one-hot instead of hub descriptors.
* ``specialised``: the shipped surrogate meta-trained further on ``ctx.train_metadata``
  (:mod:`hubtune.surrogate.specialised`).

``surrogate_seed`` (default 0) seeds the per-fold meta-training: replays with several
seeds show how much a result depends on one particular meta-trained surrogate (on a
fixed candidate table the optimizer's own seed only breaks exact ties).
"""

from __future__ import annotations

from typing import Any

import torch

from hubtune.hub.descriptor import ModelDescriptor
from hubtune.optim.quicktune import QuickTune, QuickTuneSettings
from hubtune.protocol.context import TaskContext
from hubtune.surrogate.cache import load_default_surrogate, surrogate_for
from hubtune.surrogate.ensemble import SurrogateEnsemble
from hubtune.surrogate.features import FeatureBuilder
from hubtune.surrogate.metatrain import MetaTrainSettings
from hubtune.surrogate.model import Surrogate

VARIANTS = ("full", "no_meta", "no_cost", "blackbox", "onehot", "specialised")


def descriptor_lookup(ctx: TaskContext):
    """Model name -> descriptor: the context's descriptors, else the hub's (None if unknown)."""
    known: dict[str, ModelDescriptor | None] = dict(ctx.descriptors)

    def describe(name: str) -> ModelDescriptor | None:
        if name not in known:
            try:
                from hubtune.hub import get_descriptor  # type: ignore[attr-defined]

                known[name] = get_descriptor(name)
            except Exception:  # unknown to the hub: the surrogate uses the mean model
                known[name] = None
        return known[name]

    return describe


def _untrained_like(trained: Surrogate, seed: int) -> Surrogate:
    """Same features and cost model, network and GP hyperparameters at their initial values."""
    torch.manual_seed(seed)
    fresh = Surrogate(FeatureBuilder.from_dict(trained.features.to_dict()), trained.cost,
                      hidden=trained.hidden, emb=trained.emb, record={"untrained": True},
                      residual_mean=trained.residual_mean)
    fresh.likelihood.noise = 1e-3
    fresh.gp.covar.outputscale = 0.05
    fresh.gp.eval()
    return fresh


def _metatrain_settings(variant: str, metatrain_overrides: dict[str, Any] | None) -> MetaTrainSettings:
    mt = MetaTrainSettings(**(metatrain_overrides or {}))
    if variant == "onehot":
        mt.model_encoding = "onehot"
    return mt


def _surrogate(ctx: TaskContext, variant: str, metatrain_overrides: dict[str, Any] | None,
               surrogate_seed: int = 0, ensemble: int = 1) -> Surrogate | SurrogateEnsemble:
    if ensemble > 1 and ctx.train_metadata is not None and variant not in ("specialised",):
        return SurrogateEnsemble([_surrogate(ctx, variant, metatrain_overrides, surrogate_seed * ensemble + i)
                                  for i in range(ensemble)])
    if ctx.train_metadata is None:
        return load_default_surrogate(ctx.surrogate_dir)
    if variant == "specialised":
        from hubtune.surrogate.specialised import specialised_surrogate_for

        return specialised_surrogate_for(ctx.train_metadata, descriptor_lookup(ctx), seed=surrogate_seed)
    return surrogate_for(ctx.train_metadata, descriptor_lookup(ctx), seed=surrogate_seed,
                         settings=_metatrain_settings(variant, metatrain_overrides))


def prepare_quicktune(
    ctx: TaskContext, variant: str = "full", metatrain_overrides: dict[str, Any] | None = None,
    surrogate_seed: int = 0, ensemble: int = 1, **_: Any,
) -> None:
    """Offline step: meta-train (and cache) the surrogate(s) for ``ctx``'s meta-training data."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown Quick-Tune variant {variant!r}; choose from {', '.join(VARIANTS)}")
    _surrogate(ctx, variant, metatrain_overrides, surrogate_seed, ensemble)


def make_quicktune(
    ctx: TaskContext, variant: str = "full", metatrain_overrides: dict[str, Any] | None = None,
    surrogate_seed: int = 0, ensemble: int = 1, **overrides: Any,
) -> QuickTune:
    """Build Quick-Tune (or one of its ablations) for the task in ``ctx``.

    ``overrides`` set :class:`QuickTuneSettings` fields; ``metatrain_overrides``
    set :class:`MetaTrainSettings` fields of the per-fold surrogate, ``surrogate_seed``
    its meta-training seed; ``ensemble > 1`` uses the mixture of that many per-fold
    surrogates (seeds ``surrogate_seed * ensemble + i``; :mod:`hubtune.surrogate.ensemble`).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown Quick-Tune variant {variant!r}; choose from {', '.join(VARIANTS)}")
    if ensemble > 1 and variant in ("no_meta", "specialised"):
        raise ValueError(f"Quick-Tune variant {variant!r} has no ensemble (ensemble must be 1)")
    describe = descriptor_lookup(ctx)
    surrogate = _surrogate(ctx, variant, metatrain_overrides, surrogate_seed, ensemble)
    if variant == "no_meta":
        surrogate = _untrained_like(surrogate, ctx.seed)
    if ctx.candidates is None:
        # A search space is searched with hubtune's trainer, whose schedules span max_epochs;
        # its short real runs keep the time to finish a started trial (docs/optimizer.md).
        overrides.setdefault("schedule_epochs", ctx.max_epochs)
        overrides.setdefault("finish_reserve", True)
    if ctx.val_size:
        overrides.setdefault("val_size", ctx.val_size)
    settings = QuickTuneSettings(**overrides)
    if variant == "no_cost":
        settings.cost_power = 0.0
    if variant == "blackbox":
        settings.blackbox = True
    models = {c.config.model for c in ctx.candidates} if ctx.candidates is not None else set(ctx.space.models)
    descriptors = {m: describe(m) for m in sorted(models)}
    candidates = [(c.trial_id, c.config) for c in ctx.candidates] if ctx.candidates is not None else None
    return QuickTune(
        surrogate,
        max_epochs=ctx.max_epochs,
        candidates=candidates,
        space=ctx.space if ctx.candidates is None else None,
        meta_features=ctx.meta_features,
        descriptors=descriptors,
        seed=ctx.seed,
        settings=settings,
    )

