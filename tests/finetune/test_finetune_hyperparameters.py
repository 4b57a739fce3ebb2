"""Every Config hyperparameter reaches training: changing it changes a concrete resolved thing.

The probes are keyed by hyperparameter name and checked against
``hyperparameter_names()``, so a new Config field without a probe fails here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from hubtune.data import load_dataset
from hubtune.finetune.batches import BatchPipeline
from hubtune.finetune.engine import Trial, amp_dtype
from hubtune.finetune.stochnorm import count_stochnorm
from hubtune.space import Config
from hubtune.space.config import hyperparameter_names

MODEL = "test_efficientnet"
MAX_EPOCHS = 10


WEIGHTS: dict[str, str] = {}


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    # "Pretrained" weights for the tiny timm test models: a seeded random
    # ImageNet-shaped model saved as a local weights file, loaded through the
    # hub's real local-weights path (so Co-Tuning has a 1000-class head).
    for name in (MODEL, "test_resnet"):
        WEIGHTS[name] = str(save_test_weights(name, tmp_path_factory.mktemp("weights")))
    return load_dataset("fashion-mnist", image_size=32, subset=96, seed=0)


def save_test_weights(name: str, folder) -> Any:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=1000)
    path = folder / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def build(ds, **overrides: Any) -> Trial:
    base = {"model": MODEL, "batch_size": 16}
    base.update(overrides)
    return Trial(Config(**base), ds, MAX_EPOCHS, seed=0, weights_path=WEIGHTS[base["model"]])


def first_batch(trial: Trial, epoch: int = 0):
    from hubtune.finetune.engine import _seed_all, epoch_seed

    gen = _seed_all(epoch_seed(trial.seed, epoch))
    return next(iter(trial.pipeline.train_batches(trial.data.train.images, trial.data.train.labels, gen)))


def loss_terms_after_perturbation(trial: Trial) -> dict[str, float]:
    """Loss terms of one batch after moving the weights away from their start."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in trial.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    trial.prepare_cotuning()
    trial.model.train()
    batch = first_batch(trial)
    torch.manual_seed(2)
    terms = trial.loss_terms(batch.x, batch.target, batch.labels)
    return {k: round(float(v.detach()), 6) for k, v in terms.items()}


def weights_after_one_epoch(trial: Trial) -> torch.Tensor:
    trial.train_epoch(0)
    return torch.cat([p.detach().flatten() for p in trial.model.parameters()])


def groups(trial: Trial, key: str) -> list:
    return [g[key] for g in trial.optimizer.param_groups]


def lrs(trial: Trial) -> list[float]:
    return [round(trial.schedule.lr_at(e), 10) for e in range(MAX_EPOCHS)]


def plateau_lrs(trial: Trial) -> list[float]:
    out = []
    for e in range(MAX_EPOCHS):
        out.append(round(trial.schedule.lr_at(e), 10))
        trial.schedule.observe(e, 0.5)  # never improves after the first epoch
    return out


def augmentation_repr(trial: Trial) -> str:
    aug = trial.pipeline.augmentation
    return repr(getattr(aug, "op", aug))


def augmented_pixels(trial: Trial) -> torch.Tensor:
    torch.manual_seed(0)
    import random

    import numpy as np

    random.seed(0)
    np.random.seed(0)
    return trial.pipeline.augment(trial.data.train.images[:8])


def dropout_rate(trial: Trial) -> float:
    return float(trial.model.drop_rate)


# name -> (base overrides, changed overrides, probe)
Probe = Callable[[Trial], Any]
PROBES: dict[str, tuple[dict, dict, Probe]] = {
    "model": ({}, {"model": "test_resnet"}, lambda t: sum(p.numel() for p in t.model.parameters())),
    "pct_to_freeze": ({}, {"pct_to_freeze": 0.6}, lambda t: len(t.plan.frozen)),
    "linear_probing": ({}, {"linear_probing": True}, lambda t: sorted(t.trainable_names(0))),
    "stoch_norm": ({}, {"stoch_norm": True}, lambda t: count_stochnorm(t.model)),
    "batch_size": ({}, {"batch_size": 8}, lambda t: [len(b) for b in t.pipeline.epoch_order(96, torch.Generator().manual_seed(0))]),
    "opt": ({}, {"opt": "momentum"}, lambda t: type(t.optimizer).__name__ + str(groups(t, "momentum") if "momentum" in t.optimizer.defaults else "")),
    "opt_betas": ({"opt": "adam"}, {"opt": "adam", "opt_betas": (0.0, 0.99)}, lambda t: groups(t, "betas")),
    "momentum": ({"opt": "momentum"}, {"opt": "momentum", "momentum": 0.5}, lambda t: groups(t, "momentum")),
    "lr": ({}, {"lr": 0.01}, lrs),
    "weight_decay": ({}, {"weight_decay": 0.05}, lambda t: groups(t, "weight_decay")),
    "clip_grad": ({"lr": 0.05}, {"lr": 0.05, "clip_grad": 0.01}, weights_after_one_epoch),
    "layer_decay": ({}, {"layer_decay": 0.65}, lambda t: groups(t, "lr_scale")),
    "sched": ({}, {"sched": "step"}, lrs),
    "decay_rate": ({"sched": "step", "decay_epochs": 2}, {"sched": "step", "decay_epochs": 2, "decay_rate": 0.5}, lrs),
    "decay_epochs": ({"sched": "multistep"}, {"sched": "multistep", "decay_epochs": 3}, lrs),
    "patience_epochs": ({"sched": "plateau"}, {"sched": "plateau", "patience_epochs": 1}, plateau_lrs),
    "warmup_epochs": ({}, {"warmup_epochs": 3}, lrs),
    "warmup_lr": ({"warmup_epochs": 3}, {"warmup_epochs": 3, "warmup_lr": 1e-5}, lrs),
    "sp_reg": ({}, {"sp_reg": 0.01}, loss_terms_after_perturbation),
    "delta_reg": ({}, {"delta_reg": 0.01}, loss_terms_after_perturbation),
    "bss_reg": ({}, {"bss_reg": 0.01}, loss_terms_after_perturbation),
    "cotuning_reg": ({}, {"cotuning_reg": 1.0}, loss_terms_after_perturbation),
    "mixup": ({"mixup_prob": 1.0, "cutmix": 0.5}, {"mixup_prob": 1.0, "cutmix": 0.5, "mixup": 1.0}, lambda t: first_batch(t).x),
    "cutmix": ({"mixup_prob": 1.0, "mixup": 0.5}, {"mixup_prob": 1.0, "mixup": 0.5, "cutmix": 1.0}, lambda t: first_batch(t).x),
    "mixup_prob": ({"mixup": 1.0}, {"mixup": 1.0, "mixup_prob": 1.0}, lambda t: first_batch(t).x),
    "smoothing": ({}, {"smoothing": 0.1}, loss_terms_after_perturbation),
    "drop": ({}, {"drop": 0.3}, dropout_rate),
    "data_augmentation": ({}, {"data_augmentation": "trivial_augment"}, augmented_pixels),
    "ra_num_ops": ({"data_augmentation": "random_augment"}, {"data_augmentation": "random_augment", "ra_num_ops": 3}, augmentation_repr),
    "ra_magnitude": ({"data_augmentation": "random_augment"}, {"data_augmentation": "random_augment", "ra_magnitude": 17}, augmentation_repr),
    "auto_augment": ({"data_augmentation": "auto_augment"}, {"data_augmentation": "auto_augment", "auto_augment": "original"}, augmentation_repr),
    "amp": ({"amp": False}, {"amp": True}, lambda t: amp_dtype(t.config, torch.device("cuda"), bf16_supported=True)),
}


def test_every_hyperparameter_has_a_probe():
    assert set(PROBES) == set(hyperparameter_names())


def _same(a: Any, b: Any) -> bool:
    if torch.is_tensor(a) and torch.is_tensor(b):
        return a.shape == b.shape and torch.equal(a, b)
    return a == b


@pytest.mark.parametrize("name", hyperparameter_names())
def test_hyperparameter_takes_effect(ds, name):
    base, changed, probe = PROBES[name]
    a = probe(build(ds, **base))
    b = probe(build(ds, **changed))
    assert not _same(a, b), f"changing {name} changed nothing the probe sees: {a!r}"


# ------------------------------------------------------- concrete semantics
def test_full_freeze_trains_only_the_head(ds):
    t = build(ds, pct_to_freeze=1.0)
    trainable = t.trainable_names(0)
    assert trainable == t.plan.head
    # frozen BatchNorm layers keep their statistics (eval mode) while training
    from hubtune.finetune.params import set_train_mode

    set_train_mode(t.model, trainable)
    bns = [m for m in t.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and not any(m.training for m in bns)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.train_epoch(0)
    after = t.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == t.plan.head  # weights, biases and BatchNorm statistics of the body unchanged


def test_linear_probing_switches_to_full_finetuning(ds):
    t = build(ds, linear_probing=True)
    assert t.lp_epochs == 2  # 20% of 10 epochs
    assert t.trainable_names(0) == t.plan.head == t.trainable_names(1)
    assert t.trainable_names(2) == set(t.plan.group_of)


def test_layer_decay_scales_follow_group_depth(ds):
    t = build(ds, layer_decay=0.5)
    g = t.plan.num_groups
    for group in t.optimizer.param_groups:
        assert group["lr_scale"] == pytest.approx(0.5 ** (g - 1 - group["layer_group"]))
    assert max(groups(t, "lr_scale")) == 1.0


def test_no_weight_decay_on_biases_and_norms(ds):
    t = build(ds, weight_decay=0.1)
    for group in t.optimizer.param_groups:
        for p in group["params"]:
            if p.ndim <= 1:
                assert group["weight_decay"] == 0.0


def test_sgd_has_no_momentum_and_adamp_is_timm(ds):
    assert groups(build(ds, opt="sgd"), "momentum") == [0.0] * len(build(ds, opt="sgd").optimizer.param_groups)
    assert type(build(ds, opt="adamp").optimizer).__name__ == "AdamP"
    assert isinstance(build(ds, opt="adamw").optimizer, torch.optim.AdamW)


def test_regularizer_terms_are_zero_at_the_pretrained_start(ds):
    # L2-SP and DELTA measure the distance to the start: zero before any update.
    t = build(ds, sp_reg=0.1, delta_reg=0.1)
    t.model.eval()
    batch = first_batch(t)
    terms = t.loss_terms(batch.x, batch.target, batch.labels)
    assert float(terms["sp"].detach()) == 0.0
    assert float(terms["delta"].detach()) == pytest.approx(0.0, abs=1e-6)
    moved = loss_terms_after_perturbation(build(ds, sp_reg=0.1, delta_reg=0.1))
    assert moved["sp"] > 0 and moved["delta"] > 0


def test_cotuning_relationship_is_a_distribution_per_class(ds):
    t = build(ds, cotuning_reg=1.0)
    t.prepare_cotuning()
    rel = t.relationship
    assert rel.shape[0] == ds.num_classes and rel.shape[1] == 1000
    assert torch.allclose(rel.sum(1), torch.ones(ds.num_classes), atol=1e-4)


def test_mixup_targets_are_soft_and_smoothed(ds):
    t = build(ds, mixup=1.0, mixup_prob=1.0, smoothing=0.1)
    batch = first_batch(t)
    assert batch.target.shape == (16, ds.num_classes)
    assert torch.allclose(batch.target.sum(1), torch.ones(16))
    assert float(batch.target.min()) > 0  # smoothing puts mass on every class


def test_stochnorm_keeps_pretrained_statistics_and_eval_behaviour(ds):
    plain = build(ds)
    stoch = build(ds, stoch_norm=True)
    sp, ss = plain.model.state_dict(), stoch.model.state_dict()
    assert sp.keys() == ss.keys() and all(torch.equal(sp[k], ss[k]) for k in sp)
    plain.model.eval()
    stoch.model.eval()
    x = BatchPipeline(plain.config, (0.5,) * 3, (0.25,) * 3, 10, 32, torch.device("cpu")).normalise(
        ds.val.images[:4]
    )
    with torch.no_grad():
        assert torch.allclose(plain.model(x), stoch.model(x))
    stoch.model.train()
    torch.manual_seed(0)
    with torch.no_grad():
        y1 = stoch.model(x)
        y2 = stoch.model(x)
    assert not torch.equal(y1, y2)  # the per-channel choice of statistics is random


def test_dropout_is_applied_before_the_head(ds):
    t = build(ds, drop=0.5)
    t.model.train()
    x = t.pipeline.normalise(ds.train.images[:8])
    from hubtune.finetune.regularizers import forward_parts

    torch.manual_seed(0)
    a = forward_parts(t.model, x).pooled
    assert (a == 0).float().mean() > 0.2  # about half the pooled features dropped


@pytest.mark.parametrize(
    "aug",
    [
        {"data_augmentation": "auto_augment", "auto_augment": "v0"},
        {"data_augmentation": "auto_augment", "auto_augment": "original"},
        {"data_augmentation": "random_augment", "ra_num_ops": 3, "ra_magnitude": 0},
        {"data_augmentation": "random_augment", "ra_num_ops": 2, "ra_magnitude": 17},
        {"data_augmentation": "trivial_augment"},
    ],
)
def test_every_augmentation_policy_runs_on_uint8_images(aug):
    # Many draws: timm's v0 policy sometimes posterizes to 0 bits, which
    # Pillow 11+ rejects unless the trainer handles it.
    import random

    from hubtune.finetune.batches import build_augmentation

    op = build_augmentation(Config(model=MODEL, **aug), 32, (0.5, 0.5, 0.5))
    random.seed(0)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (600, 3, 32, 32), dtype=torch.uint8)
    out = torch.stack([op(img) for img in images])
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert not torch.equal(out, images)
