"""Feature vectors for the surrogate: config, model, dataset, fidelity and curve prefix.

One row describes the question "what will config ``c`` (model ``m``) score on
dataset ``d`` at epoch ``t``, given its first ``p < t`` epochs scored
``s_1..s_p``?". Blocks, in order:

* config encoding (:class:`~hubtune.space.encoding.ConfigEncoder`),
* model: hub descriptor features (log params, log input size, log GFLOPs,
  ImageNet top-1, known flag) standardised, or a model one-hot (ablation),
* dataset meta-features (log images, log classes, log resolution, channels),
  standardised,
* fidelity: ``t / T``, ``log t / log T``, ``p / T``, ``(t - p) / T`` (epochs in
  meta-dataset epochs, see :func:`epoch_scale`),
* curve prefix: has-prefix flag, last, best, first, mean of the last 3
  scores, recent slope (all zero when ``p = 0``).

Scalers are fitted on the meta-training data and stored with the surrogate.

This module is the only place rows are put together: :func:`assemble_rows`
(and :func:`curve_rows`, :func:`observed_rows` on top of it) serve the
optimizer's observations and queries, meta-training episodes and held-out
evaluation alike, so a row means the same thing in all three.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hubtune.core.metafeatures import DatasetMetaFeatures
from hubtune.hub.descriptor import ModelDescriptor
from hubtune.space.config import Config
from hubtune.space.encoding import ConfigEncoder
from hubtune.space.searchspace import REFERENCE_EPOCHS as SCHEDULE_REFERENCE

DescriptorLookup = Callable[[str], "ModelDescriptor | None"]

N_MODEL_DESC = 5
N_META = 4
N_FIDELITY = 4
N_CURVE = 6
REFERENCE_EPOCHS = SCHEDULE_REFERENCE
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


def epoch_scale(schedule_epochs: int | None) -> float:
    """Meta-dataset epochs per epoch of a schedule spanning ``schedule_epochs`` (``None``: 1).

    An epoch ``e`` of a run whose learning-rate schedule spans ``schedule_epochs``
    is presented to the surrogate as epoch ``e * REFERENCE_EPOCHS / schedule_epochs``
    (the same fraction of a 50-epoch schedule), and its curve slopes per such epoch.
    """
    if schedule_epochs is None:
        return 1.0
    if schedule_epochs < 1:
        raise FeatureError(f"schedule_epochs must be >= 1, got {schedule_epochs}")
    return REFERENCE_EPOCHS / float(schedule_epochs)


def fidelity_block(prefix_len: Any, target_epoch: Any, schedule_epochs: int | None = None) -> np.ndarray:
    """Fidelity features ``[n, N_FIDELITY]`` of predicting ``target_epoch`` after ``prefix_len`` epochs.

    Vectorised over equally long 1-D ``prefix_len`` / ``target_epoch`` (recorded
    epochs; scalars give one row). With epochs ``e = target * s`` and ``p = prefix * s``
    in meta-dataset epochs (``s = epoch_scale(schedule_epochs)``) the features are
    ``e / T``, ``log max(e, 1) / log T``, ``p / T``, ``(e - p) / T`` with
    ``T = REFERENCE_EPOCHS``. The only place this formula is written.
    """
    scale = epoch_scale(schedule_epochs)
    e = np.atleast_1d(np.asarray(target_epoch, dtype=np.float64)) * scale
    p = np.atleast_1d(np.asarray(prefix_len, dtype=np.float64)) * scale
    T = float(REFERENCE_EPOCHS)
    log_t = np.log(T)
    return np.stack([e / T, np.log(np.maximum(e, 1.0)) / log_t, p / T, (e - p) / T], axis=-1).astype(np.float32)


def fidelity_features(prefix_len: float, target_epoch: float, schedule_epochs: int | None = None) -> np.ndarray:
    """The four fidelity features of one query (checked: ``0 <= prefix_len < target_epoch``)."""
    if target_epoch < 1 or prefix_len < 0 or prefix_len >= target_epoch:
        raise FeatureError(
            f"need 0 <= prefix_len < target_epoch, got prefix_len={prefix_len}, target_epoch={target_epoch}"
        )
    return fidelity_block(prefix_len, target_epoch, schedule_epochs)[0]


def curve_table(scores: np.ndarray, schedule_epochs: int | None = None) -> np.ndarray:
    """Curve-prefix features of every prefix of every curve: ``[n, E + 1, N_CURVE]``.

    ``scores`` is ``[n, E]`` (or one curve ``[E]``, giving ``[E + 1, N_CURVE]``);
    entry ``[i, p]`` describes curve ``i``'s first ``p`` scores: has-prefix flag,
    last, best, first, mean of the last 3, and the recent slope (over the last
    ``min(3, p - 1)`` epochs, times 10, per meta-dataset epoch; see
    :func:`epoch_scale`). All zero for ``p = 0``. Non-finite scores count as 0,
    as the optimizer records them. The only place the curve features are computed.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        return curve_table(s[None, :], schedule_epochs)[0]
    s = np.where(np.isfinite(s), s, 0.0)
    n, E = s.shape
    out = np.zeros((n, E + 1, N_CURVE), dtype=np.float32)
    if E == 0:
        return out
    last = np.arange(E)  # index of the last score of prefix p = last + 1
    back = np.minimum(3, last)
    # mean of the last min(3, p) scores, summed left to right as np.mean does
    window = np.minimum(3, last + 1)
    a, b, c = s[:, last], s[:, np.maximum(last - 1, 0)], s[:, np.maximum(last - 2, 0)]
    total = np.where(window == 1, a, np.where(window == 2, b + a, (c + b) + a))
    slope = np.where(back > 0, (s[:, last] - s[:, last - back]) / np.maximum(back, 1) * 10.0, 0.0)
    out[:, 1:, 0] = 1.0
    out[:, 1:, 1] = s
    out[:, 1:, 2] = np.maximum.accumulate(s, axis=1)
    out[:, 1:, 3] = s[:, :1]
    out[:, 1:, 4] = total / window
    out[:, 1:, 5] = slope
    out[..., 5] /= epoch_scale(schedule_epochs)
    return out


def curve_features(prefix: Sequence[float], schedule_epochs: int | None = None) -> np.ndarray:
    """The six curve-prefix statistics of one (possibly empty) score prefix (see :func:`curve_table`)."""
    return curve_table(np.asarray(prefix, dtype=np.float64).reshape(-1), schedule_epochs)[-1]


def assemble_rows(static: np.ndarray, prefix_len: Any, target_epoch: Any, curve: np.ndarray,
                  schedule_epochs: int | None = None) -> np.ndarray:
    """Full surrogate rows ``[n, dim]``: static blocks, fidelity, curve features.

    ``static`` is ``[n, static_dim]`` (:meth:`FeatureBuilder.static_rows`),
    ``prefix_len`` / ``target_epoch`` ``[n]`` recorded epochs, ``curve``
    ``[n, N_CURVE]`` (rows of :func:`curve_table` at each ``prefix_len``). Every
    surrogate row (the optimizer's observations and queries, meta-training
    episodes, held-out evaluation) is built here.
    """
    fid = fidelity_block(prefix_len, target_epoch, schedule_epochs)
    static = np.asarray(static, dtype=np.float32).reshape(len(fid), -1)
    return np.concatenate([static, fid, np.asarray(curve, dtype=np.float32).reshape(len(fid), N_CURVE)],
                          axis=1).astype(np.float32)


def curve_rows(static: np.ndarray, scores: np.ndarray, prefix_len: Any, target_epoch: Any,
               schedule_epochs: int | None = None) -> np.ndarray:
    """Rows for curves ``scores[i]`` (``[n, E]``, NaN-padded) queried at epoch ``target_epoch[i]``
    after their first ``prefix_len[i]`` scores (static blocks ``static[i]``)."""
    prefix = np.asarray(prefix_len, dtype=np.int64).reshape(-1)
    table = curve_table(np.asarray(scores, dtype=np.float64).reshape(len(prefix), -1), schedule_epochs)
    return assemble_rows(static, prefix, target_epoch, table[np.arange(len(prefix)), prefix], schedule_epochs)


def observed_rows(static_row: np.ndarray, scores: Sequence[float],
                  schedule_epochs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One trial's observation rows and its curve-feature table.

    Row ``e - 1`` asks for epoch ``e`` after the first ``e - 1`` scores, for
    ``e = 1..len(scores)``; the table is :func:`curve_table` of ``scores``
    (its last row describes the whole curve, the prefix of the trial's next step).
    """
    table = curve_table(np.asarray(scores, dtype=np.float64).reshape(-1), schedule_epochs)
    n = len(table) - 1
    epochs = np.arange(1, n + 1)
    static = np.broadcast_to(np.asarray(static_row, dtype=np.float32), (n, len(static_row)))
    return assemble_rows(static, epochs - 1, epochs, table[:n], schedule_epochs), table


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
        schedule_epochs: int | None = None,
    ) -> np.ndarray:
        """Config + model + dataset blocks for each config (``[n, static_dim]``).

        ``schedule_epochs``: the configs' schedule length; their epoch-valued fields are
        encoded as epochs of the meta-dataset's schedule (``None``: already are).
        """
        enc = self.encoder.encode_many(configs, epoch_scale(schedule_epochs))
        cache: dict[str, np.ndarray] = {}
        mrows = []
        for c in configs:
            if c.model not in cache:
                cache[c.model] = self.model_block(c.model, descriptors.get(c.model))
            mrows.append(cache[c.model])
        mb = np.stack(mrows) if mrows else np.zeros((0, self.model_dim), dtype=np.float32)
        meta_b = np.repeat(self.meta_block(meta)[None, :], len(configs), axis=0)
        return np.concatenate([enc, mb, meta_b], axis=1).astype(np.float32)

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
