"""Turn the hyperparameters recorded by Quick-Tune style runs into a :class:`Config`.

Every layout (the compact table, the official release's ``args.json``,
Quick-Tune-Tool's ``config.csv``) ends up here, so all of them follow the same
rules:

- names may use ``-`` or ``_`` (``pct-to-freeze`` == ``pct_to_freeze``);
- ``"None"``/``None``/``""``/NaN mean "not set"; ``data_augmentation`` "not set"
  is ``"none"``; values may use ``-`` (``trivial-augment``);
- ``clip_grad`` and ``layer_decay`` of -1 (or not set) mean off (``None``);
- booleans from 0/1/true/false; integers from integral numbers (``90.0`` -> 90);
- ``opt_betas`` from a list or text such as ``"[0.9, 0.999]"`` or ``"0.9 0.999"``;
- a single-element list stands for its element (``model: ["beit"]``);
- where ``data_augmentation`` is absent it is derived from the training
  script's flags ``trivial_augment`` / ``random_augment`` / ``auto_augment``;
- conditional hyperparameters that are inactive for the chosen ``opt``,
  ``sched`` and ``data_augmentation`` hold the script's defaults in the
  sources; they are dropped (``None``), exactly like ``Config.replace``.

Keys that are not hyperparameters (``dataset``, ``experiment``, ``epochs`` ...)
are ignored by :func:`config_from_hyperparameters` unless ``strict=True``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from hubtune.space.config import CONDITIONAL_DEFAULTS, Config, ConfigError, hyperparameter_names

HYPERPARAMETERS: tuple[str, ...] = tuple(hyperparameter_names())
BOOL_HPS = frozenset({"linear_probing", "stoch_norm", "amp"})
INT_HPS = frozenset(
    {"batch_size", "warmup_epochs", "decay_epochs", "patience_epochs", "ra_num_ops", "ra_magnitude"}
)
OFF_WHEN_NEGATIVE = frozenset({"clip_grad", "layer_decay"})
STRING_HPS = frozenset({"model", "opt", "sched", "data_augmentation", "auto_augment"})
AUGMENTATION_FLAGS = ("trivial_augment", "random_augment")
ALIASES = {"aa": "auto_augment", "ta": "trivial_augment", "ra": "random_augment"}


@lru_cache(maxsize=4096)
def normalise_name(name: str) -> str:
    """Canonical hyperparameter name: lower case, ``-`` -> ``_``, known aliases resolved."""
    key = str(name).strip().lower().replace("-", "_")
    return ALIASES.get(key, key)


def is_unset(value: Any) -> bool:
    """Whether ``value`` means "not set" in the sources (None, "None", "", NaN)."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().lower() in ("", "none", "null", "nan")
    if isinstance(value, float):
        return math.isnan(value)
    return False


def _unwrap(name: str, value: Any) -> Any:
    if isinstance(value, (list, tuple)) and name != "opt_betas":
        if len(value) != 1:
            raise ConfigError(f"{name} must be a single value, got {value!r}")
        return value[0]
    return value


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1", "1.0", "yes"):
            return True
        if text in ("false", "0", "0.0", "no"):
            return False
    elif isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise ConfigError(f"{name} must be a boolean (0/1 or true/false), got {value!r}")


def _as_number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None


def _as_int(name: str, value: Any) -> int:
    number = _as_number(name, value)
    if not math.isfinite(number) or number != int(number):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    return int(number)


def _as_betas(value: Any) -> tuple[float, float] | None:
    if is_unset(value):
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text.replace("(", "[").replace(")", "]"))
        except json.JSONDecodeError:
            value = text.replace(",", " ").split()
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"opt_betas must be two numbers, got {value!r}")
    return (_as_number("opt_betas", value[0]), _as_number("opt_betas", value[1]))


def _as_string(name: str, value: Any) -> str | None:
    if is_unset(value):
        return "none" if name == "data_augmentation" else None
    text = str(value).strip()
    if name in ("data_augmentation", "auto_augment", "opt", "sched"):
        text = text.lower().replace("-", "_")
    return text


@lru_cache(maxsize=65536)
def _convert_cached(name: str, value: Any) -> Any:
    return _convert(name, value)


def convert_value(name: str, value: Any) -> Any:
    """Convert one raw value of hyperparameter ``name`` (canonical name) to Config's type."""
    try:
        return _convert_cached(name, value)
    except TypeError:  # unhashable (a list)
        return _convert(name, value)


def _convert(name: str, value: Any) -> Any:
    value = _unwrap(name, value)
    if name == "opt_betas":
        return _as_betas(value)
    if name in STRING_HPS:
        return _as_string(name, value)
    if is_unset(value):
        return None
    if name in BOOL_HPS:
        return _as_bool(name, value)
    if name in INT_HPS:
        return _as_int(name, value)
    number = _as_number(name, value)
    if name in OFF_WHEN_NEGATIVE and number < 0:
        return None
    return number


def _derive_augmentation(raw: dict[str, Any]) -> str:
    """``data_augmentation`` from the training script's separate augmentation flags."""
    chosen = [flag for flag in AUGMENTATION_FLAGS if flag in raw and _as_bool(flag, _unwrap(flag, raw[flag]))]
    policy = raw.get("auto_augment")
    if policy is not None and not is_unset(_unwrap("auto_augment", policy)):
        chosen.append("auto_augment")
    if len(chosen) > 1:
        raise ConfigError(f"more than one data augmentation is switched on: {', '.join(chosen)}")
    return chosen[0] if chosen else "none"


def config_from_hyperparameters(raw: Mapping[str, Any], strict: bool = False) -> Config:
    """Build a :class:`Config` from recorded hyperparameters (see the module doc for the rules).

    Raises:
        ConfigError: the values do not form a valid configuration (message names the value),
            or, with ``strict=True``, a key is not a hyperparameter.

    Example:
        >>> cfg = config_from_hyperparameters(
        ...     {"model": "resnet18", "opt": "sgd", "momentum": 0.9, "clip-grad": -1,
        ...      "batch_size": 32.0, "amp": 0})
        >>> cfg.momentum is None, cfg.clip_grad is None, cfg.batch_size, cfg.amp
        (True, True, 32, False)
    """
    named: dict[str, Any] = {}
    for key, value in raw.items():
        name = normalise_name(key)
        if name in named and named[name] != value:
            raise ConfigError(f"hyperparameter {name!r} is given twice ({named[name]!r}, {value!r})")
        named[name] = value
    unknown = sorted(set(named) - set(HYPERPARAMETERS) - set(AUGMENTATION_FLAGS))
    if strict and unknown:
        raise ConfigError(f"unknown hyperparameter(s): {', '.join(unknown)}")
    if "model" not in named or is_unset(_unwrap("model", named["model"])):
        raise ConfigError("no model is named")
    if "data_augmentation" not in named:
        named["data_augmentation"] = _derive_augmentation(named)
    values = {n: convert_value(n, v) for n, v in named.items() if n in HYPERPARAMETERS}
    conditional = {n: values.pop(n) for n in list(values) if n in CONDITIONAL_DEFAULTS}
    for name in OFF_WHEN_NEGATIVE:  # an absent value means "off", like -1
        values.setdefault(name, None)
    # Unset values fall back to Config's defaults.
    values = {n: v for n, v in values.items() if v is not None or n in OFF_WHEN_NEGATIVE}
    parents = (
        values.get("opt", _DEFAULTS["opt"]),
        values.get("sched", _DEFAULTS["sched"]),
        values.get("data_augmentation", _DEFAULTS["data_augmentation"]),
    )
    active = _active_for(*parents) if all(isinstance(p, str) for p in parents) else frozenset()
    values.update({n: v for n, v in conditional.items() if n in active and v is not None})
    return Config(**values)  # fills active conditionals without a value; validates


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Config)}


@lru_cache(maxsize=1024)
def _active_for(opt: str, sched: str, data_augmentation: str) -> frozenset[str]:
    """Conditional hyperparameters active for these parents (asked of Config itself)."""
    try:
        probe = Config(model="probe", opt=opt, sched=sched, data_augmentation=data_augmentation)
    except ConfigError:
        return frozenset()  # the real construction reports the invalid parent
    return frozenset(n for n in CONDITIONAL_DEFAULTS if getattr(probe, n) is not None)
