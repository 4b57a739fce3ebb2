"""Which configurations a generated meta-dataset trains: a space-filling design plus the portfolio.

The *portfolio* is each model's default configuration (what the ``defaults``
baseline and Quick-Tune's first steps train). The rest is a scrambled Sobol
design over the search space: each hyperparameter with more than one choice is
one dimension of the unit cube (the model first), a point picks the choice
``floor(u * k)`` of each dimension, and conditional hyperparameters whose
parent does not activate them are dropped. Sobol prefixes are balanced, so the
first ``2**m`` points spread evenly over every choice list, and a longer design
with the same seed starts with the same points (``--configs`` can grow on resume).

Example:
    >>> from hubtune.space import SearchSpace
    >>> space = SearchSpace(["mobilenetv2_100", "tf_efficientnet_lite0"])
    >>> design = design_configs(space, 6, seed=0)
    >>> [origin for origin, _ in design][:3]
    ['portfolio', 'portfolio', 'sobol']
    >>> len(design)
    6
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

from hubtune.space.config import Config, ConfigError
from hubtune.space.searchspace import CONDITIONS, SearchSpace


class DesignError(ValueError):
    """The design cannot be built (e.g. the space holds fewer distinct configs than asked)."""


def design_dimensions(space: SearchSpace) -> list[str]:
    """Names of the design's dimensions: ``model`` first, then every hyperparameter with a choice."""
    names = [k for k, v in space.choices.items() if k not in ("model", "amp") and len(v) > 1]
    return (["model"] if len(space.choices["model"]) > 1 else []) + names


def config_from_point(space: SearchSpace, point: Sequence[float], dims: Sequence[str]) -> Config:
    """The configuration of one design point ``point`` (values in ``[0, 1)``) over ``dims``."""
    values: dict[str, Any] = {}
    for name, grid in space.choices.items():
        if name == "amp":
            continue
        if name in dims:
            u = float(point[list(dims).index(name)])
            values[name] = grid[min(int(u * len(grid)), len(grid) - 1)]
        else:
            values[name] = grid[0]
    for child, (parent, on) in CONDITIONS.items():
        if values.get(parent) not in on:
            values[child] = None
    if "amp" in space.fixed:
        values["amp"] = space.fixed["amp"]
    return Config.from_dict(values)


def sobol_points(n: int, dims: int, seed: int) -> list[list[float]]:
    """The first ``n`` points of a scrambled Sobol sequence in ``[0, 1)**dims``."""
    from scipy.stats import qmc

    if dims == 0:
        return [[] for _ in range(n)]
    sampler = qmc.Sobol(d=dims, scramble=True, seed=seed)
    m = max(0, math.ceil(math.log2(max(n, 1))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # balance warnings for dims > 21201 never apply here
        points = sampler.random_base2(m)
    return points[:n].tolist()


def design_configs(
    space: SearchSpace,
    n: int,
    seed: int = 0,
    portfolio: bool = True,
    extra: Sequence[Config] = (),
) -> list[tuple[str, Config]]:
    """``n`` distinct configurations as ``(origin, config)``: portfolio, given, then Sobol.

    ``origin`` is ``"portfolio"`` (a model's default config), ``"given"`` (from
    ``extra``, kept even outside ``space``) or ``"sobol"``. Configurations that
    train identically (:meth:`Config.effective_key`) appear once; a design point
    that is no valid config or a duplicate is skipped and the sequence goes on.
    The order is stable: the first ``n`` of a longer design are this design.

    Raises:
        DesignError: ``n < 1``, or the space holds fewer than ``n`` distinct configs.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DesignError(f"the number of configurations must be a positive integer, got {n!r}")
    out: list[tuple[str, Config]] = []
    seen: set[str] = set()

    def add(origin: str, cfg: Config) -> None:
        key = cfg.effective_key()
        if key not in seen and len(out) < n:
            seen.add(key)
            out.append((origin, cfg))

    if portfolio:
        for model in space.models:
            add("portfolio", space.default_config(model))
    for cfg in extra:
        add("given", cfg)
    dims = design_dimensions(space)
    want = n
    while len(out) < n:
        points = sobol_points(want, len(dims), seed)
        out = [o for o in out if o[0] != "sobol"]
        seen = {c.effective_key() for _, c in out}
        for p in points:
            if len(out) >= n:
                break
            try:
                add("sobol", config_from_point(space, p, dims))
            except ConfigError:
                continue
        if len(out) < n:
            if want >= 64 * n + 1024:
                raise DesignError(
                    f"the search space yields only {len(out)} distinct configurations, fewer than "
                    f"the {n} asked for; ask for fewer or widen the space"
                )
            want *= 2
    return out
