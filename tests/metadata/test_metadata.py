"""Meta-dataset layer: the Quick-Tune compact loader on the real shared table, MetaDataset, own format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hubtune.core.metafeatures import DatasetMetaFeatures
from hubtune.core.records import EpochRecord
from hubtune.metadata import (
    DatasetRuns,
    MetadataError,
    MetaDataset,
    UnmappedRun,
    load_metadata,
    save_metadata,
)
from hubtune.space.config import Config
from tests.helpers.paths import SHARED

EXTENDED = SHARED / "metadata" / "quicktune-extended"

needs_shared = pytest.mark.skipif(
    not (EXTENDED / "table.csv").is_file(), reason=f"shared meta-dataset not found at {EXTENDED}"
)


@pytest.fixture(scope="module")
def extended() -> MetaDataset:
    return load_metadata(EXTENDED)


def _runs(name: str, n: int, width: int = 4, seed: int = 0) -> DatasetRuns:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, width + 1, size=n)
    scores = [sorted(rng.uniform(0, 1, size=k)) for k in lengths]
    seconds = [rng.uniform(1, 5, size=k) for k in lengths]
    configs = [Config(model=f"m{i % 3}", lr=1e-3 * (i + 1)) for i in range(n)]
    return DatasetRuns.from_curves(
        name, [f"{name}-{i}" for i in range(n)], configs, scores, seconds,
        DatasetMetaFeatures(100 + n, 10, 64.0, 3), max_epochs=width,
    )


# ----------------------------------------------------------------- real table
@needs_shared
def test_extended_loads_every_run(extended: MetaDataset) -> None:
    # (How fast it loads is a benchmark figure, not a timed test.)
    again = load_metadata(EXTENDED)
    assert again.n_runs == 3592
    assert len(extended.datasets) == 20 and extended.datasets == sorted(extended.datasets)
    assert extended.unmapped == []  # every row of the shared table maps into a Config
    assert extended.max_epochs == 50
    assert len(extended.models()) == 24
    perf = json.loads((EXTENDED / "curves" / "perf.json").read_text())
    for name in extended.datasets:
        runs = extended[name]
        assert runs.scores.shape == runs.seconds.shape == (len(runs), 50)
        assert len(runs) == len(perf[name])
        assert runs.meta_features is not None and runs.meta_features.mean_resolution == 128.0


@needs_shared
def test_extended_curves_are_fractions_and_match_files(extended: MetaDataset) -> None:
    perf = json.loads((EXTENDED / "curves" / "perf.json").read_text())
    cost = json.loads((EXTENDED / "curves" / "cost.json").read_text())
    runs = extended["BTS"]
    i = runs.index("16953893331647455")
    assert runs.lengths[i] == 8
    np.testing.assert_allclose(runs.curve(i), np.array(perf["BTS"]["16953893331647455"]) / 100)
    np.testing.assert_allclose(runs.cost(i), cost["BTS"]["16953893331647455"])
    assert np.isnan(runs.scores[i, 8:]).all() and np.isnan(runs.seconds[i, 8:]).all()
    for name in extended.datasets:
        r = extended[name]
        assert 0.0 <= r.worst <= r.best <= 1.0
        assert r.best == pytest.approx(min(1.0, max(max(c) for c in perf[name].values()) / 100))
        assert r.worst == pytest.approx(min(min(c) for c in perf[name].values()) / 100)
    descriptors = json.loads((EXTENDED / "meta" / "descriptors.json").read_text())
    assert extended["APL"].meta_features == DatasetMetaFeatures(*descriptors["APL"])


@needs_shared
def test_extended_rows_map_field_by_field(extended: MetaDataset) -> None:
    bts = extended["BTS"]
    # adamw + step + random_augment: betas, decay, RandAugment kept; momentum/patience dropped.
    c = bts.configs[bts.index("3943703261081846")]
    assert c.model == "mobilevit_xs" and c.opt == "adamw" and c.opt_betas == (0.9, 0.999)
    assert c.sched == "step" and c.decay_rate == 0.1 and c.decay_epochs == 10
    assert c.patience_epochs is None and c.momentum is None
    assert c.data_augmentation == "random_augment" and (c.ra_num_ops, c.ra_magnitude) == (2, 9)
    assert c.auto_augment is None
    assert c.batch_size == 4 and isinstance(c.batch_size, int)
    assert c.clip_grad is None and c.layer_decay is None
    assert c.amp is False and c.linear_probing is False and c.stoch_norm is False
    assert (c.lr, c.weight_decay, c.pct_to_freeze, c.cotuning_reg) == (0.01, 0.001, 1.0, 1.0)
    assert (c.mixup, c.cutmix, c.mixup_prob, c.smoothing) == (0.2, 2.0, 0.75, 0.1)
    assert (c.warmup_epochs, c.warmup_lr, c.sp_reg, c.delta_reg, c.bss_reg) == (10, 1e-05, 0.001, 0.001, 0.01)
    # adamp + multistep, no augmentation, clipping on.
    c = bts.configs[bts.index("22448212849937845")]
    assert c.opt == "adamp" and c.sched == "multistep" and c.decay_rate == 0.5 and c.decay_epochs == 10
    assert c.data_augmentation == "none" and c.ra_num_ops is None and c.ra_magnitude is None
    assert c.clip_grad == 10.0 and c.amp is True and c.stoch_norm is True and c.drop == 0.2
    # momentum + cosine + trivial augment: betas None, decay values (90 = script default) dropped.
    c = bts.configs[bts.index("16953893331647455")]
    assert c.model == "swinv2_base_window12to24_192to384_22kft1k"
    assert c.opt == "momentum" and c.momentum == 0.9 and c.opt_betas is None
    assert c.sched == "cosine" and c.decay_epochs is None and c.decay_rate is None
    assert c.data_augmentation == "trivial_augment" and c.mixup == 4.0 and c.pct_to_freeze == 0.8


@needs_shared
def test_extended_wider_space_values_are_valid_configs(extended: MetaDataset) -> None:
    configs = [c for n in extended.datasets for c in extended[n].configs]
    assert max(c.batch_size for c in configs) == 512
    assert {c.ra_magnitude for c in configs if c.ra_magnitude is not None} == {9, 17}
    assert any(c.linear_probing for c in configs) and any(c.cotuning_reg > 0 for c in configs)
    assert {c.auto_augment for c in configs if c.data_augmentation == "auto_augment"} == {"v0", "original"}
    # inactive conditionals are None, so equal training setups compare equal
    for c in configs:
        assert (c.momentum is not None) == (c.opt == "momentum")
        assert (c.patience_epochs is not None) == (c.sched == "plateau")


@needs_shared
def test_leave_one_out_slicing(extended: MetaDataset) -> None:
    train = extended.without(["APL"])
    assert "APL" not in train and len(train) == 19 and "APL" in extended
    assert train["AWA"] is extended["AWA"]  # O(1), shared
    assert extended.only(["APL", "DOG"]).datasets == ["APL", "DOG"]
    with pytest.raises(MetadataError, match="NOPE"):
        extended.without(["NOPE"])
    with pytest.raises(KeyError, match="not in this meta-dataset"):
        extended["NOPE"]


@needs_shared
def test_extended_round_trips_through_own_format(extended: MetaDataset, tmp_path: Path) -> None:
    save_metadata(extended, tmp_path / "m")
    back = load_metadata(tmp_path / "m")
    assert back.datasets == extended.datasets and back.max_epochs == 50
    for name in extended.datasets:
        a, b = extended[name], back[name]
        assert a.run_ids == b.run_ids and a.configs == b.configs
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.seconds, b.seconds)
        np.testing.assert_array_equal(a.lengths, b.lengths)
        assert a.meta_features == b.meta_features and a.best == b.best


# --------------------------------------------------------------- DatasetRuns
def test_dataset_runs_subset_and_best_worst() -> None:
    runs = _runs("toy", 6)
    assert runs.best == np.nanmax(runs.scores) and runs.worst == np.nanmin(runs.scores)
    sub = runs.subset([4, 1])
    assert sub.run_ids == ["toy-4", "toy-1"] and sub.configs == [runs.configs[4], runs.configs[1]]
    np.testing.assert_array_equal(sub.lengths, runs.lengths[[4, 1]])
    assert sub.best == np.nanmax(runs.scores[[4, 1]])
    assert len(runs.subset(runs.lengths >= 2)) == int((runs.lengths >= 2).sum())
    assert runs.subset(slice(0, 2)).run_ids == ["toy-0", "toy-1"]
    with pytest.raises(ValueError):
        runs.scores[0, 0] = 0.5  # shared arrays are read-only


def test_dataset_runs_rejects_inconsistent_arrays() -> None:
    cfg = [Config(model="m")]
    with pytest.raises(MetadataError, match="fractions"):
        DatasetRuns.from_curves("d", ["a"], cfg, [[55.0]], [[1.0]])
    with pytest.raises(MetadataError, match="NaN after"):
        DatasetRuns("d", ["a"], cfg, [[0.5, 0.6]], [[1.0, 1.0]], [1])
    with pytest.raises(MetadataError, match="duplicate"):
        DatasetRuns.from_curves("d", ["a", "a"], cfg * 2, [[0.5], [0.5]], [[1.0], [1.0]])


# --------------------------------------------------------------- MetaDataset
def test_append_trainer_records() -> None:
    meta = MetaDataset([_runs("a", 3)])
    cfg = Config(model="resnet18", opt="sgd")
    recs = [EpochRecord(e, 0.2 * e, train_seconds=10.0, eval_seconds=2.0, checkpoint_seconds=5.0) for e in (1, 2, 3)]
    mf = DatasetMetaFeatures(50, 5, 32.0, 3)
    meta.append("new", "r1", cfg, recs, mf)
    assert meta.datasets == ["a", "new"] and meta["new"].meta_features == mf
    np.testing.assert_allclose(meta["new"].curve(0), [0.2, 0.4, 0.6])
    np.testing.assert_allclose(meta["new"].cost(0), [12.0, 12.0, 12.0])
    long = [EpochRecord(e, 0.5, train_seconds=1.0) for e in range(1, 7)]
    meta.append("a", "r2", cfg, long)  # longer than the width: every dataset widens
    assert meta.max_epochs == 6 and meta["new"].scores.shape == (1, 6) and len(meta["a"]) == 4
    assert meta["a"].configs[-1] == cfg
    with pytest.raises(MetadataError, match="already recorded"):
        meta.append("a", "r2", cfg, long)
    with pytest.raises(MetadataError, match="epochs 1..2"):
        meta.append("a", "r3", cfg, [EpochRecord(2, 0.5), EpochRecord(1, 0.4)])
    with pytest.raises(MetadataError, match="meta-features"):
        meta.append("new", "r4", cfg, recs, DatasetMetaFeatures(51, 5, 32.0, 3))


def test_merge_and_clash() -> None:
    x = MetaDataset([_runs("a", 2, width=3)], [UnmappedRun("a", "z", "bad")])
    y = MetaDataset([_runs("b", 3, width=5)])
    both = MetaDataset.merge(x, y)
    assert both.datasets == ["a", "b"] and both.max_epochs == 5 and both.n_runs == 5
    assert both["a"].scores.shape == (2, 5) and both.unmapped == x.unmapped
    np.testing.assert_array_equal(both["a"].scores[:, :3], x["a"].scores)
    with pytest.raises(MetadataError, match="'a' is in part 0 and part 1"):
        MetaDataset.merge(x, MetaDataset([_runs("a", 1)]))


def test_own_format_round_trip_with_missing_meta_features_and_unmapped(tmp_path: Path) -> None:
    plain = _runs("c", 2)
    no_mf = DatasetRuns(plain.dataset, plain.run_ids, plain.configs, plain.scores, plain.seconds, plain.lengths)
    meta = MetaDataset([_runs("a", 4), no_mf], [UnmappedRun("a", "x", "invalid configuration: lr")])
    save_metadata(meta, tmp_path)
    back = load_metadata(tmp_path)
    assert back.unmapped == meta.unmapped and back["c"].meta_features is None
    assert back["a"].configs == meta["a"].configs
    np.testing.assert_array_equal(back["a"].scores, meta["a"].scores)


def test_schedule_epochs_are_kept_by_append_subset_and_own_format(tmp_path: Path) -> None:
    cfg = Config(model="resnet18")
    recs = [EpochRecord(e, 0.2 * e, train_seconds=1.0) for e in (1, 2, 3)]
    meta = MetaDataset()
    meta.append("gen", "r1", cfg, recs, schedule_epochs=8)
    meta.append("gen", "r2", cfg.replace(lr=1e-4), recs[:2], schedule_epochs=8)
    meta.append("table", "t1", cfg, recs)
    assert meta["gen"].schedule_epochs == 8 and meta["table"].schedule_epochs is None
    assert meta["gen"].subset([1]).schedule_epochs == 8
    save_metadata(meta, tmp_path)
    back = load_metadata(tmp_path)
    assert back["gen"].schedule_epochs == 8 and back["table"].schedule_epochs is None
    with pytest.raises(MetadataError, match="schedule epochs"):
        meta.append("gen", "r3", cfg.replace(lr=1e-2), recs, schedule_epochs=4)
    with pytest.raises(MetadataError, match="schedule_epochs must be a positive integer"):
        DatasetRuns.from_curves("x", ["a"], [cfg], [[0.5]], [[1.0]], schedule_epochs=0)


def test_load_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match="no such file"):
        load_metadata(tmp_path / "missing")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(MetadataError, match="unknown meta-dataset layout"):
        load_metadata(tmp_path)
    bad = tmp_path / "bad"
    (bad / "curves").mkdir(parents=True)
    (bad / "table.csv").write_text(",amp,cat:model:m\n1,0,1\n")
    (bad / "curves" / "perf.json").write_text("{not json")
    with pytest.raises(MetadataError, match=r"perf\.json: not valid JSON"):
        load_metadata(bad)
    (bad / "curves" / "perf.json").write_text('{"d": {"1": [50.0]}}')
    with pytest.raises(MetadataError, match=r"cost\.json: file not found"):
        load_metadata(bad)
    (tmp_path / "n").mkdir()
    (tmp_path / "n" / "metadata.json").write_text('{"format": "hubtune-metadata", "version": 1}')
    with pytest.raises(MetadataError, match="arrays.safetensors"):
        load_metadata(tmp_path / "n")


def test_compact_unmappable_rows_are_reported(tmp_path: Path) -> None:
    (tmp_path / "curves").mkdir()
    (tmp_path / "table.csv").write_text(
        ",lr,cat:model:m,cat:opt:sgd,cat:opt:lamb\n"
        "r1,0.01,1,1,0\n"  # fine
        "r2,0.01,1,0,1\n"  # unknown optimizer
        "r3,0.01,1,1,1\n"  # two optimizers set
        "r4,0.01,1,1,0\n"  # no curve
    )
    (tmp_path / "curves" / "perf.json").write_text(
        json.dumps({"info": {"x": 1}, "d": {"r1": [10.0, 20.0], "r2": [5.0], "r3": [5.0], "r5": [1.0]}})
    )
    (tmp_path / "curves" / "cost.json").write_text(
        json.dumps({"d": {"r1": [1.0, 2.0], "r2": [1.0], "r3": [1.0], "r5": [1.0]}})
    )
    meta = load_metadata(tmp_path)
    assert meta["d"].run_ids == ["r1"] and meta["d"].meta_features is None
    reasons = {u.run_id: u.reason for u in meta.unmapped}
    assert set(reasons) == {"r2", "r3", "r4", "r5"}
    assert "opt" in reasons["r2"] and "2 one-hot columns of 'opt'" in reasons["r3"]
    assert "without a curve" in reasons["r4"] and "no row in table.csv" in reasons["r5"]
