"""The Quick-Tune search space, defined once with ConfigSpace, restrictable by users.

Example:
    >>> space = SearchSpace(models=["mobilenetv2_100"], fixed={"opt": "adamw"})
    >>> cfgs = space.sample(3, seed=0)
    >>> all(c.opt == "adamw" for c in cfgs)
    True
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ConfigSpace as CS
import numpy as np

from hubtune.space.config import (
    ADAM_FAMILY,
    AUGMENTATIONS,
    AUTO_AUGMENT_POLICIES,
    OPTIMIZERS,
    SCHEDULES,
    Config,
    ConfigError,
    hyperparameter_names,
)

# Grid of the Quick-Tune "v6" space. ``None`` stands for "off" (clip_grad,
# layer_decay). Batch sizes above 64 are for large-GPU users (max_batch_size).
V6_CHOICES: dict[str, list[Any]] = {
    "pct_to_freeze": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
    "linear_probing": [False, True],
    "stoch_norm": [False, True],
    "batch_size": [2, 4, 8, 16, 32, 64, 128, 256, 512],
    "opt": list(OPTIMIZERS),
    "opt_betas": [(0.9, 0.999), (0.0, 0.99), (0.9, 0.99), (0.0, 0.999)],
    "momentum": [0.0, 0.8, 0.9, 0.95, 0.99],
    "lr": [1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2],
    "weight_decay": [0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1],
    "clip_grad": [None, 1.0, 10.0],
    "layer_decay": [None, 0.65, 0.75],
    "sched": list(SCHEDULES),
    "decay_rate": [0.1, 0.5],
    "decay_epochs": [10, 20],
    "patience_epochs": [2, 5],
    "warmup_epochs": [0, 5, 10],
    "warmup_lr": [0.0, 1e-6, 1e-5],
    "sp_reg": [0.0, 1e-4, 1e-3, 1e-2, 1e-1],
    "delta_reg": [0.0, 1e-4, 1e-3, 1e-2, 1e-1],
    "bss_reg": [0.0, 1e-4, 1e-3, 1e-2, 1e-1],
    "cotuning_reg": [0.0, 0.5, 1.0, 2.0, 4.0],
    "mixup": [0.0, 0.2, 0.4, 1.0, 2.0, 4.0, 8.0],
    "cutmix": [0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0],
    "mixup_prob": [0.0, 0.25, 0.5, 0.75, 1.0],
    "smoothing": [0.0, 0.05, 0.1],
    "drop": [0.0, 0.1, 0.2, 0.3, 0.4],
    "data_augmentation": list(AUGMENTATIONS),
    "ra_num_ops": [2, 3],
    "ra_magnitude": [9, 17],
    "auto_augment": list(AUTO_AUGMENT_POLICIES),
}

# Ordered numeric hyperparameters (the rest are unordered categoricals).
ORDINAL = {
    "pct_to_freeze", "batch_size", "momentum", "lr", "weight_decay", "clip_grad",
    "layer_decay", "decay_rate", "decay_epochs", "patience_epochs", "warmup_epochs",
    "warmup_lr", "sp_reg", "delta_reg", "bss_reg", "cotuning_reg", "mixup", "cutmix",
    "mixup_prob", "smoothing", "drop", "ra_num_ops", "ra_magnitude",
}

# child -> (parent, parent values that activate it)
CONDITIONS: dict[str, tuple[str, list[str]]] = {
    "opt_betas": ("opt", list(ADAM_FAMILY)),
    "momentum": ("opt", ["momentum"]),
    "decay_rate": ("sched", ["step", "multistep", "plateau"]),
    "decay_epochs": ("sched", ["step", "multistep"]),
    "patience_epochs": ("sched", ["plateau"]),
    "ra_num_ops": ("data_augmentation", ["random_augment"]),
    "ra_magnitude": ("data_augmentation", ["random_augment"]),
    "auto_augment": ("data_augmentation", ["auto_augment"]),
}

DEFAULT_MAX_BATCH_SIZE = 64

REFERENCE_EPOCHS = 50
"""The schedule length of every run in the meta-dataset: the grid's epoch-valued choices
(warm-up, step decay, plateau patience) are counts of epochs of a 50-epoch schedule."""

EPOCH_VALUED = ("warmup_epochs", "decay_epochs", "patience_epochs")
"""Hyperparameters counted in epochs; they follow the schedule's length (:func:`scale_epoch_choices`)."""


def scale_epoch_choices(values: Sequence[int], schedule_epochs: int) -> list[int]:
    """The grid's epoch counts (of a 50-epoch schedule) as counts of a ``schedule_epochs`` one.

    A warm-up of 10 epochs is a fifth of the meta-dataset's schedule; on an
    8-epoch schedule the same fraction is 2 epochs (never more than the run:
    unscaled, the learning rate would still be warming up when the run ends).
    0 stays 0, any other count becomes at least 1.

    >>> scale_epoch_choices([0, 5, 10], 8)
    [0, 1, 2]
    >>> scale_epoch_choices([2, 5], 8)
    [1]
    """
    if schedule_epochs < 1:
        raise ConfigError(f"schedule_epochs must be >= 1, got {schedule_epochs}")
    out = {0 if v == 0 else max(1, round(v * schedule_epochs / REFERENCE_EPOCHS)) for v in values}
    return sorted(out)


def _token(value: Any) -> str:
    """ConfigSpace-safe string for one choice value."""
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return json.dumps(value)


def _untoken(token: str) -> Any:
    value = json.loads(token)
    return tuple(value) if isinstance(value, list) else value


class SearchSpace:
    """The joint (model, hyperparameter) space, optionally restricted.

    Args:
        models: hub model names the search may choose from.
        fixed: hyperparameters pinned to one value (e.g. ``{"opt": "adamw"}``).
        choices: hyperparameters restricted to a subset of values (or a new grid).
        max_batch_size: largest batch size sampled (64 by default; up to 512).
        schedule_epochs: the length of the trials' learning-rate schedules (a run's
            ``--max-epochs``). The default grid's epoch-valued choices (:data:`EPOCH_VALUED`)
            are scaled from the meta-dataset's 50 epochs to it, so a warm-up or a step
            decay takes the same fraction of a short run as of the runs the surrogate
            learnt from. Choices the user gives are taken as they are. ``None``: unscaled.
    """

    def __init__(
        self,
        models: Sequence[str],
        fixed: dict[str, Any] | None = None,
        choices: dict[str, Sequence[Any]] | None = None,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        schedule_epochs: int | None = None,
    ) -> None:
        if not models:
            raise ConfigError("the search space needs at least one model")
        names = set(hyperparameter_names())
        self.models = list(dict.fromkeys(models))
        self.fixed = dict(fixed or {})
        self.max_batch_size = max_batch_size
        for name in list(self.fixed) + list(choices or {}):
            if name not in names or name == "model":
                raise ConfigError(f"unknown hyperparameter in search space: {name!r}")
        grid = {k: list(v) for k, v in V6_CHOICES.items()}
        grid["batch_size"] = [b for b in grid["batch_size"] if b <= max_batch_size]
        self.schedule_epochs = schedule_epochs
        # the grid of what the user does not restrict: V6, with its epoch counts at this schedule
        self._defaults = dict(V6_CHOICES)
        if schedule_epochs is not None:
            for name in EPOCH_VALUED:
                self._defaults[name] = grid[name] = scale_epoch_choices(grid[name], int(schedule_epochs))
        for name, values in (choices or {}).items():
            values = [tuple(v) if isinstance(v, list) else v for v in values]
            if not values:
                raise ConfigError(f"empty choice list for {name!r}")
            grid[name] = values
        for name, value in self.fixed.items():
            grid[name] = [tuple(value) if isinstance(value, list) else value]
        grid["model"] = self.models
        self.choices = grid
        self._cs = self._build()

    # ----------------------------------------------------------------- build
    def _build(self) -> CS.ConfigurationSpace:
        cs = CS.ConfigurationSpace()
        # A conditional whose parent can never activate it is left out entirely.
        dropped = {
            child
            for child, (parent, on) in CONDITIONS.items()
            if not any(v in self.choices[parent] for v in on)
        }
        hps: dict[str, CS.hyperparameters.Hyperparameter] = {}
        for name, values in self.choices.items():
            if name == "amp" or name in dropped:
                continue
            tokens = [_token(v) for v in values]
            if name in ORDINAL and len(tokens) > 1:
                hps[name] = CS.OrdinalHyperparameter(name, sequence=tokens)
            else:
                hps[name] = CS.CategoricalHyperparameter(name, choices=tokens)
        cs.add(list(hps.values()))
        conds = []
        for child, (parent, on) in CONDITIONS.items():
            if child in dropped:
                continue
            allowed = [_token(v) for v in on if v in self.choices[parent]]
            if len(allowed) == len(self.choices[parent]):
                continue  # always active
            if len(allowed) == 1:
                conds.append(CS.EqualsCondition(hps[child], hps[parent], allowed[0]))
            else:
                conds.append(CS.InCondition(hps[child], hps[parent], allowed))
        if conds:
            cs.add(conds)
        return cs

    @property
    def configspace(self) -> CS.ConfigurationSpace:
        """The underlying ConfigSpace object (for peers that speak ConfigSpace)."""
        return self._cs

    # -------------------------------------------------------------- convert
    def to_config(self, values: dict[str, Any]) -> Config:
        """A :class:`Config` from a ConfigSpace assignment (string tokens)."""
        data = {k: _untoken(v) if isinstance(v, str) else v for k, v in dict(values).items()}
        if "amp" in self.fixed:
            data["amp"] = self.fixed["amp"]
        return Config.from_dict(data)

    def sample(self, n: int, seed: int | None = None) -> list[Config]:
        """``n`` configurations drawn uniformly from the (conditional) space."""
        rng = np.random.default_rng(seed)
        self._cs.seed(int(rng.integers(2**31 - 1)))
        raw = [self._cs.sample_configuration()] if n == 1 else self._cs.sample_configuration(n)
        return [self.to_config(dict(c)) for c in raw]

    def contains(self, config: Config) -> bool:
        """Whether every active value of ``config`` is one of this space's choices."""
        for name in config.active_hyperparameters():
            value = getattr(config, name)
            if name == "amp":
                continue
            if name in self.choices and value not in self.choices[name]:
                return False
        return True

    def default_config(self, model: str | None = None) -> Config:
        """A sensible default finetuning config (timm-like AdamW + cosine)."""
        base = Config(model=model or self.models[0], **{
            k: v for k, v in self.fixed.items() if k not in ("model",)
        })
        return base

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible description (what ``--space space.json`` accepts)."""
        return {
            "models": self.models,
            "fixed": {k: list(v) if isinstance(v, tuple) else v for k, v in self.fixed.items()},
            "choices": {
                k: [list(x) if isinstance(x, tuple) else x for x in v]
                for k, v in self.choices.items()
                if k != "model" and k not in self.fixed and v != self._defaults.get(k)
            },
            "max_batch_size": self.max_batch_size,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], models: Sequence[str] | None = None,
                  schedule_epochs: int | None = None) -> SearchSpace:
        """Inverse of :meth:`to_dict`; ``models`` overrides the file's model list,
        ``schedule_epochs`` scales the default epoch-valued grid (see :class:`SearchSpace`)."""
        allowed = {"models", "fixed", "choices", "max_batch_size"}
        unknown = set(data) - allowed
        if unknown:
            raise ConfigError(f"unknown search-space keys: {', '.join(sorted(unknown))}")
        chosen = list(models) if models else data.get("models")
        if not chosen:
            raise ConfigError("the search space file names no models")
        return cls(
            chosen,
            fixed=data.get("fixed"),
            choices=data.get("choices"),
            max_batch_size=int(data.get("max_batch_size", DEFAULT_MAX_BATCH_SIZE)),
            schedule_epochs=schedule_epochs,
        )

    @classmethod
    def from_file(cls, path: str | Path, models: Sequence[str] | None = None,
                  schedule_epochs: int | None = None) -> SearchSpace:
        """Load a search-space JSON file, with a clear error if it is unreadable
        (``models`` and ``schedule_epochs`` as in :meth:`from_dict`)."""
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"search-space file not found: {p}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"search-space file {p} is not valid JSON: {exc}") from None
        return cls.from_dict(data, models=models, schedule_epochs=schedule_epochs)
