"""``hubtune run --ensemble K``: a real tiny search, its exported ensemble, the cache on resume.

One search is shared by the module (three timm test models, 32 px, random init,
the ``defaults`` optimizer: each model's default config to 2 epochs, so three
trials have checkpoints); the tests that change it work on a copy. Running a
finished run again re-finishes it (export + ensemble) when ``best/`` is not the
export it would write now: the resume tests remove ``best/`` first.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hubtune.cli import app
from hubtune.data.images import decode_image
from hubtune.tuner.export import Predictor
from tests.helpers.paths import DOCS
from tests.helpers.run import copy_of_run, finished_run

MODELS = "test_resnet,test_efficientnet,test_vit"


def run_args(data: Path, out: Path, ensemble: int | None = 3) -> list[str]:
    args = ["run", str(data), "--out", str(out), "--budget", "120", "--hub", "test",
            "--models", MODELS, "--max-epochs", "2", "--image-size", "32",
            "--optimizer", "defaults", "--no-pretrained", "--threads", "1", "--log", "plain"]
    return args if ensemble is None else [*args, "--ensemble", str(ensemble)]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """(data folder, a finished run folder with an ensemble), shared by the module."""
    return finished_run(tmp_path_factory.mktemp("ensemble"), run_args, per_class=16, size=32)


@pytest.fixture
def run(finished, tmp_path):
    return copy_of_run(finished, tmp_path)


def _images(data: Path) -> list[Path]:
    return sorted(data.rglob("*.png"))[::8]


def test_ensemble_is_exported_beside_the_single_model(finished):
    _data, out = finished
    best = out / "best"
    spec = json.loads((best / "ensemble.json").read_text())
    metrics = json.loads((best / "metrics.json").read_text())
    ens = metrics["ensemble"]
    assert sum(m["weight"] for m in spec["members"]) == pytest.approx(1.0)
    assert sum(m["count"] for m in ens["members"]) == 3 == spec["rounds"]
    for m in spec["members"]:
        assert (best / m["path"] / "model.safetensors").is_file()
        assert (best / m["path"] / "config.json").is_file()
    assert ens["candidates"] == 3 and ens["num_members"] == len(spec["members"])
    assert ens["params"] >= ens["single"]["params"] > 0
    assert ens["latency_ms"] > 0 and ens["single"]["latency_ms"] > 0
    assert {"val", "test"} <= set(ens) and 0 <= ens["test"]["top1"] <= 1
    assert ens["cache"]["computed"] == 3 and ens["cache"]["reused"] == 0
    # every candidate is scored on validation; only the chosen members on test
    assert sorted(ens["cache"]["test_computed_trials"]) == sorted(m["trial_id"] for m in spec["members"])
    assert ens["cut_by_budget"] == 0 and ens["dropped_by_budget"] == 0
    assert "## Ensemble" in (best / "README.md").read_text()
    assert (best / "model.safetensors").is_file()  # the single model stays as it was


def _docs_recipe() -> str:
    """The python block of docs/ensemble.md, which must be the model card's recipe."""
    from hubtune.tuner.ensemble_card import RECIPE

    text = (DOCS / "ensemble.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert code.strip() == RECIPE.removeprefix("```python").removesuffix("```").strip()
    return code


def _force_ensemble(data: Path, out: Path, weights: list[float]) -> None:
    """Export an ensemble of all the run's trials with the given weights (not selected)."""
    from hubtune.data import load_dataset
    from hubtune.tuner.ensemble_export import add_ensemble_to_best

    ds = load_dataset(str(data), image_size=32, subset=None, seed=0, cache_dir=out / "data-cache")
    index = json.loads((out / "ensemble-cache" / "index.json").read_text())["members"]
    ids = sorted(index)
    summary = {"rounds": 10, "metric": "top1", "candidates": len(ids),
               "members": [{"trial_id": t, "epoch": index[t]["epoch"], "weight": w,
                            "count": round(10 * w)} for t, w in zip(ids, weights, strict=True)]}
    add_ensemble_to_best(out / "best", ds, summary, {t: out / "trials" / t for t in ids}, "cpu")


@pytest.mark.parametrize("forced", [False, True])
def test_predictions_equal_the_weighted_average_of_plain_timm_members(finished, tmp_path, forced,
                                                                     monkeypatch):
    """The selected ensemble, and a forced three-member one (0.5/0.3/0.2), predict exactly
    the weighted average of their members loaded with plain timm (the model card's recipe)."""
    data, out = finished
    if forced:
        shutil.copytree(out, tmp_path / "run")
        out = tmp_path / "run"
        _force_ensemble(data, out, [0.5, 0.3, 0.2])
    best = out / "best"
    spec = json.loads((best / "ensemble.json").read_text())
    assert len(spec["members"]) == (3 if forced else len(spec["members"]))
    files = _images(data)
    predictor = Predictor(best)
    assert predictor.ensemble is not None
    labels = predictor.labels
    got = predictor.predict(files, top_k=len(labels), batch_size=4)
    x = torch.from_numpy(np.stack([decode_image(f, 32).pixels for f in files])).permute(0, 3, 1, 2)
    x = x.float() / 255
    monkeypatch.chdir(out)  # the recipe reads best/ from the run folder
    scope: dict = {}
    exec(_docs_recipe(), scope)  # docs/ensemble.md's plain-timm recipe (= the model card's)
    expected = scope["predict"](x).double()
    for pred, row in zip(got, expected, strict=True):
        probs = dict(pred.top)
        for i, name in enumerate(labels):
            assert probs[name] == pytest.approx(float(row[i]), abs=1e-6)


def test_single_flag_uses_the_single_model(finished):
    data, out = finished
    files = [str(f) for f in _images(data)]
    single = Predictor(out / "best", single=True)
    assert single.ensemble is None
    runner = CliRunner()
    a = runner.invoke(app, ["predict", str(out), *files, "--format", "json", "--device", "cpu",
                            "--single"])
    b = runner.invoke(app, ["predict", str(out), *files, "--format", "json", "--device", "cpu"])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    want = [p.probability for p in single.predict(files)]
    assert [p["probability"] for p in json.loads(a.stdout)] == pytest.approx(want, abs=1e-6)
    ens = [p.probability for p in Predictor(out / "best").predict(files)]
    assert [p["probability"] for p in json.loads(b.stdout)] == pytest.approx(ens, abs=1e-6)


def test_resume_reuses_the_cached_member_predictions(run):
    data, out = run
    cache = out / "ensemble-cache"
    before = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    old = json.loads((out / "best" / "ensemble.json").read_text())
    shutil.rmtree(out / "best")  # exported again (an intact best/ would be kept as it is)
    res = CliRunner().invoke(app, run_args(data, out))
    assert res.exit_code == 0, res.output
    ens = json.loads((out / "best" / "metrics.json").read_text())["ensemble"]
    assert ens["cache"]["computed"] == 0 and ens["cache"]["reused"] == 3
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == before
    new = json.loads((out / "best" / "ensemble.json").read_text())
    assert [(m["trial_id"], m["weight"]) for m in new["members"]] == \
        [(m["trial_id"], m["weight"]) for m in old["members"]]


def test_a_checkpoint_of_another_epoch_is_evaluated_again(run):
    data, out = run
    index_path = out / "ensemble-cache" / "index.json"
    index = json.loads(index_path.read_text())
    stale = sorted(index["members"])[0]
    index["members"][stale]["epoch"] = 99  # as if its cached predictions were of another epoch
    index_path.write_text(json.dumps(index))
    shutil.rmtree(out / "best")  # exported again (an intact best/ would be kept as it is)
    res = CliRunner().invoke(app, run_args(data, out))
    assert res.exit_code == 0, res.output
    cache = json.loads((out / "best" / "metrics.json").read_text())["ensemble"]["cache"]
    assert cache["computed_trials"] == [stale] and cache["reused"] == 2


def test_ensemble_zero_changes_nothing(run):
    data, out = run
    single = (out / "best" / "model.safetensors").read_bytes()
    for flag in (None, 0):  # the default, and an explicit 0
        res = CliRunner().invoke(app, run_args(data, out, ensemble=flag))
        assert res.exit_code == 0, res.output
        best = out / "best"
        assert sorted(p.name for p in best.iterdir()) == [
            "README.md", "config.json", "hubtune.json", "labels.json", "metrics.json",
            "model.safetensors", "preprocessing.json"]
        assert "ensemble" not in json.loads((best / "metrics.json").read_text())
        assert "## Ensemble" not in (best / "README.md").read_text()
        assert (best / "model.safetensors").read_bytes() == single
        assert Predictor(best).ensemble is None


def test_negative_ensemble_is_a_one_line_error(tmp_path):
    res = CliRunner().invoke(app, run_args(tmp_path / "nope", tmp_path / "run", ensemble=-1))
    assert res.exit_code == 2
    assert "--ensemble must be a whole number >= 0" in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize("damage", ["weights", "member_file"])
def test_a_damaged_ensemble_is_a_one_line_error(run, damage):
    data, out = run
    best = out / "best"
    spec = json.loads((best / "ensemble.json").read_text())
    if damage == "weights":
        spec["members"][0]["weight"] = spec["members"][0]["weight"] / 2
        (best / "ensemble.json").write_text(json.dumps(spec))
        expected = "weights sum to"
    else:
        (best / spec["members"][0]["path"] / "model.safetensors").unlink()
        expected = "missing (ensemble member"
    res = CliRunner().invoke(app, ["predict", str(out), str(_images(data)[0]), "--device", "cpu"])
    assert res.exit_code == 2 and expected in res.output and "Traceback" not in res.output
    ok = CliRunner().invoke(app, ["predict", str(out), str(_images(data)[0]), "--device", "cpu",
                                  "--single"])
    assert ok.exit_code == 0, ok.output  # the single model does not depend on the ensemble


# ------------------------------------------------------------------ under a time limit
def _selection(data: Path, out: Path, time_left, per_image=None):
    from hubtune.data import load_dataset
    from hubtune.tuner.ensemble import select_members

    ds = load_dataset(str(data), image_size=32, subset=None, seed=0,
                      cache_dir=out / "data-cache")
    trials = sorted((out / "trials").iterdir())
    broken: list[str] = []
    return select_members(out, ds, trials, 3, "top1", "cpu", lambda t, r: broken.append(f"{t}: {r}"),
                          time_left=time_left, per_image=per_image), broken


def _strip_test(out: Path, keep: set[str]) -> None:
    """Remove the test probabilities from every cached candidate not in ``keep``."""
    from safetensors.numpy import load_file, save_file

    cache = out / "ensemble-cache"
    for tid, entry in json.loads((cache / "index.json").read_text())["members"].items():
        if tid not in keep:
            path = cache / entry["file"]
            save_file({"val": load_file(str(path))["val"]}, str(path))


def test_no_time_left_and_nothing_cached_means_no_ensemble(run, tmp_path):
    data, out = run
    shutil.rmtree(out / "ensemble-cache")
    summary, broken = _selection(data, out, time_left=lambda: 0.0)
    assert summary is None and not broken
    assert not (out / "ensemble-cache").exists()  # nothing was evaluated


def test_members_without_time_for_their_test_pass_are_left_out(run):
    """Every candidate's probabilities are cached, but the chosen members' test ones are
    removed: with no time left those members are dropped and the weights chosen again
    among the candidates scored on test (nothing is evaluated); with time, the original
    ensemble comes back and only the dropped members are scored on test."""
    from hubtune.data import load_dataset
    from hubtune.tuner.ensemble import MemberCache

    data, out = run
    ds = load_dataset(str(data), image_size=32, subset=None, seed=0, cache_dir=out / "data-cache")
    cache = MemberCache(out)
    for trial in sorted((out / "trials").iterdir()):  # test probabilities of every candidate
        cache.add_test(cache.get(trial, ds, "cpu"), trial, ds, "cpu")
    full, _ = _selection(data, out, time_left=None)
    chosen = {m["trial_id"] for m in full["members"]}
    assert len(chosen) < full["candidates"]  # else nothing is left to choose from
    _strip_test(out, keep=set(cache.index) - chosen)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "ensemble-cache").iterdir()}
    summary, _ = _selection(data, out, time_left=lambda: 0.0)
    assert summary is not None and "test" in summary
    assert {m["trial_id"] for m in summary["members"]}.isdisjoint(chosen)
    assert summary["dropped_by_budget"] >= len(chosen) and summary["cut_by_budget"] == 0
    assert summary["cache"]["computed"] == 0 and summary["cache"]["test_computed_trials"] == []
    assert {p.name: p.stat().st_mtime_ns for p in (out / "ensemble-cache").iterdir()} == before
    again, _ = _selection(data, out, time_left=lambda: 1e9)
    assert [(m["trial_id"], m["weight"]) for m in again["members"]] == \
        [(m["trial_id"], m["weight"]) for m in full["members"]]
    assert sorted(again["cache"]["test_computed_trials"]) == sorted(chosen)
    assert again["test"] == full["test"]


def test_a_candidate_whose_estimate_does_not_fit_is_not_evaluated(run):
    """Cache gone, the search's estimate (1 s per image) far above the time left: not even
    the best candidate is loaded; with a small estimate all are."""
    data, out = run
    shutil.rmtree(out / "ensemble-cache")
    summary, _ = _selection(data, out, time_left=lambda: 5.0, per_image=1.0)
    assert summary is None and not (out / "ensemble-cache").exists()
    summary, broken = _selection(data, out, time_left=lambda: 1e6, per_image=1e-6)
    assert not broken
    assert summary is not None and summary["cache"]["computed"] == 3 and summary["cut_by_budget"] == 0


def test_a_run_with_its_budget_spent_exports_the_single_model_without_an_ensemble(run):
    """Finishing again with the budget already used up: the single model is exported, the
    ensemble (its cache removed) is skipped with a notice, and the journal says so."""
    data, out = run
    shutil.rmtree(out / "best")
    shutil.rmtree(out / "ensemble-cache")
    args = run_args(data, out)
    args[args.index("--budget") + 1] = "5"  # far less than the run has used already
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "no ensemble: the budget left no time" in res.output
    assert not (out / "best" / "ensemble.json").exists() and (out / "best" / "model.safetensors").is_file()
    notes = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    ens = [n for n in notes if n.get("what") == "ensemble"][-1]
    assert ens["members"] == 0 and ens["time_left"] < 0
