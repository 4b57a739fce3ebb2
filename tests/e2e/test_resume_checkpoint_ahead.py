"""A crash after a step's checkpoint was written but before its result reached the journal.

This window is wide with Ray workers: when the driver is killed, a worker may
finish its epoch and save the checkpoint before it notices. The resumed run then
redoes a step whose epochs the checkpoint already holds. The trainer must hand
back those epochs (from the checkpoint's records) so the optimizer is told each
epoch exactly once; before the fix it returned no epochs, and an optimizer that
asks for the same step again (``defaults``) looped forever.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from hubtune.finetune import TrainerEvaluator
from hubtune.protocol.steps import Step
from hubtune.search.journal import Journal, replay
from hubtune.space.config import Config
from hubtune.tuner.hubtuner import HubTuner, _ContinuationGuard
from tests.helpers.run import make_folder

ARGS = ["--budget", "600", "--hub", "test", "--models", "test_resnet", "--max-epochs", "4",
        "--image-size", "24", "--optimizer", "defaults", "--no-pretrained", "--threads", "1"]


def test_redo_of_a_step_the_checkpoint_already_holds_reports_its_epochs(tmp_path):
    data = make_folder(tmp_path / "data", per_class=20, size=24)
    out = tmp_path / "run"
    saved: dict[str, object] = {}

    def hook(event: str, payload: dict) -> None:
        if event == "step" and payload["step"].to_epoch == 2:
            # the state a crash leaves right after the step was asked for
            saved["journal"] = (out / "journal.jsonl").read_bytes()
            saved["snapshot"] = (out / "optimizer_state.json").read_bytes()
        if event == "result" and payload["result"].step.to_epoch == 2:
            # ... and the trial's checkpoint once that step had trained its epoch
            tid = payload["result"].trial_id
            saved["trial"] = tid
            shutil.copytree(out / "trials" / tid, tmp_path / "ckpt-at-2")

    HubTuner(budget=600, out=out, models=["test_resnet"], max_epochs=4, image_size=24,
             optimizer="defaults", pretrained=False, num_threads=1, on_event=hook).fit(str(data))
    first = {rec.epoch: rec.score for r in replay(Journal(out / "journal.jsonl")).results
             for rec in r.records}
    assert sorted(first) == [1, 2, 3, 4]

    # Crash emulated: journal and snapshot from before the result, checkpoint after it.
    (out / "journal.jsonl").write_bytes(saved["journal"])
    (out / "optimizer_state.json").write_bytes(saved["snapshot"])
    shutil.rmtree(out / "trials" / saved["trial"])
    shutil.copytree(tmp_path / "ckpt-at-2", out / "trials" / saved["trial"])
    before = replay(Journal(out / "journal.jsonl"))
    assert [s.to_epoch for s in before.interrupted] == [2]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "hubtune.cli", "run", str(data), "--out", str(out),
                          *ARGS, "--log", "json"], env=env, capture_output=True, text=True,
                         timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    after = replay(Journal(out / "journal.jsonl"))
    assert after.ended and not after.interrupted
    told = [rec.epoch for r in after.results for rec in r.records]
    assert told == [1, 2, 3, 4]  # each epoch once, in order
    redone = [r for r in after.results if r.step.to_epoch == 2]
    assert len(redone) == 1 and [rec.epoch for rec in redone[0].records] == [2]
    # the redone step reports the epoch the checkpoint holds, not a retrained one
    assert redone[0].records[0].score == first[2]
    result = json.loads((out / "result.json").read_text())
    assert result["metrics"]["epoch"] == 4


def test_trainer_returns_held_epochs_and_guard_passes_only_new_ones(tmp_path):
    data_dir = make_folder(tmp_path / "data", per_class=10, size=24)
    from hubtune.data import load_dataset

    ds = load_dataset(str(data_dir), image_size=24, seed=0)
    trainer = TrainerEvaluator(ds, tmp_path / "trials", max_epochs=3, num_threads=1,
                               pretrained=False)
    cfg = Config(model="test_resnet")
    first = trainer.advance(Step("t", cfg, 2))
    assert [r.epoch for r in first.records] == [1, 2]
    # asking again for epochs the checkpoint holds trains nothing and returns them
    again = trainer.advance(Step("t", cfg, 2))
    assert [r.epoch for r in again.records] == [1, 2] and again.status == "ok"
    assert [r.score for r in again.records] == [r.score for r in first.records]
    only_first = trainer.advance(Step("t", cfg, 1))
    assert [r.epoch for r in only_first.records] == [1]

    guard = _ContinuationGuard(trainer)
    guard.observe(first)
    # everything already told: the guard turns "no new epoch" into a failure, never a silent no-op
    stuck = guard.advance(Step("t", cfg, 2))
    assert stuck.records == [] and stuck.status == "failed" and "no new epoch" in stuck.reason
    nxt = guard.advance(Step("t", cfg, 3))
    assert [r.epoch for r in nxt.records] == [3] and nxt.status == "ended"
