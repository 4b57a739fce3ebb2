"""Config -> numeric feature vector: the ONE encoder the surrogate uses.

Categorical hyperparameters become one-hot blocks over the Quick-Tune "v6"
grid (:data:`~hubtune.space.searchspace.V6_CHOICES`); ordered numeric ones are
mapped to [0, 1] on a log or linear scale over the grid's range. A conditional
that is inactive for a config gets the neutral value 0.5 (numeric) or an
all-zero block (categorical) plus an activity flag of 0; ``clip_grad`` and
``layer_decay`` "off" (``None``) get value 0 plus an "on" flag of 0.

The model is NOT part of this vector: the surrogate describes models by
their hub descriptor features (see :mod:`hubtune.surrogate.features`), so a
model never seen in meta-training still gets a sensible prior.

The encoding spec is frozen into every saved surrogate (:meth:`ConfigEncoder.to_dict`),
so a user's restricted or extended grid is encoded on the same scale the
surrogate was trained on (values outside the grid range extrapolate linearly).

Epoch-valued hyperparameters (warm-up, step decay, plateau patience) are
encoded as epochs of the meta-dataset's 50-epoch schedule: ``epoch_scale``
(50 / the run's schedule length, as the surrogate's fidelities use) converts a
short run's counts, and the result is clipped to the grid's range (the
meta-dataset holds nothing longer to extrapolate from).

Example:
    >>> from hubtune.space.config import Config
    >>> enc = ConfigEncoder.default()
    >>> v = enc.encode(Config(model="m", opt="sgd", lr=1e-3))
    >>> v.shape == (enc.dim,)
    True
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hubtune.space.config import CONDITIONAL_DEFAULTS, Config
from hubtune.space.searchspace import CONDITIONS, EPOCH_VALUED, ORDINAL, V6_CHOICES

OFF_ABLE = ("clip_grad", "layer_decay")
"""Numeric hyperparameters where ``None`` means "off"."""


class EncodingError(ValueError):
    """Raised when an encoding spec is malformed or a config cannot be encoded."""


def _key(value: Any) -> str:
    return json.dumps(list(value) if isinstance(value, tuple) else value)


@dataclass(frozen=True)
class _Numeric:
    name: str
    log: bool
    lo: float
    hi: float
    shift: float  # log scale: log(v + shift); shift > 0 only when the grid holds 0

    def transform(self, v: float) -> float:
        if self.log:
            t, lo, hi = math.log(v + self.shift), math.log(self.lo + self.shift), math.log(self.hi + self.shift)
        else:
            t, lo, hi = v, self.lo, self.hi
        return 0.5 if hi == lo else (t - lo) / (hi - lo)


class ConfigEncoder:
    """Encodes :class:`Config` s as fixed-length float vectors.

    Args:
        choices: value grid per hyperparameter (defaults to ``V6_CHOICES``); the
            scale of every numeric and the categories of every categorical are
            taken from it. ``"model"`` is ignored.
    """

    def __init__(self, choices: dict[str, Sequence[Any]] | None = None) -> None:
        grid = {k: list(v) for k, v in (choices or V6_CHOICES).items() if k != "model"}
        missing = sorted(set(V6_CHOICES) - set(grid))
        if missing:
            raise EncodingError(f"encoding grid lacks hyperparameter(s): {', '.join(missing)}")
        self.choices = grid
        self._numeric: dict[str, _Numeric] = {}
        self._categories: dict[str, list[str]] = {}
        names: list[str] = []
        for name, values in grid.items():
            if name in ORDINAL:
                nums = [float(v) for v in values if v is not None]
                if not nums:
                    raise EncodingError(f"numeric hyperparameter {name!r} has no numeric choices")
                lo, hi = min(nums), max(nums)
                positive = [v for v in nums if v > 0]
                log = bool(positive) and lo >= 0 and hi / min(positive) >= 10
                shift = (min(positive) / 2 if lo == 0 else 0.0) if log else 0.0
                self._numeric[name] = _Numeric(name, log, lo, hi, shift)
                names.append(name)
                if name in OFF_ABLE:
                    names.append(f"{name}:on")
                if name in CONDITIONS:
                    names.append(f"{name}:active")
            else:
                cats = [_key(v) for v in values]
                self._categories[name] = cats
                names.extend(f"{name}={c}" for c in cats)
                if name in CONDITIONS:
                    names.append(f"{name}:active")
        names.append("amp")
        self.names = names
        self._index = {n: i for i, n in enumerate(names)}

    @classmethod
    def default(cls) -> ConfigEncoder:
        """The encoder over the Quick-Tune v6 grid (what shipped surrogates use)."""
        return cls(V6_CHOICES)

    @property
    def dim(self) -> int:
        """Length of an encoded vector."""
        return len(self.names)

    def encode(self, config: Config, epoch_scale: float = 1.0) -> np.ndarray:
        """One config as a float32 vector of length :attr:`dim`.

        ``epoch_scale``: meta-dataset epochs per epoch of the config's schedule
        (``hubtune.surrogate.features.epoch_scale``); scales the epoch-valued fields.
        """
        if not isinstance(config, Config):
            raise EncodingError(f"expected a Config, got {type(config).__name__}")
        out = np.zeros(self.dim, dtype=np.float32)
        idx = self._index
        for name, num in self._numeric.items():
            value = getattr(config, name)
            conditional = name in CONDITIONS
            if conditional and name in CONDITIONAL_DEFAULTS and value is None:
                out[idx[name]] = 0.5
                continue
            if conditional:
                out[idx[f"{name}:active"]] = 1.0
            if name in OFF_ABLE:
                if value is None:
                    continue
                out[idx[f"{name}:on"]] = 1.0
            if name in EPOCH_VALUED:
                value = min(max(float(value) * epoch_scale, num.lo), num.hi)
            out[idx[name]] = num.transform(float(value))
        for name, cats in self._categories.items():
            value = getattr(config, name)
            if value is None:
                continue  # inactive conditional: all-zero block, flag 0
            if name in CONDITIONS:
                out[idx[f"{name}:active"]] = 1.0
            key = _key(value)
            if key in cats:
                out[idx[f"{name}={key}"]] = 1.0
            # an unknown category (outside the trained grid) stays all-zero
        out[idx["amp"]] = 1.0 if config.amp else 0.0
        return out

    def encode_many(self, configs: Sequence[Config], epoch_scale: float = 1.0) -> np.ndarray:
        """Configs as a ``[n, dim]`` float32 matrix (``epoch_scale`` as in :meth:`encode`)."""
        if not configs:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.encode(c, epoch_scale) for c in configs])

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible spec (the grid); :meth:`from_dict` rebuilds the same encoder."""
        return {
            # a list of pairs: the order of the blocks must survive JSON with sorted keys
            "choices": [[k, [list(x) if isinstance(x, tuple) else x for x in v]] for k, v in self.choices.items()],
            "names": self.names,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConfigEncoder:
        """Inverse of :meth:`to_dict`; checks the feature names match."""
        try:
            choices = {k: [tuple(x) if isinstance(x, list) else x for x in v] for k, v in data["choices"]}
        except (KeyError, AttributeError, TypeError, ValueError) as exc:
            raise EncodingError(f"malformed encoding spec: {exc}") from None
        enc = cls(choices)
        if "names" in data and list(data["names"]) != enc.names:
            raise EncodingError("encoding spec's feature names do not match its grid")
        return enc
