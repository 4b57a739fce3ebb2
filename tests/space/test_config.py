"""The typed Config schema and the search space."""

import json

import pytest

from hubtune.space import V6_CHOICES, Config, ConfigError, SearchSpace, hyperparameter_names


def test_json_round_trip_of_sampled_configs():
    space = SearchSpace(["mobilenetv2_100", "efficientnet_lite0"])
    for cfg in space.sample(200, seed=3):
        assert Config.from_json(cfg.to_json()) == cfg
        assert space.contains(cfg)


def test_sampling_covers_every_hyperparameter_value():
    space = SearchSpace(["a", "b"], max_batch_size=512)
    cfgs = space.sample(3000, seed=0)
    for name, values in V6_CHOICES.items():
        seen = {getattr(c, name) for c in cfgs}
        for v in values:
            assert v in seen, (name, v)


def test_conditionals_are_none_when_inactive_and_filled_when_active():
    cfg = Config(model="m", opt="sgd")
    assert cfg.opt_betas is None and cfg.momentum is None
    assert Config(model="m", opt="momentum").momentum == 0.9
    assert Config(model="m", opt="adam").opt_betas == (0.9, 0.999)
    with pytest.raises(ConfigError, match="momentum"):
        Config(model="m", opt="adam", momentum=0.9)
    # replace() drops conditionals that became inactive
    assert Config(model="m", opt="momentum", momentum=0.8).replace(opt="sgd").momentum is None


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"lr": -1.0}, "lr"),
        ({"pct_to_freeze": 1.5}, "pct_to_freeze"),
        ({"opt": "rmsprop"}, "opt"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 3.5}, "batch_size"),
        ({"model": ""}, "model"),
        ({"clip_grad": 0.0}, "clip_grad"),
    ],
)
def test_invalid_configs_name_the_problem(changes, needle):
    data = Config(model="m").to_dict()
    data.update(changes)
    with pytest.raises(ConfigError, match=needle):
        Config.from_dict(data)


def test_unknown_keys_and_bad_json_are_rejected():
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        Config.from_dict({"model": "m", "learning_rate": 0.1})
    with pytest.raises(ConfigError, match="not valid JSON"):
        Config.from_json("{model:")
    with pytest.raises(ConfigError, match="name a model"):
        Config.from_dict({"lr": 0.1})


def test_restricted_space_respects_fixed_values_and_choices(tmp_path):
    space = SearchSpace(["m1", "m2"], fixed={"opt": "sgd"}, choices={"lr": [1e-3, 1e-2]})
    cfgs = space.sample(100, seed=1)
    assert {c.opt for c in cfgs} == {"sgd"}
    assert {c.lr for c in cfgs} <= {1e-3, 1e-2}
    assert all(c.opt_betas is None and c.momentum is None for c in cfgs)
    f = tmp_path / "space.json"
    f.write_text(json.dumps(space.to_dict()))
    again = SearchSpace.from_file(f)
    assert again.sample(20, seed=5) == space.sample(20, seed=5)


def test_space_rejects_unknown_names():
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        SearchSpace(["m"], fixed={"learning_rate": 0.1})
    with pytest.raises(ConfigError, match="at least one model"):
        SearchSpace([])


def test_schema_lists_every_field():
    names = hyperparameter_names()
    assert names[0] == "model"
    assert set(V6_CHOICES) <= set(names)


def test_effective_key_merges_no_op_variants_only():
    base = Config(model="m", warmup_epochs=0)
    assert base.replace(warmup_lr=1e-5).effective_key() == base.effective_key()
    assert base.replace(warmup_lr=1e-5).key() != base.key()
    warm = Config(model="m", warmup_epochs=5)
    assert warm.replace(warmup_lr=1e-5).effective_key() != warm.effective_key()
    no_mix = Config(model="m", mixup=0.4, mixup_prob=0.0)
    assert no_mix.effective_key() == Config(model="m").effective_key()
    assert Config(model="m", mixup=0.4, mixup_prob=0.5).effective_key() != Config(model="m").effective_key()
    assert base.replace(lr=1e-2).effective_key() != base.effective_key()
