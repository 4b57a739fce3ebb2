"""``hubtune export RUN --format onnx|torchscript``: the converted model gives the PyTorch logits."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from typer.testing import CliRunner

from hubtune.cli import app
from hubtune.tuner.bestdir import load_best
from tests.helpers.run import finished_run, one_model_defaults_args

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    _data, out = finished_run(tmp_path_factory.mktemp("export-formats"),
                              one_model_defaults_args, per_class=12, size=24)
    return out


def _inputs() -> torch.Tensor:
    return torch.randn(5, 3, 24, 24, generator=torch.Generator().manual_seed(0))


def _reference(run) -> torch.Tensor:
    with torch.no_grad():
        return load_best(run / "best").model(_inputs())


@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime is not installed (pip install 'hubtune[export]')")
def test_onnx_export_matches_pytorch_logits(run, tmp_path):
    import onnxruntime as ort

    target = tmp_path / "m.onnx"
    res = CliRunner().invoke(app, ["export", str(run), "--format", "onnx", "--out", str(target)])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == str(target)
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"image": _inputs().numpy()})  # batch 5: the batch axis is free
    assert (torch.from_numpy(logits) - _reference(run)).abs().max().item() <= 1e-4


def test_torchscript_export_matches_pytorch_logits(run):
    res = CliRunner().invoke(app, ["export", str(run / "best"), "--format", "torchscript"])
    assert res.exit_code == 0, res.output
    target = run / "best" / "model.torchscript.pt"
    assert res.output.strip() == str(target)
    with torch.no_grad():
        logits = torch.jit.load(str(target))(_inputs())
    assert (logits - _reference(run)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("case", ["no-best", "unknown-format", "out-is-folder"])
def test_bad_input_is_exit_2_with_one_line(run, tmp_path, case):
    args = {"no-best": ["export", str(tmp_path / "nothing"), "--format", "onnx"],
            "unknown-format": ["export", str(run), "--format", "tflite"],
            "out-is-folder": ["export", str(run), "--format", "torchscript", "--out", str(tmp_path)],
            }[case]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert {"no-best": "does not exist", "unknown-format": "choose one of onnx, torchscript",
            "out-is-folder": "is a folder"}[case] in lines[0]
