"""``hubtune run`` refuses options that cannot work before writing anything, and never exits 0 without a model.

Issue #14, failures 8 and 9: each case failed on the old main (exit 0 with
"exported to None", a traceback, or a ``run.json`` left in ``--out`` that
blocked the corrected command).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hubtune.cli import app
from hubtune.core.errors import RunError
from hubtune.tuner.options import check_run_options
from hubtune.tuner.outcome import chance_level, near_chance

runner = CliRunner()


def _run(out: Path, *extra: str, data: str = "digits:200", budget: str = "60"):
    args = ["run", data, "--out", str(out), "--budget", budget, "--hub", "test",
            "--models", "test_resnet", "--max-epochs", "1", "--image-size", "32",
            "--threads", "1", "--log", "plain", *extra]
    return runner.invoke(app, args)


BAD_OPTIONS = [
    (["--threads", "0"], "--threads"),
    (["--final-epochs", "-1"], "--final-epochs"),
    (["--image-size", "1"], "--image-size"),
    (["--subset", "1"], "--subset"),
    (["--max-epochs", "0"], "--max-epochs"),
    (["--optimizer", "adamw"], "adamw"),
]


@pytest.mark.parametrize(("extra", "named"), BAD_OPTIONS, ids=[e[0][0] for e in BAD_OPTIONS])
def test_bad_option_is_refused_before_anything_is_written(tmp_path, extra, named):
    out = tmp_path / "run"
    res = _run(out, "--no-pretrained", *extra)
    assert res.exit_code == 2, res.output
    assert named in res.output and "Traceback" not in res.output
    assert not (out / "run.json").exists()


def test_empty_models_list_is_refused(tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(app, ["run", "digits:200", "--out", str(out), "--models", "",
                              "--budget", "30"])
    assert res.exit_code == 2 and "--models" in res.output
    assert not (out / "run.json").exists()


def test_space_file_that_is_a_json_list_is_refused(tmp_path):
    space = tmp_path / "space.json"
    space.write_text(json.dumps([{"lr": 0.1}]))
    out = tmp_path / "run"
    res = _run(out, "--no-pretrained", "--space", str(space))
    assert res.exit_code == 2 and "--space must be a JSON object" in res.output
    assert not (out / "run.json").exists()


def test_corrected_command_runs_on_the_same_out_after_a_refused_one(tmp_path):
    out = tmp_path / "run"
    assert _run(out, "--no-pretrained", "--optimizer", "adamw").exit_code == 2
    bad_data = _run(out, "--no-pretrained", data=str(tmp_path / "no-such-folder"))
    assert bad_data.exit_code == 2 and not (out / "run.json").exists()
    res = _run(out, "--no-pretrained", "--optimizer", "defaults", budget="40")
    assert res.exit_code == 0, res.output
    assert (out / "best" / "model.safetensors").is_file()


def test_offline_test_hub_without_no_pretrained_exits_1_and_names_the_flag(tmp_path):
    out = tmp_path / "run"
    res = _run(out, "--optimizer", "defaults")
    assert res.exit_code == 1, res.output
    assert "no model was exported" in res.output
    assert "--no-pretrained" in res.output and "exported to None" not in res.output
    assert "Traceback" not in res.output


def test_tiny_budget_exits_1_with_the_reason(tmp_path):
    out = tmp_path / "run"
    res = _run(out, "--no-pretrained", "--optimizer", "defaults", budget="0.001")
    assert res.exit_code == 1, res.output
    assert "no model was exported" in res.output and "budget" in res.output


def test_option_rules_accept_the_defaults_and_reject_bools_as_numbers():
    check_run_options({"max_epochs": 10, "seed": 0, "final_epochs": 0, "num_threads": None,
                       "subset": None, "image_size": None, "models": None, "space": None,
                       "optimizer": "quicktune", "pretrained": True})
    with pytest.raises(RunError, match="--max-epochs"):
        check_run_options({"max_epochs": True})
    with pytest.raises(RunError, match="--models"):
        check_run_options({"models": ["test_resnet", " "]})


def test_near_chance_flags_majority_level_scores_only():
    labels = [0] * 60 + [1] * 20 + [2] * 20
    assert chance_level(labels) == pytest.approx(0.6)
    assert near_chance(0.62, labels)
    assert not near_chance(0.85, labels)
    assert not near_chance(None, labels)
