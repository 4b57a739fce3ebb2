"""Surrogate: meta-training, save/load, exact GP posterior, cost model."""

from __future__ import annotations

import json
from functools import lru_cache

import gpytorch
import numpy as np
import pytest
import torch

from hubtune.surrogate.features import curve_rows
from hubtune.surrogate.metatrain import MetaTrainSettings, metatrain
from hubtune.surrogate.model import Surrogate, SurrogateError
from tests.helpers.quicktune import TEST, TRAIN, describe, meta, needs_shared


@lru_cache(maxsize=1)
def small_surrogate() -> Surrogate:
    torch.set_num_threads(1)
    return metatrain(meta().only(TRAIN), describe, seed=0, settings=MetaTrainSettings(steps=300, eval_every=100))


def _rows(sur: Surrogate, runs, idx, prefix_len, target):
    static = sur.features.static_rows([runs.configs[i] for i in idx], {}, runs.meta_features)
    return curve_rows(static, runs.scores[idx], np.full(len(idx), prefix_len), np.full(len(idx), target))


@needs_shared
def test_save_load_gives_identical_predictions(tmp_path):
    sur = small_surrogate()
    runs = meta()[TEST]
    idx = np.where(runs.lengths >= 3)[0][:30]
    x_obs, y_obs = _rows(sur, runs, idx[:20], 1, 2), runs.scores[idx[:20], 1]
    x_q = _rows(sur, runs, idx[20:], 2, 3)
    before = sur.predict(x_obs, y_obs, x_q)
    sur.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"surrogate.safetensors", "surrogate.json"}
    spec = json.loads((tmp_path / "surrogate.json").read_text())
    assert spec["record"]["train_datasets"] and spec["record"]["seed"] == 0
    again = Surrogate.load(tmp_path)
    after = again.predict(x_obs, y_obs, x_q)
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    cfgs = runs.configs[:10]
    assert np.array_equal(sur.cost.predict_log(cfgs, {}, runs.meta_features),
                          again.cost.predict_log(cfgs, {}, runs.meta_features))


@needs_shared
def test_meta_training_is_deterministic():
    s = MetaTrainSettings(steps=20, eval_every=10)
    a = metatrain(meta().only(TRAIN), describe, seed=3, settings=s)
    b = metatrain(meta().only(TRAIN), describe, seed=3, settings=s)
    ta, tb = a.state_tensors(), b.state_tensors()
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


@needs_shared
def test_manual_posterior_matches_gpytorch_exact_gp():
    sur = small_surrogate()
    runs = meta()[TEST]
    idx = np.where(runs.lengths >= 2)[0][:25]
    x_obs = _rows(sur, runs, idx[:15], 0, 1)
    y_obs = runs.scores[idx[:15], 0]
    x_q = _rows(sur, runs, idx[15:], 1, 2)
    mean, std = sur.predict(x_obs, y_obs, x_q)
    gp = sur.gp
    gp.set_train_data(torch.as_tensor(x_obs), torch.as_tensor(y_obs, dtype=torch.float32), strict=False)
    gp.eval()
    with torch.no_grad(), gpytorch.settings.fast_computations(False, False, False):
        post = gp(torch.as_tensor(x_q))
    assert mean == pytest.approx(post.mean.numpy(), abs=2e-4)
    assert std == pytest.approx(post.variance.clamp_min(1e-10).sqrt().numpy(), abs=2e-3)


@needs_shared
def test_conditioning_on_observed_epochs_beats_zero_shot():
    # As the optimizer uses it: the GP conditions on every observed epoch of the
    # target dataset's runs; predicting their next epoch must get much better.
    sur = small_surrogate()
    runs = meta()[TEST]
    idx = np.where(runs.lengths >= 6)[0][:40]
    truth = runs.scores[idx, 5]
    none = np.zeros((0, sur.features.dim))
    zero = sur.predict(none, np.zeros(0), _rows(sur, runs, idx, 0, 6))[0]
    x_obs = np.concatenate([_rows(sur, runs, idx, e, e + 1) for e in range(5)])
    y_obs = np.concatenate([runs.scores[idx, e] for e in range(5)])
    given, std = sur.predict(x_obs, y_obs, _rows(sur, runs, idx, 5, 6))
    assert np.abs(given - truth).mean() < 0.5 * np.abs(zero - truth).mean()
    assert np.all(std > 0)


@needs_shared
def test_cost_model_ranks_held_out_costs():
    sur = small_surrogate()
    runs = meta()[TEST]
    keep = runs.lengths >= 2
    cfgs = [c for c, k in zip(runs.configs, keep, strict=True) if k]
    pred = sur.cost.predict_log(cfgs, {m: describe(m) for m in {c.model for c in cfgs}}, runs.meta_features)
    true = np.log(np.nanmean(runs.seconds[keep], axis=1))
    rho = np.corrcoef(np.argsort(np.argsort(pred)), np.argsort(np.argsort(true)))[0, 1]
    assert rho > 0.3


def test_load_from_empty_directory_names_the_problem(tmp_path):
    with pytest.raises(SurrogateError, match="no surrogate in"):
        Surrogate.load(tmp_path)
    (tmp_path / "surrogate.json").write_text("{not json")
    (tmp_path / "surrogate.safetensors").write_bytes(b"")
    with pytest.raises(SurrogateError, match="not valid JSON"):
        Surrogate.load(tmp_path)


def test_out_of_range_models_and_datasets_are_clipped_not_extrapolated():
    from hubtune.core.metafeatures import DatasetMetaFeatures
    from hubtune.hub.descriptor import ModelDescriptor
    from hubtune.surrogate.cache import load_default_surrogate

    sur = load_default_surrogate()
    tiny = ModelDescriptor(name="tiny", architecture="tiny", family="test", params_m=0.01, input_size=32,
                           gflops=1e-4, imagenet_top1=None, weights="none")
    block = sur.features.model_block("tiny", tiny)
    meta = sur.features.meta_block(DatasetMetaFeatures(n_images=50, n_classes=2, mean_resolution=8, channels=1))
    assert np.all(np.abs(block) <= 3.0) and np.all(np.abs(meta) <= 3.0)
