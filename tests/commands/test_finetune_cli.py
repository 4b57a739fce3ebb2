"""``hubtune finetune`` and ``hubtune demo`` through typer's CliRunner."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hubtune.cli import app

runner = CliRunner()
TINY = ["--model", "test_efficientnet", "--no-pretrained", "--image-size", "32", "--threads", "1"]


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_finetune_trains_writes_records_and_resumes(tmp_path):
    out = tmp_path / "trial"
    res = invoke("finetune", "fashion-mnist:64", *TINY, "--epochs", "1", "--max-epochs", "2",
                 "--out", str(out))  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "top-1" in res.output and "test top-1" in res.output
    lines = (out / "records.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1]
    assert (out / "checkpoint.json").exists() and (out / "run.json").exists()
    res = invoke("finetune", "ignored", "--resume-from", str(out), "--epochs", "2")
    assert res.exit_code == 0, res.output
    lines = (out / "records.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]


def test_finetune_reads_a_config_file(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"opt": "momentum", "momentum": 0.8, "lr": 0.02, "batch_size": 8}))
    out = tmp_path / "trial"
    res = invoke("finetune", "fashion-mnist:48", *TINY, "--config", str(cfg), "--epochs", "1",
                 "--out", str(out))  # fmt: skip
    assert res.exit_code == 0, res.output
    state = json.loads((out / "checkpoint.json").read_text())
    assert state["config"]["opt"] == "momentum" and state["config"]["batch_size"] == 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/no/such/folder", *TINY], "/no/such/folder"),
        (["fashion-mnist:48", "--model", "no_such_model_xyz", "--no-pretrained", "--image-size", "32"],
         "no_such_model_xyz"),
        (["fashion-mnist:48", *TINY, "--config", "{bad}"], "cannot read config file"),
        (["fashion-mnist:48", *TINY, "--epochs", "3", "--max-epochs", "2"], "exceeds --max-epochs"),
        (["fashion-mnist:48", "--image-size", "32"], "name a model"),
        (["fashion-mnist:48", *TINY, "--device", "tpu"], "--device"),
        (["x", "--resume-from", "/no/such/trial"], "not a hubtune finetune directory"),
    ],
)  # fmt: skip
def test_bad_input_is_a_one_line_error(args, message, tmp_path):
    res = invoke("finetune", *args, "--out", str(tmp_path / "t"))
    assert res.exit_code == 2, res.output
    err = res.stderr if hasattr(res, "stderr") else res.output
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], err


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "not valid JSON"), ('{"lr": -1}', "lr"), ('{"colour": 1}', "colour")],
)
def test_bad_config_json_is_a_one_line_error(text, message, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(text)
    res = invoke("finetune", "fashion-mnist:48", *TINY, "--config", str(cfg), "--out", str(tmp_path / "t"))
    assert res.exit_code == 2
    err = res.stderr if hasattr(res, "stderr") else res.output
    assert err.strip().startswith("error:") and message in err and len(err.strip().splitlines()) == 1


def test_demo_compares_pretrained_with_from_scratch(tmp_path):
    res = invoke("demo", "--subset", "40", "--image-size", "32", "--epochs", "1", "--threads", "1",
                 "--out", str(tmp_path))  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "pretrained" in res.output and "from scratch" in res.output
    assert "test top-1 after 1 epoch: pretrained" in res.output
    assert (tmp_path / "pretrained" / "records.jsonl").exists()
    assert (tmp_path / "scratch" / "records.jsonl").exists()
