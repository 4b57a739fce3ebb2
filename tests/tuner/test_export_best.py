"""``best/`` is swapped in atomically, and a damaged trial checkpoint falls back to the next trial.

Real tiny searches (two timm test models, 24 px, random init, ``defaults``
optimizer: each model's default config to 2 epochs); a finished run resumed
with the same settings only re-finishes: it exports again when ``best/`` is not
the export it would write now (changed, missing, another trial, epoch or
ensemble size), which is what these tests exercise, and else keeps ``best/``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hubtune.cli import app
from hubtune.search.journal import Journal
from hubtune.tuner import bestdir
from hubtune.tuner.bestdir import load_best, publish_best, recover_best
from tests.helpers.run import copy_of_run, finished_run

SENTINEL = "old-export"


def run_args(data: Path, out: Path) -> list[str]:
    return ["run", str(data), "--out", str(out), "--budget", "120", "--hub", "test",
            "--models", "test_resnet,test_efficientnet", "--max-epochs", "2",
            "--image-size", "24", "--optimizer", "defaults", "--no-pretrained",
            "--threads", "1", "--log", "plain"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """(data folder, a finished run folder) shared by the tests (each copies the run)."""
    return finished_run(tmp_path_factory.mktemp("export-best"), run_args, per_class=16, size=24)


@pytest.fixture
def run(finished, tmp_path):
    return copy_of_run(finished, tmp_path)


def _mark_old(best: Path) -> dict[str, bytes]:
    """Tag the current export (metrics.json and preprocessing.json); returns its files."""
    for name in ("metrics.json", "preprocessing.json"):
        d = json.loads((best / name).read_text())
        d["sentinel"] = SENTINEL
        (best / name).write_text(json.dumps(d))
    return {p.name: p.read_bytes() for p in best.iterdir()}


def _assert_one_export(best: Path, old: dict[str, bytes]) -> str:
    """``best`` is exactly the old export or a complete new one; returns which."""
    load_best(best)  # complete and consistent
    files = {p.name: p.read_bytes() for p in best.iterdir()}
    if files == old:
        return "old"
    tagged = [n for n in ("metrics.json", "preprocessing.json") if SENTINEL in files[n].decode()]
    assert not tagged, f"best/ mixes the old export ({tagged}) with a new one"
    return "new"


def _leftovers(run: Path) -> list[str]:
    return sorted(p.name for p in run.iterdir() if p.name.startswith(".best"))


def test_interrupted_export_leaves_the_old_best_untouched(run, monkeypatch):
    # Killed while evaluating (after the weights were written): before the fix
    # best/ held the new weights and configs next to the old metrics.json.
    data, out = run
    old = _mark_old(out / "best")
    import hubtune.finetune.engine as engine

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "evaluate_checkpoint", interrupted)
    res = CliRunner().invoke(app, run_args(data, out))
    assert res.exit_code == 130, res.output
    assert _assert_one_export(out / "best", old) == "old"
    assert _leftovers(out) == []


class Killed(BaseException):
    """Stands for SIGKILL: nothing catches it."""


def _staged_copy(run: Path) -> Path:
    staged = bestdir.staging_dir(run / "best")
    for p in (run / "best").iterdir():
        shutil.copy2(p, staged / p.name)
    return staged


@pytest.mark.parametrize("stage", ["fsync", "move-old-aside", "move-new-in", "remove-old"])
def test_kill_at_each_swap_step_leaves_one_export(run, monkeypatch, stage):
    _, out = run
    staged = _staged_copy(out)  # the new export: the untagged files
    old = _mark_old(out / "best")
    real_replace, real_rmtree = os.replace, shutil.rmtree
    calls = {"replace": 0}

    def replace(src, dst):
        calls["replace"] += 1
        if (stage, calls["replace"]) in (("move-old-aside", 1), ("move-new-in", 2)):
            raise Killed
        return real_replace(src, dst)

    def rmtree(path, *a, **k):
        if stage == "remove-old" and Path(path).name.startswith(bestdir.ASIDE_PREFIX):
            raise Killed
        return real_rmtree(path, *a, **k)

    def fsync_tree(_folder):
        raise Killed

    monkeypatch.setattr(bestdir.os, "replace", replace)
    monkeypatch.setattr(bestdir.shutil, "rmtree", rmtree)
    if stage == "fsync":
        monkeypatch.setattr(bestdir, "fsync_tree", fsync_tree)
    with pytest.raises(Killed):
        publish_best(staged, out / "best")
    monkeypatch.undo()
    assert (out / "best").exists() == (stage != "move-new-in")
    recover_best(out)
    expected = "new" if stage == "remove-old" else "old"
    assert _assert_one_export(out / "best", old) == expected
    assert _leftovers(out) == []


def test_next_run_restores_best_moved_aside_by_a_kill(run, monkeypatch):
    data, out = run
    old = _mark_old(out / "best")
    os.replace(out / "best", out / f"{bestdir.ASIDE_PREFIX}999")  # killed between the renames
    (out / f"{bestdir.TMP_PREFIX}999").mkdir()  # and a half-written new export
    res = CliRunner().invoke(app, run_args(data, out))
    assert res.exit_code == 0, res.output
    assert _assert_one_export(out / "best", old) == "new"
    assert _leftovers(out) == []
    notes = [n for n in Journal(out / "journal.jsonl").events("note") if n["what"] == "best_recovered"]
    assert any("restored" in n["detail"] for n in notes)


# ----------------------------------------------------------- broken checkpoints
def _damage(trial_dir: Path, how: str) -> None:
    ckpt = trial_dir / "checkpoint.json"
    tensors = trial_dir / json.loads(ckpt.read_text())["tensors"]
    if how == "garbage-tensors":
        tensors.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad}")
    elif how == "bad-json":
        ckpt.write_text('{"format_version": ')
    elif how == "missing-tensors":
        tensors.unlink()


@pytest.mark.parametrize("how", ["garbage-tensors", "bad-json", "missing-tensors"])
def test_broken_top_checkpoint_falls_back_to_the_next_trial(run, how):
    data, out = run
    top = json.loads((out / "result.json").read_text())["metrics"]["trial_id"]
    _damage(out / "trials" / top, how)
    shutil.rmtree(out / "best")  # an intact best/ of the top trial would be kept as it is
    res = CliRunner().invoke(app, run_args(data, out))
    assert res.exit_code == 0, res.output
    assert f"checkpoint of trial {top} cannot be exported" in res.output
    notes = [n for n in Journal(out / "journal.jsonl").events("note")
             if n["what"] == "broken_checkpoint"]
    assert [n["trial_id"] for n in notes] == [top] and notes[0]["reason"]
    result = json.loads((out / "result.json").read_text())
    other = result["metrics"]["trial_id"]
    assert other != top
    assert json.loads((out / "best" / "hubtune.json").read_text())["trial_id"] == other
    load_best(out / "best")


def test_no_exportable_checkpoint_ends_with_a_message(run):
    data, out = run
    for trial in (out / "trials").iterdir():
        if (trial / "checkpoint.json").exists():
            _damage(trial, "garbage-tensors")
    shutil.rmtree(out / "best")  # an intact best/ would be kept as it is
    res = CliRunner().invoke(app, run_args(data, out))
    assert res.exit_code == 1, res.output  # no model exported: scripts must see it
    assert "Traceback" not in res.output
    assert "no trial checkpoint could be exported" in res.output
    assert "no model was exported" in res.output
    assert json.loads((out / "result.json").read_text())["best_dir"] is None


# ------------------------------------------------------- a finished run run again
def _files(best: Path) -> dict[str, bytes]:
    return {p.relative_to(best).as_posix(): p.read_bytes() for p in sorted(best.rglob("*"))
            if p.is_file()}


def test_best_is_complete_when_published_and_never_edited_after(run, monkeypatch):
    # Before the fix the chance-level fields were written into best/metrics.json
    # after best/ had been swapped in: a reader could see it without them.
    data, out = run
    shutil.rmtree(out / "best")  # so that the run exports again
    published: list[dict[str, bytes]] = []
    real_publish = bestdir.publish_best

    def spy(staged: Path, best: Path) -> None:
        published.append(_files(staged))
        real_publish(staged, best)

    import hubtune.tuner.export as export

    monkeypatch.setattr(export, "publish_best", spy)
    monkeypatch.setattr(bestdir, "publish_best", spy)
    res = CliRunner().invoke(app, run_args(data, out))
    assert res.exit_code == 0, res.output
    assert published and _files(out / "best") == published[-1]
    metrics = json.loads((out / "best" / "metrics.json").read_text())
    assert "near_chance" in metrics and "val" in metrics["chance_level"]


def test_finished_run_run_again_keeps_best_unless_the_export_would_differ(run):
    data, out = run
    best = out / "best"
    before = (best.stat().st_ino, {p.name: p.stat().st_mtime_ns for p in best.iterdir()})
    res = CliRunner().invoke(app, run_args(data, out))
    assert res.exit_code == 0, res.output
    assert "exported to" in res.output  # the summary is still shown
    assert (best.stat().st_ino, {p.name: p.stat().st_mtime_ns for p in best.iterdir()}) == before
    notes = [n for n in Journal(out / "journal.jsonl").events("note") if n["what"] == "exported"]
    assert notes[-1]["kept"] is True and notes[-2]["kept"] is False
    assert notes[-1]["fingerprint"] == notes[-2]["fingerprint"]
    # --ensemble may change on resume: the export must then be redone, with the ensemble
    res = CliRunner().invoke(app, [*run_args(data, out), "--ensemble", "2"])
    assert res.exit_code == 0, res.output
    assert (best / "ensemble.json").exists()
    assert "ensemble" in json.loads((best / "metrics.json").read_text())
    assert best.stat().st_ino != before[0]
