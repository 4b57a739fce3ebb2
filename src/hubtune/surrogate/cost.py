"""Cost model: predicted seconds per epoch of a candidate, meta-trained and corrected online.

Meta-training fits a ridge regression of log seconds-per-epoch on model
descriptor features, the hyperparameters that change the work per epoch
(batch size, freezing, linear probing, AMP, stochastic norm, augmentation) and
the dataset's size, with the products of the dataset size / batch size and the
model features (cost grows with images x GFLOPs). It is tiny, deterministic
and stored as JSON.

A user's hardware differs from the meta-dataset's GPUs, so
:class:`OnlineCost` corrects the prior from observed steps: a global log-scale
offset and per-model offsets (shrunk towards zero while evidence is thin),
and, for a trial already run, its own measured seconds per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from hubtune.core.metafeatures import DatasetMetaFeatures
from hubtune.hub.descriptor import ModelDescriptor
from hubtune.space.config import AUGMENTATIONS, Config

_N_DESC = 5


def _desc_vec(descriptor: ModelDescriptor | None) -> np.ndarray:
    if descriptor is None:
        return np.full(_N_DESC, np.nan)
    return np.asarray(descriptor.feature_vector(), dtype=np.float64)


def _raw_features(config: Config, desc: np.ndarray, meta: DatasetMetaFeatures | None) -> np.ndarray:
    mv = np.asarray(meta.vector()[:3] if meta is not None else [math.log(10000), math.log(50), math.log(128)])
    logb = math.log(config.batch_size)
    hp = [
        logb,
        config.pct_to_freeze,
        float(config.linear_probing),
        float(config.amp),
        float(config.stoch_norm),
        *[float(config.data_augmentation == a) for a in AUGMENTATIONS],
    ]
    return np.concatenate([desc, hp, mv, desc * mv[0], desc * logb])


class CostModel:
    """Ridge regression of log seconds per epoch (see module docstring).

    Unknown models (no descriptor) get the training mean of the model features.
    """

    def __init__(self, ridge: float = 1e-2) -> None:
        self.ridge = ridge
        self.desc_mean = np.zeros(_N_DESC)
        self.mean = np.zeros(0)
        self.std = np.ones(0)
        self.coef = np.zeros(0)
        self.intercept = 0.0
        self.residual_std = 1.0

    @property
    def fitted(self) -> bool:
        return self.coef.size > 0

    def _matrix(
        self,
        configs: Sequence[Config],
        descriptors: dict[str, ModelDescriptor | None],
        metas: Sequence[DatasetMetaFeatures | None],
    ) -> np.ndarray:
        rows = []
        cache: dict[str, np.ndarray] = {}
        for c, m in zip(configs, metas, strict=True):
            if c.model not in cache:
                d = _desc_vec(descriptors.get(c.model))
                cache[c.model] = np.where(np.isnan(d), self.desc_mean, d)
            rows.append(_raw_features(c, cache[c.model], m))
        return np.asarray(rows, dtype=np.float64)

    def fit(
        self,
        configs: Sequence[Config],
        descriptors: dict[str, ModelDescriptor | None],
        metas: Sequence[DatasetMetaFeatures | None],
        seconds_per_epoch: Sequence[float],
    ) -> CostModel:
        """Fit on runs (config, its dataset's meta-features, mean seconds per epoch)."""
        y = np.log(np.maximum(np.asarray(seconds_per_epoch, dtype=np.float64), 1e-3))
        known = [d for d in descriptors.values() if d is not None]
        if known:
            self.desc_mean = np.mean([_desc_vec(d) for d in known], axis=0)
        X = self._matrix(configs, descriptors, metas)
        self.mean = X.mean(0)
        self.std = np.maximum(X.std(0), 1e-6)
        Z = (X - self.mean) / self.std
        self.intercept = float(y.mean())
        A = Z.T @ Z + self.ridge * len(Z) * np.eye(Z.shape[1])
        self.coef = np.linalg.solve(A, Z.T @ (y - self.intercept))
        self.residual_std = float(np.std(y - self.intercept - Z @ self.coef))
        return self

    def predict_log(
        self,
        configs: Sequence[Config],
        descriptors: dict[str, ModelDescriptor | None],
        meta: DatasetMetaFeatures | None,
    ) -> np.ndarray:
        """Predicted log seconds per epoch for each config on a dataset with ``meta``."""
        if not self.fitted:
            raise RuntimeError("cost model is not fitted")
        if not configs:
            return np.zeros(0)
        X = self._matrix(configs, descriptors, [meta] * len(configs))
        return self.intercept + ((X - self.mean) / self.std) @ self.coef

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible parameters."""
        return {
            "kind": "ridge-log-seconds-per-epoch",
            "ridge": self.ridge,
            "desc_mean": self.desc_mean.tolist(),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "residual_std": self.residual_std,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CostModel:
        """Inverse of :meth:`to_dict`."""
        cm = cls(float(data["ridge"]))
        cm.desc_mean = np.asarray(data["desc_mean"], dtype=np.float64)
        cm.mean = np.asarray(data["mean"], dtype=np.float64)
        cm.std = np.asarray(data["std"], dtype=np.float64)
        cm.coef = np.asarray(data["coef"], dtype=np.float64)
        cm.intercept = float(data["intercept"])
        cm.residual_std = float(data["residual_std"])
        return cm


class OnlineCost:
    """Per-task cost predictions: meta-learned prior + corrections from observed steps.

    Args:
        prior_log: prior log seconds per epoch for each candidate index.
        models: each candidate's model name (for per-model corrections).
        shrink: pseudo-count pulling corrections towards zero.
    """

    def __init__(self, prior_log: np.ndarray, models: Sequence[str], shrink: float = 1.0) -> None:
        self.prior_log = np.asarray(prior_log, dtype=np.float64)
        self.models = list(models)
        self.shrink = shrink

    def per_epoch(self, observed: dict[int, float]) -> np.ndarray:
        """Seconds per epoch for every candidate.

        ``observed`` maps candidate index -> its measured mean seconds per epoch.
        Measured candidates use their own figure; the rest the prior shifted by
        the (shrunk) global and per-model log residuals.
        """
        pred = self.prior_log.copy()
        if observed:
            idx = np.fromiter(observed.keys(), dtype=np.int64)
            res = np.log(np.maximum(np.fromiter(observed.values(), dtype=np.float64), 1e-6)) - self.prior_log[idx]
            n = len(res)
            glob = res.sum() / (n + self.shrink)
            pred += glob
            by_model: dict[str, list[float]] = {}
            for i, r in zip(idx, res, strict=True):
                by_model.setdefault(self.models[i], []).append(r - glob)
            offsets = {m: sum(v) / (len(v) + self.shrink) for m, v in by_model.items()}
            for j, m in enumerate(self.models):
                if m in offsets:
                    pred[j] += offsets[m]
            out = np.exp(pred)
            for i, s in observed.items():
                out[i] = s
            return out
        return np.exp(pred)
