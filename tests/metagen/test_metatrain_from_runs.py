"""``hubtune metatrain --from-runs``: run folders -> meta-dataset -> specialised surrogate, and the leak guard.

Real tiny runs (test hub, 32 px, a couple of epochs): one model trains, one
(``test_coatnet``, which cannot take 32 px) fails, so every folder has a failed
trial to keep.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hubtune.cli import app
from hubtune.metadata import MetadataError, load_metadata, save_metadata
from hubtune.metagen.runfolder import load_run_folders
from hubtune.search.journal import Journal
from hubtune.space.config import Config
from hubtune.surrogate.model import Surrogate
from hubtune.surrogate.provenance import RECORD_KEY, trained_on
from tests.helpers.run import make_folder

SIZE = 32


def _run_args(data: Path, out: Path, models: str, *extra: str) -> list[str]:
    return ["run", str(data), "--out", str(out), "--budget", "60", "--hub", "test", "--models", models,
            "--max-epochs", "2", "--image-size", str(SIZE), "--optimizer", "defaults",
            "--no-pretrained", "--threads", "1", "--log", "plain", *extra]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two finished run folders of the same data (different models) and a second data folder."""
    root = tmp_path_factory.mktemp("fromruns")
    data = make_folder(root / "data", per_class=12, size=SIZE)
    other = make_folder(root / "other", per_class=12, size=SIZE, seed=1)
    a, b = root / "runs" / "a", root / "runs" / "b"
    for out, models in ((a, "test_resnet,test_coatnet"), (b, "test_efficientnet")):
        res = CliRunner().invoke(app, _run_args(data, out, models))
        assert res.exit_code == 0, res.output
    return {"data": data, "other": other, "a": a, "b": b, "root": root}


def _journal_trials(folder: Path) -> dict[str, dict]:
    """trial id -> config, epochs' (top1, train+eval seconds), failure reasons, straight from the journal."""
    out: dict[str, dict] = {}
    for e in Journal(folder / "journal.jsonl"):
        if e["event"] not in ("ask", "result"):
            continue
        t = out.setdefault(e["step"]["trial_id"], {"config": e["step"]["config"], "epochs": {}, "reasons": []})
        if e["event"] == "result":
            for r in e["records"]:
                t["epochs"].setdefault(r["epoch"], (r["val_metrics"]["top1"],
                                                    r["train_seconds"] + r["eval_seconds"]))
            if e["status"] == "failed":
                t["reasons"].append(e["reason"])
    return out


def test_run_folder_converts_to_the_journal_curves(runs):
    meta = load_metadata(runs["a"])  # detected as a run folder
    assert meta.datasets == ["data"]
    ds = meta["data"]
    trials = _journal_trials(runs["a"])
    ok = {tid: t for tid, t in trials.items() if t["epochs"]}
    assert sorted(ds.run_ids) == sorted(f"a/{tid}" for tid in ok)
    for tid, t in ok.items():
        i = ds.index(f"a/{tid}")
        assert ds.configs[i] == Config.from_dict(t["config"])
        epochs = sorted(t["epochs"])
        assert epochs == list(range(1, len(epochs) + 1))
        assert ds.curve(i).tolist() == [t["epochs"][e][0] for e in epochs]
        assert ds.cost(i).tolist() == pytest.approx([t["epochs"][e][1] for e in epochs], rel=1e-12)
    assert int(ds.lengths.max()) == 2
    assert ds.schedule_epochs == 2  # the run's --max-epochs
    cache = json.loads(next((runs["a"] / "data-cache").glob("*.json")).read_text())
    assert ds.meta_features.to_dict() == cache["meta_features"]
    assert meta.provenance["data"]["fingerprints"] == [cache["fingerprint"]]
    assert meta.provenance["data"]["run_dirs"] == [str(runs["a"].resolve())]
    # the failed trial is kept with the journal's reason, not dropped
    failed = {tid: t for tid, t in trials.items() if not t["epochs"]}
    assert failed and Config.from_dict(next(iter(failed.values()))["config"]).model == "test_coatnet"
    assert {u.run_id for u in meta.unmapped} == {f"a/{tid}" for tid in failed}
    for u in meta.unmapped:
        assert u.reason == f"failed: {failed[u.run_id.split('/')[1]]['reasons'][0]}"


def test_interrupted_folder_with_a_torn_tail(runs, tmp_path):
    torn = tmp_path / "torn"
    shutil.copytree(runs["a"], torn)
    lines = (torn / "journal.jsonl").read_bytes().splitlines(keepends=True)
    # cut the journal inside the last result event: the kill came mid-write
    last = max(i for i, ln in enumerate(lines) if b'"event": "result"' in ln and b'"records": [{' in ln)
    cut = b"".join(lines[:last]) + lines[last][: len(lines[last]) // 2]
    (torn / "journal.jsonl").write_bytes(cut)
    lost = json.loads(lines[last])
    meta = load_run_folders([torn])
    ds = meta["data"]
    kept = _journal_trials(torn)  # what the intact lines say
    n_epochs = sum(len(t["epochs"]) for t in kept.values())
    assert int(ds.lengths.sum()) == n_epochs
    assert n_epochs == sum(len(t["epochs"]) for t in _journal_trials(runs["a"]).values()) - len(lost["records"])
    tid = lost["step"]["trial_id"]
    if kept[tid]["epochs"]:
        assert ds.lengths[ds.index(f"torn/{tid}")] == len(kept[tid]["epochs"])
    else:  # asked, never finished: kept as interrupted
        assert any(u.run_id == f"torn/{tid}" and "interrupted" in u.reason for u in meta.unmapped)


def test_two_folders_of_the_same_data_merge_and_save(runs, tmp_path):
    meta = load_run_folders([runs["a"], runs["b"]])
    assert meta.datasets == ["data"]
    ds = meta["data"]
    assert {r.split("/")[0] for r in ds.run_ids} == {"a", "b"}
    assert {c.model for c in ds.configs} == {"test_resnet", "test_efficientnet"}
    prov = meta.provenance["data"]
    assert prov["run_dirs"] == [str(runs["a"].resolve()), str(runs["b"].resolve())]
    assert len(prov["fingerprints"]) == 1 and prov["sources"] == [f"folder:{runs['data'].resolve()}"]
    # hubtune's own format keeps the curves and the provenance (metadata convert)
    save_metadata(meta, tmp_path / "native")
    back = load_metadata(tmp_path / "native")
    assert back.provenance == meta.provenance
    np.testing.assert_array_equal(back["data"].scores, ds.scores)
    assert back["data"].schedule_epochs == 2 and back.unmapped == meta.unmapped
    with pytest.raises(MetadataError, match="given twice"):
        load_run_folders([runs["a"], runs["a"]])
    with pytest.raises(MetadataError, match="not a hubtune run folder"):
        load_run_folders([runs["data"]])


def test_metatrain_from_runs_end_to_end_and_the_leak_guard(runs, tmp_path):
    sur_dir = tmp_path / "sur"
    res = CliRunner().invoke(app, ["metatrain", "--from-runs", str(runs["a"]), str(runs["b"]),
                                   "--out", str(sur_dir), "--steps", "3"])
    assert res.exit_code == 0, res.output
    sur = Surrogate.load(sur_dir)
    assert sur.record["continued_from"]  # --init-surrogate shipped by default
    entries = trained_on(sur_dir)
    assert entries == sur.record[RECORD_KEY] and len(entries) == 1
    assert entries[0]["run_dirs"] == [str(runs["a"].resolve()), str(runs["b"].resolve())]
    assert "--from-runs" in sur.record["command"]

    # the surrogate searches other data
    out = tmp_path / "search"
    res = CliRunner().invoke(app, ["run", str(runs["other"]), "--out", str(out), "--budget", "15",
                                   "--hub", "test", "--models", "test_resnet", "--max-epochs", "2",
                                   "--image-size", str(SIZE), "--no-pretrained", "--threads", "1",
                                   "--log", "plain", "--surrogate", str(sur_dir)])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "run.json").read_text())["surrogate"] == str(sur_dir.resolve())
    assert (out / "best").is_dir()

    # ... but not the data it was trained on: one line, naming the run folder, nothing written
    for extra in ([], ["--subset", "20"]):  # the same images; also a subset of them
        leak = tmp_path / f"leak{len(extra)}"
        res = CliRunner().invoke(app, _run_args(runs["data"], leak, "test_resnet", "--surrogate", str(sur_dir),
                                                *extra))
        assert res.exit_code == 2, res.output
        errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1, res.output
        err = errors[0]
        assert "meta-trained on" in err and str(runs["a"].resolve()) in err
        assert ("this data" in err) == (not extra)
        assert not (leak / "run.json").exists()


def test_metatrain_from_runs_options(runs, tmp_path):
    r = CliRunner().invoke(app, ["metatrain", "--out", str(tmp_path / "s")])
    assert r.exit_code == 2 and "--from-runs" in r.output
    r = CliRunner().invoke(app, ["metatrain", "--from-runs", str(runs["data"]), "--out", str(tmp_path / "s")])
    assert r.exit_code == 2 and "not a hubtune run folder" in r.output
    # one dataset cannot be meta-trained from scratch: 'none' is honoured, not replaced by shipped
    r = CliRunner().invoke(app, ["metatrain", "--from-runs", str(runs["a"]), "--init-surrogate", "none",
                                 "--out", str(tmp_path / "s"), "--steps", "2"])
    assert r.exit_code == 2 and "at least 2 datasets" in r.output


def test_journal_edge_cases(tmp_path):
    """Epochs journaled twice (an evicted trial retrained), divergence, a NaN first epoch, a step
    abandoned at the deadline and continued after a resume, a step asked and never finished."""
    from hubtune.core.records import EpochRecord
    from hubtune.protocol.codec import result_to_dict, step_to_dict
    from hubtune.protocol.steps import Step, StepResult

    folder = tmp_path / "edge"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"data": str(tmp_path / "gone"), "max_epochs": 4,
                                                 "seed": 0, "image_size": 32}))
    j = Journal(folder / "journal.jsonl")

    def rec(e: int, s: float) -> EpochRecord:
        return EpochRecord(epoch=e, score=s, train_seconds=1.0 + e, eval_seconds=0.5,
                           val_metrics={"top1": s})

    cx, cy, cz, cw, cv = (Config(model=m) for m in ("test_resnet", "test_convnext", "test_vit",
                                                     "test_efficientnet", "test_nfnet"))
    for step, records, status, reason in (
        (Step("x", cx, 2), [rec(1, 0.3), rec(2, 0.4)], "ok", None),
        (Step("x", cx, 3), [rec(1, 0.31), rec(2, 0.41), rec(3, 0.5)], "ok", None),  # retrained
        (Step("y", cy, 3), [rec(1, 0.2)], "diverged", "non-finite loss at epoch 2"),
        (Step("z", cz, 1), [rec(1, float("nan"))], "diverged", "non-finite loss"),
        (Step("w", cw, 2), [rec(1, 0.6)], "failed", "abandoned mid-way through epoch 2: deadline"),
        (Step("w", cw, 2), [rec(2, 0.7)], "ok", None),  # the next session continues it
    ):
        j.append("ask", step=step_to_dict(step))
        j.append("result", **result_to_dict(StepResult(step=step, records=records, status=status,
                                                        reason=reason, seconds=1.0)))
    j.append("ask", step=step_to_dict(Step("v", cv, 1)))  # killed during its first epoch
    meta = load_run_folders([folder])
    ds = meta["gone"]
    assert ds.curve(ds.index("edge/w")).tolist() == [0.6, 0.7]
    assert ds.curve(ds.index("edge/x")).tolist() == [0.3, 0.4, 0.5]  # first record of an epoch kept
    assert ds.cost(ds.index("edge/x")).tolist() == [2.5, 3.5, 4.5]
    assert ds.curve(ds.index("edge/y")).tolist() == [0.2]  # the epochs before divergence
    assert [(u.run_id, u.reason) for u in meta.unmapped] == [
        ("edge/z", "diverged: non-finite loss"), ("edge/v", "interrupted before its first epoch finished")]
    assert ds.meta_features is None and ds.schedule_epochs == 4
