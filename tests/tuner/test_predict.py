"""``hubtune predict`` on a real exported model: folders, batching, formats, --top, exit codes."""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from hubtune.cli import app
from hubtune.data.images import decode_image
from hubtune.tuner.export import Predictor
from hubtune.tuner.predict import Unreadable, collect_images, pil_to_pixels, predict_stream
from tests.helpers.run import make_folder, tiny_run_args


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(data folder, run folder) of one tiny finished search, shared by this module."""
    root = tmp_path_factory.mktemp("predict")
    data = make_folder(root / "data", per_class=20)
    out = root / "run"
    res = CliRunner().invoke(app, tiny_run_args(data, out))
    assert res.exit_code == 0, res.output
    return data, out


@pytest.fixture()
def images(run, tmp_path):
    """A folder tree of 7 images (nested, mixed extensions) plus a non-image file."""
    data, _ = run
    root = tmp_path / "in"
    (root / "sub" / "deeper").mkdir(parents=True)
    src = sorted((data / "red").glob("*.png"))[:3] + sorted((data / "blue").glob("*.png"))[:4]
    targets = [root / "b.png", root / "a.PNG", root / "sub" / "c.png", root / "sub" / "z.png",
               root / "sub" / "deeper" / "d.png", root / "sub" / "deeper" / "e.png"]
    for s, t in zip(src, targets, strict=False):
        shutil.copy(s, t)
    Image.open(src[6]).convert("RGB").save(root / "sub" / "f.jpg", quality=95)
    (root / "notes.txt").write_text("not an image, skipped in folders")
    return root


def test_folders_are_searched_recursively_for_images_in_sorted_order(images):
    files, missing = collect_images([images])
    assert not missing
    rel = [f.relative_to(images).as_posix() for f in files]
    assert rel == sorted(rel) and len(rel) == 7 and "notes.txt" not in rel
    assert {"a.PNG", "sub/f.jpg", "sub/deeper/e.png"} <= set(rel)


def test_cli_on_a_folder_prints_one_line_per_image(run, images):
    _, out = run
    res = CliRunner().invoke(app, ["predict", str(out), str(images), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    labels = json.loads((out / "best" / "labels.json").read_text())
    assert [ln.split("\t")[0] for ln in lines] == [str(f) for f in collect_images([images])[0]]
    assert all(ln.split("\t")[1] in labels for ln in lines)


def test_batches_bound_the_forward_pass_and_give_the_same_predictions(run, images):
    _, out = run
    predictor = Predictor(out / "best")
    sizes: list[int] = []
    hook = predictor.model.register_forward_hook(lambda _m, inp, _o: sizes.append(inp[0].shape[0]))
    files, _ = collect_images([images])
    small = list(predict_stream(predictor, files, batch_size=3, top_k=2))
    assert sizes == [3, 3, 1]
    sizes.clear()
    one = list(predict_stream(predictor, files, batch_size=64, top_k=2))
    hook.remove()
    assert sizes == [7]
    assert [p.label for p in small] == [p.label for p in one]
    assert np.allclose([p.probability for p in small], [p.probability for p in one], atol=1e-5)


def test_json_and_csv_formats(run, images):
    _, out = run
    res = CliRunner().invoke(app, ["predict", str(out), str(images), "--format", "json",
                                   "--top", "2", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert len(rows) == 7
    for r in rows:
        assert set(r) == {"path", "label", "probability", "top"}
        assert len(r["top"]) == 2 and r["top"][0] == {"label": r["label"],
                                                       "probability": r["probability"]}
        assert r["top"][0]["probability"] >= r["top"][1]["probability"]
    res = CliRunner().invoke(app, ["predict", str(out), str(images), "--format", "csv",
                                   "--top", "3", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    table = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(table) == 7 and list(table[0]) == ["path", "label", "probability", "label_2",
                                                  "probability_2", "label_3", "probability_3"]
    assert [t["label"] for t in table] == [r["label"] for r in rows]
    bad = CliRunner().invoke(app, ["predict", str(out), str(images), "--format", "xml"])
    assert bad.exit_code == 2 and "--format" in bad.stderr


@pytest.mark.parametrize("top", ["0", "-1", "4"])
def test_top_outside_one_to_the_class_count_is_a_usage_error(run, images, top):
    _, out = run
    res = CliRunner().invoke(app, ["predict", str(out), str(images), "--top", top])
    assert res.exit_code == 2, res.output
    assert res.stderr.strip().count("\n") == 0 and "between 1 and 3" in res.stderr
    assert "Traceback" not in res.output


def test_unreadable_inputs_are_listed_and_the_rest_still_classified(run, images, tmp_path):
    _, out = run
    broken = images / "sub" / "broken.png"
    broken.write_text("not a png")
    missing = tmp_path / "nowhere.jpg"
    res = CliRunner().invoke(app, ["predict", str(out), str(images), str(missing),
                                   "--batch-size", "2", "--device", "cpu"])
    assert res.exit_code == 1, res.output
    assert len(res.stdout.strip().splitlines()) == 7
    assert "broken.png" in res.stderr and "nowhere.jpg" in res.stderr
    assert "2 of 9 inputs unreadable" in res.stderr
    assert "broken.png" not in res.stdout


def test_no_model_and_no_images_are_usage_errors(run, tmp_path):
    _, out = run
    empty = tmp_path / "empty"
    empty.mkdir()
    res = CliRunner().invoke(app, ["predict", str(empty), str(empty)])
    assert res.exit_code == 2 and "not an exported hubtune model" in res.stderr
    res = CliRunner().invoke(app, ["predict", str(out), str(empty)])
    assert res.exit_code == 2 and "no image files" in res.stderr
    res = CliRunner().invoke(app, ["predict", str(out), str(empty), "--batch-size", "0"])
    assert res.exit_code == 2 and "--batch-size" in res.stderr


def test_pil_images_are_preprocessed_like_files(run, tmp_path):
    data, out = run
    path = sorted((data / "green").glob("*.png"))[0]
    rgba = tmp_path / "rgba.png"
    im = Image.open(path).convert("RGBA").resize((40, 29))
    im.putalpha(128)
    im.save(rgba)
    for p in (path, rgba):
        with Image.open(p) as img:
            assert np.array_equal(pil_to_pixels(img, 32), decode_image(p, 32).pixels)
    predictor = Predictor(out / "best")
    with Image.open(path) as img:
        from_pil = list(predict_stream(predictor, [img, 42], top_k=1))
    from_file = predictor.predict([path], top_k=1)
    assert from_pil[0].label == from_file[0].label
    assert isinstance(from_pil[1], Unreadable) and "not a path or PIL image" in from_pil[1].reason
