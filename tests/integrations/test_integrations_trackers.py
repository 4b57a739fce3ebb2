"""``--log-to tensorboard,mlflow``: a tiny real run read back with each tracker's own reader.

TensorBoard's ``EventAccumulator`` and MLflow's ``MlflowClient`` must see one
score per told epoch, the trials' configurations, the final metrics and (MLflow)
the exported ``best/`` folder; a resumed run continues the same MLflow run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hubtune.cli import app
from hubtune.core.errors import RunError
from hubtune.integrations.trackers import parse_log_to
from hubtune.search.journal import Journal, replay
from hubtune.tuner.hubtuner import HubTuner

pytest.importorskip("tensorboard", reason="needs tensorboard (pip install 'hubtune[tensorboard]')")
pytest.importorskip("mlflow", reason="needs mlflow (pip install 'hubtune[mlflow]')")


def _tuner(out: Path, budget: float) -> HubTuner:
    # the budget covers set-up too: on a busy 2-core machine importing the trackers and
    # creating the MLflow database take ~20 s of it
    return HubTuner(budget=budget, out=out, models=["test_resnet", "test_efficientnet"],
                    max_epochs=3, image_size=32, pretrained=False, num_threads=1,
                    log_to="tensorboard,mlflow")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    out = tmp_path_factory.mktemp("trackers") / "digits-run"
    result = _tuner(out, 40).fit("digits:200")
    return out, result


def _told(out: Path):
    return replay(Journal(out / "journal.jsonl")).results


def test_tensorboard_has_a_score_per_told_epoch_and_the_configs(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, result = run
    told = _told(out)
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    scores = acc.Scalars("search/score")
    assert len(scores) == sum(len(r.records) for r in told) > 0
    assert [s.step for s in scores] == list(range(1, len(scores) + 1))
    assert len(acc.Scalars("step/seconds")) == len(told)
    trial = told[0].trial_id
    assert [s.step for s in acc.Scalars(f"trial/{trial}/score")][0] == 1
    assert f"config/{trial}/text_summary" in acc.Tags()["tensors"]
    assert acc.Scalars("final_val_top1")[0].value == pytest.approx(result.metrics["val"]["top1"])
    assert (out / "tensorboard" / "hparams" / trial).is_dir()


def test_mlflow_run_has_history_params_and_best_artifacts(run):
    from mlflow.tracking import MlflowClient

    out, result = run
    told = _told(out)
    state = json.loads((out / "mlflow.json").read_text())
    assert state["tracking_uri"] == f"sqlite:///{out.resolve() / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=state["tracking_uri"])
    parent = client.get_run(state["run_id"])
    assert client.get_experiment(parent.info.experiment_id).name == out.name
    assert parent.info.status == "FINISHED"
    assert len(client.get_metric_history(parent.info.run_id, "score")) == \
        sum(len(r.records) for r in told)
    assert "test_resnet" in parent.data.params["models"]
    assert parent.data.metrics["final_val_top1"] == pytest.approx(result.metrics["val"]["top1"])
    for trial_id, run_id in state["trials"].items():
        child = client.get_run(run_id)
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.params["model"] in ("test_resnet", "test_efficientnet")
        epochs = [rec.epoch for r in told if r.trial_id == trial_id for rec in r.records]
        assert [m.step for m in client.get_metric_history(run_id, "score")] == epochs
    names = {a.path for a in client.list_artifacts(parent.info.run_id, "best")}
    assert "best/model.safetensors" in names and "best/metrics.json" in names
    assert (out / "mlflow-artifacts").is_dir()  # not ./mlruns in the working directory


def test_a_resumed_run_continues_the_same_mlflow_run(run):
    from mlflow.tracking import MlflowClient

    out, _ = run
    before = json.loads((out / "mlflow.json").read_text())
    # resumed through the CLI flag, budget extended: the search goes on
    res = CliRunner().invoke(app, [
        "run", "digits:200", "--out", str(out), "--budget", "55", "--models",
        "test_resnet,test_efficientnet", "--max-epochs", "3", "--image-size", "32",
        "--no-pretrained", "--threads", "1", "--log", "quiet", "--log-to", "tensorboard,mlflow"])
    assert res.exit_code == 0, res.output
    after = json.loads((out / "mlflow.json").read_text())
    assert after["run_id"] == before["run_id"]
    client = MlflowClient(tracking_uri=after["tracking_uri"])
    history = client.get_metric_history(after["run_id"], "score")
    told = _told(out)
    assert len(history) == sum(len(r.records) for r in told)
    assert sorted(m.step for m in history) == list(range(1, len(history) + 1))
    assert len(client.search_runs([client.get_run(after["run_id"]).info.experiment_id])) == \
        1 + len(after["trials"])


def test_unknown_tracker_is_a_one_line_error(tmp_path):
    with pytest.raises(RunError, match="unknown tracker 'wandb'; known: tensorboard, mlflow"):
        parse_log_to("tensorboard,wandb")
    res = CliRunner().invoke(app, ["run", "digits:50", "--out", str(tmp_path / "r"),
                                   "--models", "test_resnet", "--log-to", "wandb"])
    assert res.exit_code == 2 and "unknown tracker 'wandb'" in res.output
    assert not (tmp_path / "r").exists()


def test_missing_library_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(RunError, match=r"pip install 'hubtune\[mlflow\]'"):
        parse_log_to(["mlflow"])


class _BrokenTracker:
    """A tracker whose backend went away mid-run (every call raises)."""

    def log_result(self, *args):
        raise OSError("tracking server unreachable")

    log_final = close = log_result


def test_a_tracker_failing_mid_run_is_dropped_with_a_notice(tmp_path):
    from hubtune.core.records import EpochRecord
    from hubtune.integrations.trackers import LoggerSet, TensorBoardLogger
    from hubtune.protocol.steps import Step, StepResult
    from hubtune.search.loop import Incumbent
    from hubtune.space.config import Config

    notices = []
    tb = TensorBoardLogger(tmp_path)
    loggers = LoggerSet([_BrokenTracker(), tb], notice=notices.append)
    res = StepResult(Step("t1", Config(model="test_resnet"), 1), [EpochRecord(epoch=1, score=0.5)])
    inc = Incumbent()
    inc.update(res, 0.0)
    loggers.log_result(res, inc, [res])
    loggers.log_final({"val": {"top1": 0.5}}, None, [res])
    loggers.close()
    assert loggers.loggers == [tb] and len(notices) == 1
    assert "_BrokenTracker stopped logging (OSError: tracking server unreachable)" in notices[0]
