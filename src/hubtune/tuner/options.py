"""Checks of ``hubtune run`` / :class:`~hubtune.tuner.hubtuner.HubTuner` options before anything is written.

Every option that cannot work is refused here, with a message naming the option
(by its CLI spelling) and the value, so that a corrected command can run on the
same ``--out`` (nothing has been written to it yet). The rules are declarative:
one ``(option, check, requirement)`` row each, checked in order.

Example:
    >>> check_run_options({"num_threads": 0})
    Traceback (most recent call last):
    ...
    hubtune.core.errors.RunError: --threads must be a whole number >= 1 (or left out), got 0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from hubtune.core.errors import RunError

MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 1024


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _opt_whole_at_least(lo: int) -> Callable[[Any], bool]:
    return lambda v: v is None or (_whole(v) and v >= lo)


def _opt_positive(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)
                         and math.isfinite(v) and v > 0)


def _known_method(name: Any) -> bool:
    from hubtune.optim.registry import UnknownMethodError, get_method

    try:
        get_method(str(name))
    except UnknownMethodError:
        return False
    return True


def _known_methods() -> str:
    from hubtune.optim.registry import list_methods

    return ", ".join(sorted(m.name for m in list_methods()))


# (argument name, CLI spelling, check, what is required)
OPTION_RULES: list[tuple[str, str, Callable[[Any], bool], str]] = [
    ("max_epochs", "--max-epochs", lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
    ("seed", "--seed", _whole, "a whole number"),
    ("final_epochs", "--final-epochs", lambda v: _whole(v) and v >= 0, "a whole number >= 0"),
    ("num_threads", "--threads", _opt_whole_at_least(1), "a whole number >= 1 (or left out)"),
    ("subset", "--subset", _opt_whole_at_least(2), "a whole number >= 2 (or left out)"),
    ("image_size", "--image-size",
     lambda v: v is None or (_whole(v) and MIN_IMAGE_SIZE <= v <= MAX_IMAGE_SIZE),
     f"a whole number of pixels in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}] (or left out)"),
    ("models", "--models",
     lambda v: v is None or (len(v) > 0 and all(isinstance(m, str) and m.strip() for m in v)),
     "a non-empty comma-separated list of model names (or left out to use --hub)"),
    ("space", "--space", lambda v: v is None or isinstance(v, Mapping),
     "a JSON object (e.g. {\"fixed\": {...}, \"choices\": {...}}), not a list or a value"),
    ("optimizer", "--optimizer", _known_method, "a registered search method"),
    ("pretrained", "--pretrained", lambda v: isinstance(v, bool), "true or false"),
    ("max_latency_ms", "--max-latency-ms", _opt_positive, "a number of milliseconds > 0 (or left out)"),
    ("max_params", "--max-params", _opt_positive, "a number of millions > 0 (or left out)"),
    ("max_gflops", "--max-gflops", _opt_positive, "a number > 0 (or left out)"),
    ("latency_batch", "--latency-batch", lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
]


def check_run_options(options: Mapping[str, Any]) -> None:
    """Raise :class:`RunError` for the first option in ``options`` that cannot work.

    Only the keys present in ``options`` are checked, so callers may pass a subset.
    """
    for name, flag, ok, requirement in OPTION_RULES:
        if name not in options:
            continue
        value = options[name]
        if ok(value):
            continue
        if name == "optimizer":
            raise RunError(f"--optimizer: unknown method {value!r}; known methods: "
                           f"{_known_methods()}")
        raise RunError(f"{flag} must be {requirement}, got {value!r}")
