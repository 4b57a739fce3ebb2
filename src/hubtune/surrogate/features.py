"""Feature vectors for the surrogate: config, model, dataset, fidelity and curve prefix.

One row describes the question "what will config ``c`` (model ``m``) score on
dataset ``d`` at epoch ``t``, given its first ``p < t`` epochs scored
``s_1..s_p``?". Blocks, in order:

* config encoding (:class:`~hubtune.space.encoding.ConfigEncoder`),
* model: hub descriptor features (log params, log input size, log GFLOPs,
  ImageNet top-1, known flag) standardised, or a model one-hot (ablation),
* dataset meta-features (log images, log classes, log resolution, channels),
  standardised,
* fidelity: ``t / T``, ``log t / log T``, ``p / T``, ``(t - p) / T``,
* curve prefix: has-prefix flag, last, best, first, mean of the last 3
  scores, recent slope (all zero when ``p = 0``).

Scalers are fitted on the meta-training data and stored with the surrogate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hubtune.core.metafeatures import DatasetMetaFeatures
from hubtune.hub.descriptor import ModelDescriptor
from hubtune.space.config import Config
from hubtune.space.encoding import ConfigEncoder

DescriptorLookup = Callable[[str], "ModelDescriptor | None"]

N_MODEL_DESC = 5
N_META = 4
N_FIDELITY = 4
N_CURVE = 6
REFERENCE_EPOCHS = 50
"""Fidelities are expressed relative to this many epochs (the meta-dataset's maximum)."""
Z_CLIP = 3.0
"""Standardised model/dataset features are clipped to +-Z_CLIP: a model or dataset far
outside the meta-training range (a tiny test model, 32 px images) is treated as the
most extreme one seen instead of being extrapolated by the network."""
MIN_STD = 1e-2
"""A feature that (nearly) never varied in meta-training is centred, not scaled."""


def _standardise(raw: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    scale = np.where(std > MIN_STD, std, 1.0)
    return np.clip((raw - mean) / scale, -Z_CLIP, Z_CLIP).astype(np.float32)


class FeatureError(ValueError):
    """Raised on inconsistent feature inputs (unknown model under one-hot, bad epochs)."""


def curve_features(prefix: Sequence[float]) -> np.ndarray:
    """The six curve-prefix statistics of a (possibly empty) score prefix."""
    out = np.zeros(N_CURVE, dtype=np.float32)
    p = len(prefix)
    if p == 0:
        return out
    s = np.asarray(prefix, dtype=np.float64)
    back = min(3, p - 1)
    out[0] = 1.0
    out[1] = s[-1]
    out[2] = s.max()
    out[3] = s[0]
    out[4] = s[-3:].mean()
    out[5] = (s[-1] - s[-1 - back]) / back * 10.0 if back > 0 else 0.0
    return out


def fidelity_features(prefix_len: int, target_epoch: int, ref_epochs: int = REFERENCE_EPOCHS) -> np.ndarray:
    """The four fidelity features of predicting epoch ``target_epoch`` after ``prefix_len`` epochs."""
    if target_epoch < 1 or prefix_len < 0 or prefix_len >= target_epoch:
        raise FeatureError(
            f"need 0 <= prefix_len < target_epoch, got prefix_len={prefix_len}, target_epoch={target_epoch}"
        )
    T = float(ref_epochs)
    return np.array(
        [target_epoch / T, math.log(target_epoch) / math.log(T), prefix_len / T, (target_epoch - prefix_len) / T],
        dtype=np.float32,
    )


class FeatureBuilder:
    """Builds surrogate input rows; holds the scalers of the model and dataset blocks.

    Args:
        encoder: the config encoder.
        model_encoding: ``"descriptor"`` (hub descriptor features), ``"onehot"``, or
            ``"both"`` (descriptor features plus a one-hot of the meta-training models;
            an unseen model gets its descriptor and an all-zero one-hot).
        models: model vocabulary for the one-hot encoding (ignored otherwise).
    """

    def __init__(
        self,
        encoder: ConfigEncoder | None = None,
        model_encoding: str = "descriptor",
        models: Sequence[str] = (),
    ) -> None:
        if model_encoding not in ("descriptor", "onehot", "both"):
            raise FeatureError(
                f"model_encoding must be 'descriptor', 'onehot' or 'both', got {model_encoding!r}"
            )
        self.encoder = encoder or ConfigEncoder.default()
        self.model_encoding = model_encoding
        self.models = list(models)
        self.model_mean = np.zeros(N_MODEL_DESC, dtype=np.float32)
        self.model_std = np.ones(N_MODEL_DESC, dtype=np.float32)
        self.meta_mean = np.zeros(N_META, dtype=np.float32)
        self.meta_std = np.ones(N_META, dtype=np.float32)

    @property
    def model_dim(self) -> int:
        return {"descriptor": N_MODEL_DESC, "onehot": len(self.models),
                "both": N_MODEL_DESC + len(self.models)}[self.model_encoding]

    @property
    def dim(self) -> int:
        """Length of a full feature row."""
        return self.encoder.dim + self.model_dim + N_META + N_FIDELITY + N_CURVE

    # ------------------------------------------------------------ scalers
    def fit_scalers(
        self, descriptor_rows: np.ndarray, meta_rows: np.ndarray
    ) -> None:
        """Fit the standardisation of the model-descriptor and meta-feature blocks."""
        self.model_mean = descriptor_rows.mean(0).astype(np.float32)
        self.model_std = np.maximum(descriptor_rows.std(0), 1e-3).astype(np.float32)
        self.meta_mean = meta_rows.mean(0).astype(np.float32)
        self.meta_std = np.maximum(meta_rows.std(0), 1e-3).astype(np.float32)

    # ------------------------------------------------------------- blocks
    def model_block(self, model: str, descriptor: ModelDescriptor | None) -> np.ndarray:
        """Model features for one model (descriptor standardised, one-hot, or both)."""
        onehot = np.zeros(len(self.models), dtype=np.float32)
        if model in self.models:
            onehot[self.models.index(model)] = 1.0
        if self.model_encoding == "onehot":
            return onehot
        if descriptor is None:
            # Unknown model: the mean model (all-zero after standardisation).
            desc = np.zeros(N_MODEL_DESC, dtype=np.float32)
        else:
            raw = np.asarray(descriptor.feature_vector(), dtype=np.float32)
            desc = _standardise(raw, self.model_mean, self.model_std)
        return desc if self.model_encoding == "descriptor" else np.concatenate([desc, onehot])

    def meta_block(self, meta: DatasetMetaFeatures | None) -> np.ndarray:
        """Standardised dataset meta-features (zeros if unknown)."""
        if meta is None:
            return np.zeros(N_META, dtype=np.float32)
        return _standardise(np.asarray(meta.vector(), dtype=np.float32), self.meta_mean, self.meta_std)

    def static_rows(
        self,
        configs: Sequence[Config],
        descriptors: dict[str, ModelDescriptor | None],
        meta: DatasetMetaFeatures | None,
    ) -> np.ndarray:
        """Config + model + dataset blocks for each config (``[n, static_dim]``)."""
        enc = self.encoder.encode_many(configs)
        cache: dict[str, np.ndarray] = {}
        mrows = []
        for c in configs:
            if c.model not in cache:
                cache[c.model] = self.model_block(c.model, descriptors.get(c.model))
            mrows.append(cache[c.model])
        mb = np.stack(mrows) if mrows else np.zeros((0, self.model_dim), dtype=np.float32)
        meta_b = np.repeat(self.meta_block(meta)[None, :], len(configs), axis=0)
        return np.concatenate([enc, mb, meta_b], axis=1).astype(np.float32)

    @staticmethod
    def dynamic_row(prefix: Sequence[float], target_epoch: int, ref_epochs: int = REFERENCE_EPOCHS) -> np.ndarray:
        """Fidelity + curve blocks for one query."""
        return np.concatenate([fidelity_features(len(prefix), target_epoch, ref_epochs), curve_features(prefix)])

    # ---------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible description incl. scalers."""
        return {
            "encoder": self.encoder.to_dict(),
            "model_encoding": self.model_encoding,
            "models": self.models,
            "model_mean": self.model_mean.tolist(),
            "model_std": self.model_std.tolist(),
            "meta_mean": self.meta_mean.tolist(),
            "meta_std": self.meta_std.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureBuilder:
        """Inverse of :meth:`to_dict`."""
        fb = cls(ConfigEncoder.from_dict(data["encoder"]), data["model_encoding"], data.get("models", []))
        fb.model_mean = np.asarray(data["model_mean"], dtype=np.float32)
        fb.model_std = np.asarray(data["model_std"], dtype=np.float32)
        fb.meta_mean = np.asarray(data["meta_mean"], dtype=np.float32)
        fb.meta_std = np.asarray(data["meta_std"], dtype=np.float32)
        return fb
