"""A tampered or mismatched ``best/`` gives one-line errors naming the file, never a traceback.

Each case damages a copy of a real export (tiny search, timm test models) and
loads it through ``hubtune predict`` and through :func:`load_best` / ``Predictor``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from hubtune.cli import app
from hubtune.tuner.bestdir import load_best
from hubtune.tuner.export import ExportError, Predictor
from tests.helpers.run import finished_run, one_model_defaults_args


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(a finished run folder, one of its training images)."""
    data, out = finished_run(tmp_path_factory.mktemp("export-load"), one_model_defaults_args,
                             per_class=12, size=24)
    return out, sorted((data / "red").glob("*.png"))[0]


def _edit_json(name: str, edit: Callable[[dict | list], object]) -> Callable[[Path], None]:
    def apply(best: Path) -> None:
        d = json.loads((best / name).read_text())
        d = edit(d) or d
        (best / name).write_text(json.dumps(d))
    return apply


def _set(key: str, value: object) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        *path, last = key.split(".")
        for k in path:
            d = d[k]
        d[last] = value
    return edit


def _other_run_weights(best: Path) -> None:
    """Weights of the same model trained for 5 classes (another run's head)."""
    from hubtune.hub import create_model

    model = json.loads((best / "hubtune.json").read_text())["model"]
    save_file(create_model(model, num_classes=5, pretrained=False).model.state_dict(),
              str(best / "model.safetensors"))


def _other_model_weights(best: Path) -> None:
    from hubtune.hub import create_model

    n = len(json.loads((best / "labels.json").read_text()))
    save_file(create_model("test_efficientnet", num_classes=n, pretrained=False).model.state_dict(),
              str(best / "model.safetensors"))


def _truncate_weights(best: Path) -> None:
    data = (best / "model.safetensors").read_bytes()
    (best / "model.safetensors").write_bytes(data[: len(data) // 2])


CASES = {
    # name: (damage, file named in the error, words in the error)
    "garbage-safetensors": (lambda b: (b / "model.safetensors").write_bytes(b"not safetensors"),
                            "model.safetensors", "not a readable safetensors"),
    "truncated-safetensors": (_truncate_weights, "model.safetensors", "not a readable safetensors"),
    "config-architecture-changed": (_edit_json("config.json", _set("architecture", "resnet18")),
                                    "config.json", "architecture 'resnet18' does not match"),
    "hubtune-model-changed": (_edit_json("hubtune.json", _set("model", "test_vit")),
                              "preprocessing.json", "does not match"),
    "mean-two-values": (_edit_json("preprocessing.json", _set("mean", [0.5, 0.5])),
                        "preprocessing.json", "mean must be 3 numbers"),
    "timm-std-four-values": (_edit_json("config.json", _set("pretrained_cfg.std", [1, 1, 1, 1])),
                             "config.json", "pretrained_cfg.std must be 3 numbers"),
    "std-zero": (_edit_json("preprocessing.json", _set("std", [0.2, 0.0, 0.2])),
                 "preprocessing.json", "must be positive"),
    "labels-invalid-json": (lambda b: (b / "labels.json").write_text('["red", "green"'),
                            "labels.json", "invalid JSON"),
    "config-invalid-json": (lambda b: (b / "config.json").write_bytes(b"\xff\xfe{"),
                            "config.json", "invalid JSON"),
    "labels-shorter-than-head": (_edit_json("labels.json", lambda d: d[:-1]),
                                 "labels.json", "class names for a head of 3"),
    "weights-from-another-run": (_other_run_weights, "model.safetensors", "weights from another run"),
    "weights-of-another-model": (_other_model_weights, "model.safetensors", "weights are not those of"),
    "hubtune-json-missing": (lambda b: (b / "hubtune.json").unlink(), "", "missing hubtune.json"),
    "image-size-text": (_edit_json("preprocessing.json", _set("image_size", "24")),
                        "preprocessing.json", "image_size must be a whole number"),
}


@pytest.fixture
def damaged(exported, tmp_path, request):
    out, image = exported
    best = tmp_path / "best"
    shutil.copytree(out / "best", best)
    damage, name, words = CASES[request.param]
    damage(best)
    return best, image, name, words


@pytest.mark.parametrize("damaged", sorted(CASES), indirect=True)
def test_damaged_best_is_a_one_line_error(damaged):
    best, image, name, words = damaged
    with pytest.raises(ExportError) as exc:
        Predictor(best)
    msg = str(exc.value)
    assert "\n" not in msg and words in msg and str(best / name if name else best) in msg, msg
    res = CliRunner().invoke(app, ["predict", str(best), str(image)])
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], res.output


def test_intact_best_loads_and_predicts(exported):
    out, image = exported
    loaded = load_best(out / "best")
    assert len(loaded.labels) == 3 and loaded.meta["model"] == "test_resnet"
    assert set(load_file(str(out / "best" / "model.safetensors"))) == set(loaded.model.state_dict())
    res = CliRunner().invoke(app, ["predict", str(out), str(image)])
    assert res.exit_code == 0 and res.output.split("\t")[1] in loaded.labels, res.output


def test_missing_best_folder_is_a_one_line_error(tmp_path):
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "nope"), str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "does not exist" in res.output and "Traceback" not in res.output
