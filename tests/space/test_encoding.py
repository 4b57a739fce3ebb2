"""The Config -> vector encoder: shapes, one-hots, activity flags, scaling, spec round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hubtune.space.config import Config
from hubtune.space.encoding import ConfigEncoder, EncodingError
from hubtune.space.searchspace import SearchSpace


def _val(enc: ConfigEncoder, vec: np.ndarray, name: str) -> float:
    return float(vec[enc.names.index(name)])


def test_shape_and_range_over_sampled_configs():
    enc = ConfigEncoder.default()
    cfgs = SearchSpace(["a", "b"], max_batch_size=512).sample(200, seed=3)
    X = enc.encode_many(cfgs)
    assert X.shape == (200, enc.dim) and X.dtype == np.float32
    assert X.min() >= 0.0 and X.max() <= 1.0
    # distinct configs (ignoring the model) get distinct vectors
    keys = {c.replace(model="a").key() for c in cfgs}
    assert len({tuple(r) for r in X}) == len(keys)


def test_categorical_one_hot_and_inactive_conditionals():
    enc = ConfigEncoder.default()
    sgd = enc.encode(Config(model="m", opt="sgd", sched="cosine"))
    mom = enc.encode(Config(model="m", opt="momentum", momentum=0.95, sched="step"))
    assert _val(enc, sgd, 'opt="sgd"') == 1.0 and _val(enc, sgd, 'opt="adamw"') == 0.0
    # inactive numeric conditional: neutral value + flag 0; active: scaled value + flag 1
    assert _val(enc, sgd, "momentum") == 0.5 and _val(enc, sgd, "momentum:active") == 0.0
    assert _val(enc, mom, "momentum:active") == 1.0
    assert _val(enc, mom, "momentum") == pytest.approx(0.95 / 0.99)
    assert _val(enc, mom, "decay_rate:active") == 1.0 and _val(enc, sgd, "decay_rate:active") == 0.0
    # inactive categorical conditional: all-zero block
    assert all(_val(enc, sgd, n) == 0.0 for n in enc.names if n.startswith("opt_betas="))


def test_off_values_and_log_scaling():
    enc = ConfigEncoder.default()
    off = enc.encode(Config(model="m", clip_grad=None))
    on = enc.encode(Config(model="m", clip_grad=10.0))
    assert _val(enc, off, "clip_grad:on") == 0.0 and _val(enc, on, "clip_grad:on") == 1.0
    lrs = [enc.encode(Config(model="m", lr=lr))[enc.names.index("lr")] for lr in (1e-5, 1e-4, 1e-3, 1e-2)]
    assert lrs[0] == pytest.approx(0.0) and lrs[-1] == pytest.approx(1.0)
    # log scale: equal ratios give equal steps
    assert np.diff(lrs) == pytest.approx([1 / 3] * 3, abs=1e-6)


def test_spec_round_trip_through_json():
    enc = ConfigEncoder.default()
    again = ConfigEncoder.from_dict(json.loads(json.dumps(enc.to_dict(), sort_keys=True)))
    assert again.names == enc.names
    cfgs = SearchSpace(["a"]).sample(20, seed=1)
    assert np.array_equal(enc.encode_many(cfgs), again.encode_many(cfgs))


def test_bad_input_is_named():
    enc = ConfigEncoder.default()
    with pytest.raises(EncodingError, match="expected a Config"):
        enc.encode({"model": "m"})  # type: ignore[arg-type]
    with pytest.raises(EncodingError, match="lacks hyperparameter"):
        ConfigEncoder({"lr": [1e-3]})
    with pytest.raises(EncodingError, match="malformed"):
        ConfigEncoder.from_dict({"nope": 1})
