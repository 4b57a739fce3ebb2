"""``best/config.json`` is timm's own format: ``timm.create_model("local-dir:best")`` loads
the trained model and timm's transform reproduces hubtune's predictions; ``best/README.md``
is a model card; ``hubtune.json`` holds hubtune's Config."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from PIL import Image
from typer.testing import CliRunner

from hubtune.cli import app
from hubtune.tuner.export import Predictor
from tests.helpers.run import COLORS, make_folder

SIZE = 24  # training resolution; the test images are squares of this size (no resampling)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(finished run folder, test image paths)."""
    root = tmp_path_factory.mktemp("export-timm")
    data = make_folder(root / "data", per_class=12, size=SIZE)
    out = root / "run"
    res = CliRunner().invoke(app, [
        "run", str(data), "--out", str(out), "--budget", "120", "--hub", "test",
        "--models", "test_efficientnet", "--max-epochs", "1", "--image-size", str(SIZE),
        "--optimizer", "defaults", "--no-pretrained", "--threads", "1", "--log", "plain"])
    assert res.exit_code == 0, res.output
    images = [p for c in COLORS for p in sorted((data / c).glob("*.png"))[:2]]
    return out, images


def test_config_json_is_timm_format_at_the_trained_resolution(run):
    out, _ = run
    cfg = json.loads((out / "best" / "config.json").read_text())
    meta = json.loads((out / "best" / "hubtune.json").read_text())
    pre = json.loads((out / "best" / "preprocessing.json").read_text())
    assert cfg["architecture"] == meta["architecture"] == "test_efficientnet"
    assert cfg["num_classes"] == 3 and cfg["label_names"] == sorted(COLORS)
    assert isinstance(cfg["num_features"], int)
    p = cfg["pretrained_cfg"]
    assert p["input_size"] == [3, SIZE, SIZE]
    assert p["mean"] == pre["mean"] and p["std"] == pre["std"]
    assert (p["interpolation"], p["crop_pct"], p["crop_mode"]) == ("bilinear", 1.0, "center")
    # hubtune's own Config lives in hubtune.json; result.json reports it
    result = json.loads((out / "result.json").read_text())
    assert meta["config"]["model"] == "test_efficientnet" and result["config"] == meta["config"]
    assert meta["trial_id"] == result["metrics"]["trial_id"]


def test_timm_local_dir_reproduces_predictor_probabilities(run):
    out, images = run
    model = timm.create_model(f"local-dir:{out / 'best'}", pretrained=True).eval()
    data_cfg = timm.data.resolve_data_config(model=model)
    assert data_cfg["input_size"] == (3, SIZE, SIZE) and data_cfg["interpolation"] == "bilinear"
    transform = timm.data.create_transform(**data_cfg)
    x = torch.stack([transform(Image.open(p).convert("RGB")) for p in images])
    with torch.no_grad():
        timm_probs = model(x).softmax(-1)
    predictor = Predictor(out / "best")
    preds = predictor.predict(images, top_k=3)
    ours = torch.tensor([[dict(p.top)[lbl] for lbl in predictor.labels] for p in preds])
    # same weights, same pixels, same normalisation: equal up to float rounding
    assert (timm_probs - ours).abs().max().item() <= 1e-5
    assert [predictor.labels[i] for i in timm_probs.argmax(-1)] == [p.label for p in preds]


def test_model_card_names_model_classes_scores_and_search(run):
    out, _ = run
    card = (out / "best" / "README.md").read_text()
    metrics = json.loads((out / "best" / "metrics.json").read_text())
    assert card.startswith("# test_efficientnet")
    for needle in ("`red`", "`green`", "`blue`", "| `lr` |", "optimizer: defaults",
                   f"{100 * metrics['val']['top1']:.2f}%", 'timm.create_model("local-dir:',
                   "hubtune predict"):
        assert needle in card, needle
