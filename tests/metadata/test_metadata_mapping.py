"""Recorded hyperparameters -> Config: the rules every meta-dataset layout shares."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hubtune.metadata import DatasetRuns, config_from_hyperparameters
from hubtune.space.config import Config, ConfigError


def test_names_values_and_off_markers() -> None:
    cfg = config_from_hyperparameters(
        {
            "model": ["beit_base_patch16_384"], "opt": "AdamW", "opt-betas": "0.9 0.99",
            "batch-size": "64.0", "clip_grad": "None", "layer_decay": -1.0, "amp": "true",
            "stoch_norm": 1, "lr": "5e-4", "sched": "plateau", "patience_epochs": 2.0,
            "decay_rate": 0.5, "decay_epochs": 90, "momentum": 0.95, "dataset": "ignored",
        }
    )
    assert cfg.model == "beit_base_patch16_384" and cfg.opt == "adamw" and cfg.opt_betas == (0.9, 0.99)
    assert cfg.batch_size == 64 and cfg.clip_grad is None and cfg.layer_decay is None
    assert cfg.amp is True and cfg.stoch_norm is True and cfg.lr == 5e-4
    assert (cfg.patience_epochs, cfg.decay_rate, cfg.decay_epochs, cfg.momentum) == (2, 0.5, None, None)


def test_augmentation_from_values_or_script_flags() -> None:
    assert config_from_hyperparameters({"model": "m", "data-augmentation": "trivial-augment"}).data_augmentation == "trivial_augment"
    cfg = config_from_hyperparameters({"model": "m", "random_augment": True, "ra_num_ops": 3, "ra_magnitude": 17.0, "auto_augment": "None"})
    assert (cfg.data_augmentation, cfg.ra_num_ops, cfg.ra_magnitude, cfg.auto_augment) == ("random_augment", 3, 17, None)
    cfg = config_from_hyperparameters({"model": "m", "trivial_augment": False, "auto_augment": "original"})
    assert cfg.data_augmentation == "auto_augment" and cfg.auto_augment == "original"
    cfg = config_from_hyperparameters({"model": "m", "data_augmentation": None, "auto_augment": "v0", "ra_num_ops": 2})
    assert cfg.data_augmentation == "none" and cfg.auto_augment is None and cfg.ra_num_ops is None
    with pytest.raises(ConfigError, match="more than one data augmentation"):
        config_from_hyperparameters({"model": "m", "trivial_augment": 1, "random_augment": 1})


def test_bad_values_name_the_hyperparameter() -> None:
    with pytest.raises(ConfigError, match="batch_size must be an integer"):
        config_from_hyperparameters({"model": "m", "batch_size": 12.5})
    with pytest.raises(ConfigError, match="amp must be a boolean"):
        config_from_hyperparameters({"model": "m", "amp": 2})
    with pytest.raises(ConfigError, match="opt_betas must be two numbers"):
        config_from_hyperparameters({"model": "m", "opt": "adam", "opt_betas": "[0.9]"})
    with pytest.raises(ConfigError, match="no model"):
        config_from_hyperparameters({"model": "None", "lr": 0.1})
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        config_from_hyperparameters({"model": "m", "epochs": 50}, strict=True)
    with pytest.raises(ConfigError, match="given twice"):
        config_from_hyperparameters({"model": "m", "auto_augment": "v0", "aa": "original"})


def test_defaults_fill_unset_values() -> None:
    assert config_from_hyperparameters({"model": "m", "lr": ""}) == Config(model="m")
    assert config_from_hyperparameters({"model": "m", "opt": "momentum"}).momentum == 0.9


def test_empty_subset() -> None:
    runs = DatasetRuns.from_curves("d", ["a"], [Config(model="m")], [[0.5]], [[1.0]])
    empty = runs.subset(np.zeros(1, dtype=bool))
    assert len(empty) == 0 and empty.scores.shape == (0, 1) and math.isnan(empty.best)
