"""Epoch-valued hyperparameters follow the run's schedule length, in the sampler and the encoder.

The meta-dataset's grid counts warm-up, step-decay and plateau-patience epochs of a
50-epoch schedule. Unscaled, an 8-epoch run samples a 10-epoch warm-up whose
learning rate is still rising when the run ends (two real runs of this issue's
work scored 13% and 20% on 10- and 20-class tasks with such a config, predicted
56% by the surrogate). The sampler scales the grid to the schedule; the encoder
presents the scaled counts to the surrogate as the reference epochs they stand for.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from hubtune.cli import app
from hubtune.finetune.schedule import LRSchedule
from hubtune.space.config import Config
from hubtune.space.encoding import ConfigEncoder
from hubtune.space.searchspace import EPOCH_VALUED, SearchSpace, scale_epoch_choices
from hubtune.surrogate.features import epoch_scale


def test_the_grid_scales_to_the_schedule_and_never_exceeds_it():
    assert scale_epoch_choices([0, 5, 10], 8) == [0, 1, 2]
    assert scale_epoch_choices([10, 20], 8) == [2, 3]
    assert scale_epoch_choices([2, 5], 8) == [1]
    assert scale_epoch_choices([0, 5, 10], 50) == [0, 5, 10]
    assert scale_epoch_choices([0, 5, 10], 100) == [0, 10, 20]
    for s in range(1, 60):
        for name in EPOCH_VALUED:
            scaled = scale_epoch_choices(SearchSpace(["m"]).choices[name], s)
            assert all(0 <= v <= max(s, 1) for v in scaled), (name, s, scaled)


def test_a_short_runs_space_samples_only_scaled_epoch_counts():
    sp = SearchSpace(["m"], schedule_epochs=8)
    assert sp.choices["warmup_epochs"] == [0, 1, 2]
    cfgs = sp.sample(300, seed=1)
    assert {c.warmup_epochs for c in cfgs} == {0, 1, 2}
    assert {c.decay_epochs for c in cfgs if c.decay_epochs is not None} <= {2, 3}
    assert {c.patience_epochs for c in cfgs if c.patience_epochs is not None} <= {1}
    assert all(sp.contains(c) for c in cfgs)
    # unscaled (the meta-dataset's schedule), the same draw holds 10-epoch warm-ups
    assert 10 in {c.warmup_epochs for c in SearchSpace(["m"]).sample(300, seed=1)}


def test_choices_the_user_gives_are_kept_and_the_scaled_defaults_are_not_written_back():
    sp = SearchSpace.from_dict({"choices": {"warmup_epochs": [0, 5]}}, models=["m"], schedule_epochs=8)
    assert sp.choices["warmup_epochs"] == [0, 5]
    assert sp.choices["decay_epochs"] == [2, 3]
    d = sp.to_dict()
    assert d["choices"]["warmup_epochs"] == [0, 5]
    assert "decay_epochs" not in d["choices"] and "patience_epochs" not in d["choices"]
    again = SearchSpace.from_dict(d, schedule_epochs=8)
    assert again.choices == sp.choices


def test_the_encoder_presents_a_short_runs_counts_as_reference_epochs():
    enc = ConfigEncoder.default()
    s = epoch_scale(8)
    short = Config(model="m", warmup_epochs=2, warmup_lr=1e-6, sched="step", decay_epochs=3, decay_rate=0.1)
    ref = Config(model="m", warmup_epochs=10, warmup_lr=1e-6, sched="step", decay_epochs=19, decay_rate=0.1)
    a, b = enc.encode(short, s), enc.encode(ref)
    i, j = enc.names.index("warmup_epochs"), enc.names.index("decay_epochs")
    assert a[i] == pytest.approx(b[i])  # 2 of 8 = 12.5 of 50, clipped to the grid's 10
    assert a[j] == pytest.approx(enc.encode(ref.replace(decay_epochs=18), 50 / 48)[j])  # 3*6.25 = 18.75
    one = enc.encode(short.replace(warmup_epochs=1), s)[i]  # 6.25 reference epochs
    assert enc.encode(ref.replace(warmup_epochs=5))[i] < one < b[i]
    # unscaled, nothing changes: the meta-dataset's rows stay what they were
    np.testing.assert_array_equal(enc.encode(ref), enc.encode(ref, 1.0))


def test_every_sampled_warmup_of_a_short_run_ends_inside_it():
    """On 8 epochs each sampled warm-up reaches (close to) the full rate, as a 10-of-50 one does."""
    for space, epochs in ((SearchSpace(["m"], schedule_epochs=8), 8), (SearchSpace(["m"]), 50)):
        for c in space.sample(200, seed=0):
            if c.warmup_epochs and c.sched == "cosine":
                lrs = LRSchedule(c, epochs).lrs()
                assert max(lrs) >= 0.6 * c.lr, (epochs, c.warmup_epochs, max(lrs) / c.lr)
    unscaled = Config(model="m", lr=1e-3, warmup_epochs=10, warmup_lr=0.0)
    assert max(LRSchedule(unscaled, 8).lrs()) < 0.8 * unscaled.lr  # what the grid used to sample


def test_hubtune_space_shows_what_a_run_of_that_length_samples():
    res = CliRunner().invoke(app, ["space", "--models", "mobilenetv2_100", "--sample", "60",
                                   "--max-epochs", "8"])
    assert res.exit_code == 0, res.output
    warmups = {json.loads(line)["warmup_epochs"] for line in res.output.splitlines() if line.strip()}
    assert warmups <= {0, 1, 2} and warmups
