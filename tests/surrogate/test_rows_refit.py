"""Surrogate.refit: the per-task refit QuickTune asks for, owned by the surrogate."""

from __future__ import annotations

import copy

import gpytorch
import numpy as np
import torch

from hubtune.space.config import Config
from hubtune.surrogate.cache import load_default_surrogate
from hubtune.surrogate.features import observed_rows


def _task():
    sur = load_default_surrogate()
    configs = [Config(model="resnet18", lr=lr) for lr in (1e-4, 3e-4, 1e-3)]
    static = sur.features.static_rows(configs, {"resnet18": None}, None)
    xs, ys = [], []
    for i, top in enumerate((0.6, 0.7, 0.5)):
        scores = list(top * (1 - np.exp(-np.arange(1, 7) / 2.0)))
        xs.append(observed_rows(static[i], scores)[0])
        ys.append(scores)
    return sur, np.concatenate(xs), np.concatenate(ys)


def _weights(sur):
    return {k: v.clone() for k, v in sur.state_tensors().items()}


def test_refit_returns_a_fitted_copy_and_leaves_the_surrogate_untouched():
    sur, x, y = _task()
    before = _weights(sur)
    fitted = sur.refit(x, y, steps=5, lr=1e-2, seed=3)
    assert fitted is not sur
    assert all(torch.equal(before[k], v) for k, v in sur.state_tensors().items())
    assert any(not torch.equal(before[k], v) for k, v in fitted.state_tensors().items())
    assert not fitted.gp.training and not fitted.likelihood.training
    # a pure function of observations and seed: a replayed journal refits identically
    again = sur.refit(x, y, steps=5, lr=1e-2, seed=3)
    assert all(torch.equal(v, again.state_tensors()[k]) for k, v in fitted.state_tensors().items())


def _log_likelihood(sur, x, y) -> float:
    sur = copy.deepcopy(sur)  # the shipped surrogate is shared (memoised): leave it as it is
    gp, lik = sur.gp, sur.likelihood
    xt, yt = torch.as_tensor(x), torch.as_tensor(y, dtype=torch.float32)
    gp.train()
    lik.train()
    gp.set_train_data(xt, yt, strict=False)
    with torch.no_grad():
        value = float(gpytorch.mlls.ExactMarginalLogLikelihood(lik, gp)(gp(xt), yt))
    return value


def test_refit_raises_the_marginal_likelihood_of_the_observations():
    sur, x, y = _task()
    fitted = sur.refit(x, y, steps=30, lr=1e-2, seed=0)
    assert _log_likelihood(fitted, x, y) > _log_likelihood(sur, x, y)


def test_a_kernel_refit_moves_only_the_kernel_noise_and_mean_constant():
    sur, x, y = _task()
    before = _weights(sur)
    fitted = sur.refit(x, y, steps=10, lr=1e-2, seed=0, scope="kernel")
    changed = {k for k, v in fitted.state_tensors().items() if not torch.equal(before[k], v)}
    assert changed and "gp.net.mean_head.bias" in changed
    assert all(not k.startswith("gp.net.") or k == "gp.net.mean_head.bias" for k in changed), changed
    assert _log_likelihood(fitted, x, y) > _log_likelihood(sur, x, y)
