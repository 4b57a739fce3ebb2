"""The Python API: ``from hubtune import HubTuner, load, SearchResult`` on one tiny real run."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from PIL import Image

import hubtune
from hubtune import HubTuner, RunError, SearchResult, load
from hubtune.tuner.device import resolve_device
from hubtune.tuner.results import LEADERBOARD_COLUMNS
from tests.helpers.run import make_folder


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """(data folder, the SearchResult of fit) of one tiny real search through the API."""
    root = tmp_path_factory.mktemp("api")
    data = make_folder(root / "data", per_class=20)
    tuner = HubTuner(budget=20, out=root / "run", models=["test_resnet"], max_epochs=2,
                     image_size=32, optimizer="random", pretrained=False, num_threads=1,
                     device="auto")
    return data, tuner.fit(data)


def test_public_names():
    from hubtune.tuner import hubtuner

    assert hubtuner.SearchResult is SearchResult  # the old home re-exports it
    assert {"HubTuner", "load", "SearchResult"} <= set(hubtune.__all__)


def test_load_gives_back_the_finished_result(fitted):
    _, result = fitted
    assert isinstance(result, SearchResult) and result.best_dir is not None
    loaded = load(result.out)
    for name in ("model", "config", "val_score", "test_score", "steps", "trials", "why",
                 "metric"):
        assert getattr(loaded, name) == getattr(result, name), name
    assert loaded.best_dir == result.out / "best"
    assert load(result.out / "best").model == result.model  # the best/ folder also works


def test_predict_takes_paths_folders_and_pil_images(fitted):
    data, result = fitted
    files = sorted((data / "red").glob("*.png"))[:3]
    by_path = result.predict(files, top_k=2)
    assert [p.path for p in by_path] == [str(f) for f in files]
    assert all(len(p.top) == 2 and p.label in {"red", "green", "blue"} for p in by_path)
    images = [Image.open(f) for f in files]
    by_pil = result.predict(images, batch_size=2)
    assert [p.label for p in by_pil] == [p.label for p in by_path]
    assert len(result.predict(data / "red")) == len(list((data / "red").glob("*.png")))
    assert len(result.predict(str(files[0]))) == 1
    with pytest.raises(ValueError, match="between 1 and 3"):
        result.predict(files, top_k=0)


def test_leaderboard_is_a_dataframe_with_one_row_per_trial(fitted, monkeypatch):
    _, result = fitted
    journal = [json.loads(line) for line in (result.out / "journal.jsonl").read_text().splitlines()]
    trial_ids = {e["step"]["trial_id"] for e in journal if e["event"] == "result"}
    df = result.leaderboard()
    assert type(df).__name__ == "DataFrame" and list(df.columns) == list(LEADERBOARD_COLUMNS)
    assert set(df["trial_id"]) == trial_ids and len(df) == len(trial_ids)
    assert df["last_score"].iloc[0] == df["last_score"].max()  # the export's rule
    assert df["exported"].iloc[0] and df["trial_id"].iloc[0] == result.metrics["trial_id"]
    assert (df["best_epoch"] <= df["last_epoch"]).all()
    monkeypatch.setitem(sys.modules, "pandas", None)  # pandas not importable
    rows = result.leaderboard()
    assert isinstance(rows, list) and len(rows) == len(trial_ids)
    assert rows[0]["model"] == "test_resnet" and rows[0]["config"]["model"] == "test_resnet"
    assert rows[0]["best_score"] == df["best_score"].iloc[0]


def test_load_an_interrupted_run(fitted, tmp_path):
    _, result = fitted
    # killed before export: no result.json, no best/ -> the journal's best trial
    before_export = tmp_path / "before-export"
    shutil.copytree(result.out, before_export)
    (before_export / "result.json").unlink()
    shutil.rmtree(before_export / "best")
    r = load(before_export)
    assert r.why == "interrupted" and r.best_dir is None
    assert r.steps == result.steps and r.trials == result.trials
    assert r.val_score == max(row["last_score"] for row in r.leaderboard().to_dict("records"))
    with pytest.raises(RunError, match="no exported model"):
        r.predict([])
    # a resumed session killed mid-search: result.json is stale (fewer steps than the journal)
    resumed = tmp_path / "resumed"
    shutil.copytree(result.out, resumed)
    stale = json.loads((resumed / "result.json").read_text())
    stale["steps"] -= 1
    (resumed / "result.json").write_text(json.dumps(stale))
    r = load(resumed)
    assert r.why == "interrupted" and r.model == result.model and r.best_dir == resumed / "best"
    assert r.val_score == result.val_score


def test_load_refuses_a_folder_without_a_run(tmp_path):
    with pytest.raises(RunError, match="not a hubtune run folder"):
        load(tmp_path)


def test_device_auto_resolves_and_the_run_stores_the_resolved_device(fitted):
    import torch

    _, result = fitted
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto") == expected
    assert json.loads((result.out / "run.json").read_text())["device"] == expected


@pytest.mark.parametrize("device", ["tpu", "cuda:x", ""])
def test_unknown_device_is_refused(tmp_path, device):
    with pytest.raises(RunError, match="--device must be auto, cpu, cuda"):
        HubTuner(budget=5, out=tmp_path, models=["test_resnet"], device=device)


def test_asking_for_a_device_this_machine_lacks_is_a_one_line_error(tmp_path):
    import torch
    from typer.testing import CliRunner

    from hubtune.cli import app

    lacking = [d for d, there in (("cuda", torch.cuda.is_available()),
                                  ("mps", torch.backends.mps.is_available())) if not there]
    if torch.cuda.is_available():
        lacking.append(f"cuda:{torch.cuda.device_count()}")
    for device in lacking:
        res = CliRunner().invoke(app, ["run", "digits:50", "--out", str(tmp_path / "o"),
                                       "--budget", "5", "--models", "test_resnet",
                                       "--device", device])
        assert res.exit_code == 2, res.output
        assert res.stderr.count("\n") == 1 and f"--device {device} was asked for" in res.stderr
        res = CliRunner().invoke(app, ["predict", str(tmp_path), str(tmp_path),
                                       "--device", device])
        assert res.exit_code == 2 and f"--device {device} was asked for" in res.stderr


def test_the_runs_search_space_follows_its_schedule(fitted, tmp_path):
    """A run of --max-epochs 2 samples warm-ups/decays of its own length, not the 50-epoch grid's."""
    data, _ = fitted
    tuner = HubTuner(budget=20, out=tmp_path / "run", models=["test_resnet"], max_epochs=2,
                     image_size=32, optimizer="random", pretrained=False, num_threads=1)
    _, ctx = tuner._task(tuner._settings(str(data)))
    assert ctx.space.schedule_epochs == 2
    assert ctx.space.choices["warmup_epochs"] == [0, 1] and ctx.space.choices["decay_epochs"] == [1]
    assert max(c.warmup_epochs for c in ctx.space.sample(100, seed=0)) == 1
