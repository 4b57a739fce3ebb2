"""Map a peer's proposal onto a configuration of the benchmark table.

DEHB, SMAC3 and Optuna propose points of a search space; on a tabular
benchmark only the table's configurations have recorded learning curves. A
:class:`TableMapping` builds the search space those peers search (hubtune's
real :class:`~hubtune.space.searchspace.SearchSpace`, restricted to the values
the table's configurations take) and maps every proposal to the nearest table
configuration in an encoded space:

* categorical hyperparameters (model, opt, sched, ...): one-hot, scaled by
  ``1/sqrt(2)`` so that two different categories are at distance 1;
* ordered numeric hyperparameters (lr, weight_decay, batch_size, ...): the
  value on a log scale (``log(v + shift)``, with ``shift`` half the smallest
  positive value when 0 is allowed) where the table's values span a factor of
  10 or more, else linear, normalised to [0, 1] over the table's range, so the
  full range also counts 1;
* ``None`` (an inactive conditional, or "off" for ``clip_grad`` /
  ``layer_decay``): numeric value 0 plus an indicator column set to 1;
  a categorical block stays all-zero;
* ``amp`` is not searched (it is not part of the search space) and not encoded.

New proposals prefer configurations not yet used by the peer: the nearest
*unused* configuration is chosen while one is left, the nearest overall after
that. Ties are broken by a seeded random order of the candidates.

Example:
    >>> mapping = TableMapping(ctx.candidates, seed=0)            # doctest: +SKIP
    >>> idx, dist = mapping.nearest(mapping.values_from(proposal))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hubtune.protocol.context import Candidate
from hubtune.space.config import Config, hyperparameter_names
from hubtune.space.searchspace import CONDITIONS, ORDINAL, SearchSpace, _untoken

NOT_SEARCHED = ("model", "amp")
OFF_ABLE = ("clip_grad", "layer_decay")


class MappingError(ValueError):
    """Raised for an empty candidate pool or a proposal that names unknown hyperparameters."""


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, 0) if value is None else (1, value)


class TableMapping:
    """Nearest-neighbour mapping from proposals to a fixed pool of table configurations.

    Args:
        candidates: the table's configurations (trial id = run id).
        seed: seed of the tie-breaking order.
    """

    def __init__(self, candidates: Sequence[Candidate], seed: int = 0) -> None:
        if not candidates:
            raise MappingError("the peer needs at least one candidate configuration")
        self.candidates = list(candidates)
        configs = [c.config for c in self.candidates]
        self.hyperparameters = [n for n in hyperparameter_names() if n not in NOT_SEARCHED]
        self.values: dict[str, list[Any]] = {}
        for name in self.hyperparameters:
            seen = {getattr(cfg, name) for cfg in configs}
            if name not in OFF_ABLE:
                seen.discard(None)
            self.values[name] = sorted(seen, key=_sort_key)
        choices = {n: v for n, v in self.values.items() if v}
        models = list(dict.fromkeys(cfg.model for cfg in configs))
        self.space = SearchSpace(models=sorted(models), choices=choices,
                                 max_batch_size=max(int(cfg.batch_size) for cfg in configs))
        self._columns: list[tuple[str, str, Any]] = []  # (hp, kind, category or None)
        self._numeric: dict[str, tuple[bool, float, float, float]] = {}
        for name in ["model", *self.hyperparameters]:
            values = models if name == "model" else self.values[name]
            if name in ORDINAL:
                nums = [float(v) for v in values if v is not None]
                if not nums:
                    continue
                lo, hi = min(nums), max(nums)
                positive = [v for v in nums if v > 0]
                log = bool(positive) and lo >= 0 and hi / min(positive) >= 10
                shift = (min(positive) / 2 if lo == 0 else 0.0) if log else 0.0
                self._numeric[name] = (log, lo, hi, shift)
                self._columns.append((name, "num", None))
                if None in values or name in CONDITIONS:
                    self._columns.append((name, "none", None))
            else:
                for v in values:
                    self._columns.append((name, "cat", v))
        self._col_index: dict[tuple[str, str, Any], int] = {
            (n, k, _hashable(v)): i for i, (n, k, v) in enumerate(self._columns)
        }
        self.matrix = np.stack([self.encode(self.config_values(c)) for c in configs])
        self._order = np.random.default_rng(seed).permutation(len(self.candidates))
        self.used: set[int] = set()

    # ------------------------------------------------------------- encoding
    @property
    def configspace(self):  # noqa: ANN201 - ConfigSpace type kept out of the signature
        """The ConfigSpace the peers search (hubtune's space on the table's values)."""
        return self.space.configspace

    @staticmethod
    def config_values(config: Config) -> dict[str, Any]:
        """A table configuration as ``{hyperparameter: value}`` (``None`` when inactive)."""
        return config.to_dict()

    def values_from(self, proposal: Mapping[str, Any]) -> dict[str, Any]:
        """Python values of a ConfigSpace assignment (string tokens); missing = inactive."""
        unknown = set(proposal) - set(self.hyperparameters) - {"model"}
        if unknown:
            raise MappingError(f"proposal names unknown hyperparameters: {sorted(unknown)}")
        return {k: _untoken(v) if isinstance(v, str) else v for k, v in proposal.items()}

    def _transform(self, name: str, value: float) -> float:
        log, lo, hi, shift = self._numeric[name]
        if log:
            t, a, b = math.log(value + shift), math.log(lo + shift), math.log(hi + shift)
        else:
            t, a, b = value, lo, hi
        return 0.5 if b == a else (t - a) / (b - a)

    def encode(self, values: Mapping[str, Any]) -> np.ndarray:
        """Encoded vector of ``{hyperparameter: value}`` (see the module docstring)."""
        out = np.zeros(len(self._columns), dtype=np.float64)
        scale = 1.0 / math.sqrt(2.0)
        for name in ["model", *self.hyperparameters]:
            value = values.get(name)
            if name in self._numeric:
                if value is None:
                    idx = self._col_index.get((name, "none", None))
                    if idx is not None:
                        out[idx] = 1.0
                else:
                    out[self._col_index[(name, "num", None)]] = self._transform(name, float(value))
            elif value is not None:
                idx = self._col_index.get((name, "cat", _hashable(value)))
                if idx is not None:
                    out[idx] = scale
        return out

    # ------------------------------------------------------------- mapping
    def nearest(self, values: Mapping[str, Any], prefer_unused: bool = True,
                mark: bool = True) -> tuple[int, float]:
        """Index of the nearest candidate and its Euclidean distance in the encoding.

        With ``prefer_unused`` the nearest candidate not yet used wins while
        one is left. ``mark`` records the chosen candidate as used.
        """
        d = np.sqrt(((self.matrix - self.encode(values)) ** 2).sum(axis=1))
        order = self._order
        if prefer_unused and len(self.used) < len(self.candidates):
            order = np.array([i for i in order if i not in self.used], dtype=np.int64)
        sub = d[order]
        best = int(order[int(np.argmin(sub))])  # argmin takes the first minimum: seeded tie-break
        if mark:
            self.used.add(best)
        return best, float(d[best])


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
