"""``hubtune metadata generate``: real finetuning runs recorded as a meta-dataset; resume,
failures, Ray workers, and ``hubtune metatrain`` on the result (alone, mixed, continued)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hubtune.cli import app
from hubtune.metadata import load_metadata
from hubtune.metagen.design import DesignError, design_configs
from hubtune.metagen.generate import (
    GenerateError,
    GenerateSettings,
    MetadataGenerator,
    parse_datasets,
    read_outcomes,
)
from hubtune.space import Config, SearchSpace
from hubtune.surrogate.model import Surrogate
from tests.helpers.paths import FIXTURES, SRC
from tests.helpers.run import make_folder

MODELS = "test_resnet,test_efficientnet"
FIXTURE = FIXTURES / "metadata" / "qtt"
# Co-Tuning needs a pretrained ImageNet head: with --no-pretrained this config fails for real.
FAILING = {"model": "test_resnet", "cotuning_reg": 1.0, "batch_size": 8}


def gen_args(folder: Path, out: Path, *extra: str, configs: int = 3) -> list[str]:
    return ["metadata", "generate", "--datasets", f"{folder},{folder}@1", "--hub", "test",
            "--models", MODELS, "--configs", str(configs), "--max-epochs", "2", "--image-size", "32",
            "--no-pretrained", "--add-configs", str(folder.parent / "extra.json"),
            "--space", str(folder.parent / "space.json"), "--out", str(out),
            *extra]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gen")
    (root / "extra.json").write_text(json.dumps([FAILING]))
    # small batches: a few dozen images give several optimizer steps per epoch
    (root / "space.json").write_text(json.dumps({"fixed": {"batch_size": 8}}))
    return make_folder(root / "colours", per_class=30)


@pytest.fixture(scope="module")
def generated(folder, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("meta") / "out"
    res = CliRunner().invoke(app, gen_args(folder, out))
    assert res.exit_code == 0, res.output
    return out, res.output


# ------------------------------------------------------------------ design
def test_design_has_portfolio_first_then_distinct_sobol_points_stable_under_extension():
    space = SearchSpace(["mobilenetv2_100", "tf_efficientnet_lite0", "tf_efficientnet_lite1"])
    short, long = design_configs(space, 7, seed=3), design_configs(space, 12, seed=3)
    assert [o for o, _ in short] == ["portfolio"] * 3 + ["sobol"] * 4
    assert [c.model for _, c in short[:3]] == space.models
    assert short[0][1] == space.default_config("mobilenetv2_100")
    assert [c for _, c in long[:7]] == [c for _, c in short]
    assert len({c.effective_key() for _, c in long}) == 12
    assert all(space.contains(c) for _, c in long)
    assert design_configs(space, 7, seed=4)[3:] != short[3:]
    # the 8 Sobol points of a 4-point-per-model design cover every model equally
    models = [c.model for _, c in design_configs(space, 11, seed=0, portfolio=False)[:8]]
    assert set(models) == set(space.models)


def test_design_rejects_more_configs_than_the_space_holds():
    fixed = {k: v for k, v in Config(model="m").to_dict().items()
             if k != "model" and (v is not None or k in ("clip_grad", "layer_decay"))}
    space = SearchSpace(["a", "b"], fixed=fixed)
    assert len(design_configs(space, 2)) == 2
    with pytest.raises(DesignError, match="only 2 distinct"):
        design_configs(space, 3)


def test_parse_datasets_names_subsets_and_seeds(tmp_path):
    specs = parse_datasets("fashion-mnist:600,animal-mnist@2,digits", seed=0, subset=300)
    assert [s.name for s in specs] == ["fashion-mnist-600", "animal-mnist-300-seed2", "digits-300"]
    assert [(s.subset, s.data_seed) for s in specs] == [(600, 0), (300, 2), (300, 0)]
    with pytest.raises(GenerateError, match="given twice"):
        parse_datasets("digits,digits")
    with pytest.raises(GenerateError, match="neither a built-in"):
        parse_datasets(str(tmp_path / "nope"))


# ------------------------------------------------------------------ generate
def test_generate_writes_a_loadable_metadataset_of_real_runs(generated, folder):
    out, output = generated
    meta = load_metadata(out)
    assert meta.datasets == ["colours", "colours-seed1"]
    assert meta.max_epochs == 2
    for name in meta.datasets:
        runs = meta[name]
        assert sorted(c.model for c in runs.configs) == ["test_efficientnet", "test_resnet"]
        assert (runs.lengths == 2).all()
        assert np.isfinite(runs.scores).all() and ((runs.scores >= 0) & (runs.scores <= 1)).all()
        assert (runs.seconds > 0).all()
        assert runs.meta_features.n_classes == 3 and runs.meta_features.n_images > 0
        assert runs.schedule_epochs == 2  # the runs' schedules spanned --max-epochs
    # the two splits of one folder are different datasets: their curves differ
    assert not np.array_equal(meta["colours"].scores, meta["colours-seed1"].scores)
    assert meta["colours"].best > 0.5  # learnable: above chance (1/3)
    # what was stored is what the trainer recorded
    res = json.loads(next((out / "runs" / "colours").glob("000-*/result.json")).read_text())
    row = meta["colours"].run_ids.index(res["run_id"])
    assert [r["score"] for r in res["records"]] == list(meta["colours"].scores[row])
    assert Config.from_dict(res["config"]) == meta["colours"].configs[row]
    # finished runs keep their records but not their checkpoints
    assert not list((out / "runs").glob("*/*/tensors-*.safetensors"))
    assert len(list((out / "runs").glob("*/*/records.jsonl"))) == 4
    assert "colours-seed1" in output and "planned" in output


def test_a_failing_config_is_recorded_with_its_reason(generated):
    out, output = generated
    meta = load_metadata(out)
    assert len(meta.unmapped) == 2
    assert {u.dataset for u in meta.unmapped} == {"colours", "colours-seed1"}
    assert all("failed" in u.reason and "cotuning_reg=1.0 needs a pretrained" in u.reason for u in meta.unmapped)
    summary = json.loads((out / "summary.json").read_text())
    assert [f["status"] for f in summary["failures"]] == ["failed", "failed"]
    assert all(f["epochs"] == 0 and "needs a pretrained ImageNet" in f["reason"] for f in summary["failures"])
    assert [r["failed"] for r in summary["per_dataset"]] == [1, 1]
    assert "2 x failed:" in output and "needs a pretrained ImageNet" in output


def test_resume_skips_finished_runs_and_grows_the_design(generated, folder, tmp_path):
    out, _ = generated
    before = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/result.json")}
    res = CliRunner().invoke(app, gen_args(folder, out))
    assert res.exit_code == 0, res.output
    assert "6 already recorded, 0 to run" in res.output
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/result.json")} == before
    # a longer design keeps the recorded runs and adds only the new ones
    res = CliRunner().invoke(app, gen_args(folder, out, configs=4))
    assert res.exit_code == 0, res.output
    assert "8 runs planned" in res.output and "6 already recorded, 2 to run" in res.output
    assert {p: p.stat().st_mtime_ns for p in before} == before
    meta = load_metadata(out)
    assert [len(meta[d]) for d in meta.datasets] == [3, 3]
    # --retry-failed redoes exactly the failed ones (they fail again, for the same reason)
    res = CliRunner().invoke(app, gen_args(folder, out, "--retry-failed", configs=4))
    assert res.exit_code == 0, res.output
    assert "6 already recorded, 2 to run" in res.output and "needs a pretrained ImageNet" in res.output


def test_an_interrupted_run_continues_from_its_checkpoint(folder, tmp_path):
    from hubtune.finetune import advance
    from hubtune.metagen.generate import _load_data

    settings = GenerateSettings(models=MODELS.split(","), max_epochs=3, image_size=32, pretrained=False)
    specs = parse_datasets(str(folder))
    gen = MetadataGenerator(settings, tmp_path / "out")
    task = gen.plan(specs, 2)[0]
    # an earlier attempt trained epoch 1, checkpointed, then died before recording the run
    workdir = tmp_path / "out" / "runs" / task.dataset.name / task.run_id
    first = advance(task.config, 1, data=_load_data(task.dataset, 32, None), workdir=workdir,
                    max_epochs=3, seed=0, num_threads=1, pretrained=False).records
    summary = gen.run(specs, 2)
    assert summary.finished == 2 and not summary.failures
    outcome = next(o for o in read_outcomes(tmp_path / "out") if o.task.run_id == task.run_id)
    assert [r.epoch for r in outcome.records] == [1, 2, 3]
    # epoch 1 was not trained again: its measured seconds are those of the first attempt
    got = outcome.records[0]
    assert (got.score, got.train_seconds, got.eval_seconds) == (
        first[0].score, first[0].train_seconds, first[0].eval_seconds)


def test_a_second_driver_on_the_same_folder_is_refused(generated, folder):
    from hubtune.metagen.generate import LOCK_FILE, _exclusive

    out, _ = generated
    with _exclusive(out / LOCK_FILE):  # as if another generate were running
        res = CliRunner().invoke(app, gen_args(folder, out))
    assert res.exit_code == 2
    assert f"(pid {os.getpid()}) is writing into {out}" in res.output
    res = CliRunner().invoke(app, gen_args(folder, out))  # released again
    assert res.exit_code == 0, res.output


def test_changed_settings_refuse_to_resume(generated, folder):
    out, _ = generated
    args = gen_args(folder, out)
    args[args.index("--max-epochs") + 1] = "3"
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2
    assert "other settings" in res.output and "max_epochs: 2 (stored) vs 3 (now)" in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("--datasets", "no-such-dataset"), "neither a built-in dataset"),
        (("--models", "resnet9000"), "resnet9000"),
        (("--workers", "0"), "workers must be a positive integer"),
        (("--configs", "0"), "positive integer"),
    ],
)
def test_bad_input_is_a_one_line_error(folder, tmp_path, change, message):
    args = gen_args(folder, tmp_path / "o")
    if change[0] in args:
        args[args.index(change[0]) + 1] = change[1]
    else:
        args += list(change)
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and message in res.output and "Traceback" not in res.output


@pytest.mark.skipif(os.environ.get("HUBTUNE_RAY_TESTS") != "1",
                    reason="starts a local Ray instance (about 30-60 s on 2 busy cores); "
                    "set HUBTUNE_RAY_TESTS=1 to run it")
def test_ray_workers_produce_the_same_runs(folder, tmp_path, generated):
    pytest.importorskip("ray", reason="Ray is not installed (pip install ray): the --workers > 1 path needs it")
    out = tmp_path / "ray"
    res = CliRunner().invoke(app, gen_args(folder, out, "--workers", "2"))
    assert res.exit_code == 0, res.output
    assert "6 to run on 2 worker(s)" in res.output
    ray_meta, inline_meta = load_metadata(out), load_metadata(generated[0])
    assert ray_meta.datasets == inline_meta.datasets
    for name in ray_meta.datasets:
        # same design, same seeds: same scores whichever process trained them
        a, b = ray_meta[name], inline_meta[name]
        order = [b.run_ids.index(r) for r in a.run_ids if r in b.run_ids]
        np.testing.assert_allclose(a.scores, b.scores[order])
    assert len(ray_meta.unmapped) == 2


# ------------------------------------------------------------------ metatrain
def test_metatrain_accepts_the_output_alone_mixed_and_continued(generated, tmp_path):
    out, _ = generated
    runner = CliRunner()
    res = runner.invoke(app, ["metatrain", "--metadata", str(out), "--out", str(tmp_path / "a"),
                              "--steps", "5"])
    assert res.exit_code == 0, res.output
    assert set(Surrogate.load(tmp_path / "a").record["datasets"]) == {"colours", "colours-seed1"}

    res = runner.invoke(app, ["metatrain", "--metadata", str(out), "--metadata", str(FIXTURE),
                              "--out", str(tmp_path / "b"), "--steps", "5"])
    assert res.exit_code == 0, res.output
    mixed = Surrogate.load(tmp_path / "b")
    assert set(mixed.record["datasets"]) == {"colours", "colours-seed1", "qtt-0", "qtt-1"}
    assert "test_resnet" in mixed.record["models"] and "mobilevit_xs" in mixed.record["models"]

    res = runner.invoke(app, ["metatrain", "--metadata", str(out), "--metadata", str(FIXTURE),
                              "--out", str(tmp_path / "c"), "--init-surrogate", "shipped",
                              "--steps", "10", "--cost-datasets", "colours,colours-seed1"])
    assert res.exit_code == 0, res.output
    cont = Surrogate.load(tmp_path / "c")
    shipped = Surrogate.load(SRC / "assets" / "surrogate")
    assert cont.record["continued_from"]["datasets"] == shipped.record["datasets"]
    assert cont.features.to_dict() == shipped.features.to_dict()  # scalers kept
    assert cont.record["history"][0]["step"] == 0  # the starting point competes in model selection
    assert cont.record["cost_datasets"] == ["colours", "colours-seed1"]
    # the cost model was refit on the generated runs' CPU seconds, not kept from the shipped one
    assert cont.cost.to_dict() != shipped.cost.to_dict()
    assert "--init-surrogate shipped" in cont.record["command"]


def test_metatrain_rejects_a_dataset_name_clash_and_a_bad_init(generated, tmp_path):
    out, _ = generated
    res = CliRunner().invoke(app, ["metatrain", "--metadata", str(out), "--metadata", str(out),
                                   "--out", str(tmp_path / "x"), "--steps", "2"])
    assert res.exit_code == 2 and "cannot combine" in res.output
    res = CliRunner().invoke(app, ["metatrain", "--metadata", str(out), "--out", str(tmp_path / "y"),
                                   "--init-surrogate", str(tmp_path / "none")])
    assert res.exit_code == 2 and "--init-surrogate" in res.output and "Traceback" not in res.output


def test_records_come_from_the_checkpoint_not_a_duplicated_records_file(generated, tmp_path):
    from hubtune.core.records import EpochRecord
    from hubtune.metagen.generate import _committed_records

    rec = [EpochRecord.from_dict(r) for r in json.loads(
        next(generated[0].glob("runs/colours/000-*/result.json")).read_text())["records"]]
    # a driver killed between training an epoch and committing it can leave an epoch twice
    lines = [rec[0], rec[1], rec[1]]
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in lines))
    assert [r.epoch for r in _committed_records(tmp_path)] == [1, 2]


def test_metatrain_reads_generated_epochs_as_the_optimizer_presents_them(generated):
    """A run generated with --max-epochs E has its epochs presented to meta-training as
    fractions of a 50-epoch schedule, exactly as Quick-Tune presents hubtune run's epochs
    (schedule_epochs=E): the last epoch is the end of the schedule in both."""
    from hubtune.surrogate.cache import load_default_surrogate
    from hubtune.surrogate.features import FeatureBuilder, fidelity_features
    from hubtune.surrogate.metatrain import MetaTrainSettings, _episode, _prepare

    out, _ = generated
    runs = load_metadata(out)["colours"]
    sur = load_default_surrogate()
    prep = _prepare("colours", runs, FeatureBuilder.from_dict(sur.features.to_dict()),
                    {"test_resnet": None, "test_efficientnet": None})
    assert prep.epoch_scale == pytest.approx(25.0)  # 50 / 2
    x, _ = _episode(np.random.default_rng(0), prep, MetaTrainSettings(runs_per_episode=8,
                                                                      pairs_per_run=16))
    dim = prep.static.shape[1]
    allowed = {tuple(np.round(fidelity_features(p, t, schedule_epochs=2), 5)) for t in (1, 2) for p in range(t)}
    seen = {tuple(np.round(row, 5)) for row in x[:, dim:dim + 4].numpy()}
    assert seen <= allowed and len(seen) >= 2
