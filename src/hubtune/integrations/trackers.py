"""Experiment trackers for a search run: ``hubtune run --log-to tensorboard,mlflow``.

Each told step is logged as it arrives: the score of each of its epochs (global
step = the run's cumulative count of told epochs), the epoch's other validation
metrics and losses, the step's seconds (step index as global step), the
incumbent, and the trial's configuration. At the end the exported model's
final metrics are logged, and (MLflow) the ``best/`` folder as artifacts.

- ``tensorboard``: event files in ``RUN/tensorboard/`` (``tensorboard --logdir RUN/tensorboard``);
  per-trial curves under ``trial/<id>``, and at the end one HParams entry per trial
  (its configuration and best score) under ``RUN/tensorboard/hparams/<id>``.
- ``mlflow``: one MLflow run per search (experiment named after the run folder) with a
  nested child run per trial (params: the trial's configuration, ``model`` included;
  metric ``score`` per epoch). Tracking URI: ``$MLFLOW_TRACKING_URI`` if set, else
  ``sqlite:///RUN/mlflow.db`` with artifacts in ``RUN/mlflow-artifacts/``. The run ids
  are kept in ``RUN/mlflow.json``, so a resumed search continues the same MLflow run.

Example::

    loggers = make_loggers(["tensorboard"], out=Path("runs/x"), settings={"data": "digits"})
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from hubtune.core.errors import RunError
from hubtune.protocol.steps import StepResult
from hubtune.search.loop import Incumbent

TRACKERS: dict[str, tuple[str, str]] = {
    # name -> (module that must be importable, the hubtune extra that installs it)
    "tensorboard": ("tensorboard", "tensorboard"),
    "mlflow": ("mlflow", "mlflow"),
}


class RunLogger(Protocol):
    """What the tuner calls: once per told step, once at the end, then ``close``."""

    def log_result(self, result: StepResult, incumbent: Incumbent, index: int,
                   epochs_before: int) -> None:
        """Log ``result``, the ``index``-th told step; ``epochs_before`` epochs were told before it."""
        ...

    def log_final(self, metrics: dict[str, Any], best_dir: Path | None,
                  results: Sequence[StepResult]) -> None:
        """Log the exported model's ``metrics`` and ``best_dir`` (None: nothing exported)."""
        ...

    def close(self) -> None:
        """Flush and release the tracker."""
        ...


def parse_log_to(value: str | Iterable[str] | None) -> list[str]:
    """Tracker names from ``"tensorboard,mlflow"`` or a list; checks each is known and installed.

    Raises:
        RunError: an unknown name, or a tracker whose library is missing (the message
            names the extra to install).
    """
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    names = list(dict.fromkeys(str(n).strip().lower() for n in items if str(n).strip()))
    for name in names:
        if name not in TRACKERS:
            raise RunError(f"--log-to: unknown tracker {name!r}; known: {', '.join(TRACKERS)}")
        module, extra = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise RunError(f"--log-to {name} needs the {module} package: "
                           f"pip install 'hubtune[{extra}]'")
    return names


def make_loggers(names: Sequence[str], out: Path, settings: dict[str, Any]) -> list[RunLogger]:
    """Open one logger per tracker name (see :func:`parse_log_to`) for the run folder ``out``."""
    loggers: list[RunLogger] = []
    for name in parse_log_to(list(names)):
        try:
            if name == "tensorboard":
                loggers.append(TensorBoardLogger(out))
            else:
                loggers.append(MLflowLogger(out, settings))
        except Exception as exc:  # noqa: BLE001 - e.g. an unreachable tracking server
            for opened in loggers:
                opened.close()
            raise RunError(f"--log-to {name}: cannot open the tracker "
                           f"({type(exc).__name__}: {str(exc)[:200]})") from None
    return loggers


class LoggerSet:
    """Fans each call out to several loggers; a logger that raises is reported and dropped.

    A tracker that breaks mid-run (a full disk, a tracking server gone) must not end
    the search: ``notice(message)`` is told once and the other loggers go on.
    """

    def __init__(self, loggers: Sequence[RunLogger], notice: Any = None) -> None:
        self.loggers = list(loggers)
        self.notice = notice or (lambda _m: None)

    def _each(self, what: str, *args: Any) -> None:
        for logger in list(self.loggers):
            try:
                getattr(logger, what)(*args)
            except Exception as exc:  # noqa: BLE001 - any tracker failure
                self.loggers.remove(logger)
                self.notice(f"--log-to: {type(logger).__name__} stopped logging "
                            f"({type(exc).__name__}: {str(exc)[:200]})")

    def log_result(self, result: StepResult, incumbent: Incumbent,
                   results: Sequence[StepResult]) -> None:
        """Log ``result``, the last of the told ``results``."""
        before = sum(len(r.records) for r in results[:-1])
        self._each("log_result", result, incumbent, len(results) - 1, before)

    def log_final(self, metrics: dict[str, Any], best_dir: Path | None,
                  results: Sequence[StepResult]) -> None:
        self._each("log_final", metrics, best_dir, results)

    def close(self) -> None:
        self._each("close")


def _epoch_metrics(rec: Any) -> dict[str, float]:
    """The finite numbers of one epoch record worth a curve."""
    values: dict[str, Any] = {"score": rec.score, "epoch_seconds": rec.seconds,
                              "train_loss": rec.train_loss, "val_loss": rec.val_loss}
    for key, v in (rec.val_metrics or {}).items():
        values[f"val_{key}"] = v
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _flat_numbers(metrics: dict[str, Any], prefix: str = "final") -> dict[str, float]:
    """``{"val": {"top1": 0.9}}`` -> ``{"final_val_top1": 0.9}`` (finite numbers only)."""
    flat: dict[str, float] = {}
    for key, v in metrics.items():
        name = f"{prefix}_{key}"
        if isinstance(v, dict):
            flat.update(_flat_numbers(v, name))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            flat[name] = float(v)
    return flat


def _param_value(v: Any) -> str | int | float | bool:
    return v if isinstance(v, (int, float, bool, str)) else json.dumps(v)


class TensorBoardLogger:
    """Writes the run's curves into ``out/tensorboard`` (a resumed run appends a new event file)."""

    def __init__(self, out: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.dir = Path(out) / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.dir))
        self._described: set[str] = set()

    def log_result(self, result: StepResult, incumbent: Incumbent, index: int,
                   epochs_before: int) -> None:
        w, tid = self.writer, result.trial_id
        if tid not in self._described:
            self._described.add(tid)
            w.add_text(f"config/{tid}", "```\n" + result.step.config.to_json() + "\n```",
                       global_step=index)
        for i, rec in enumerate(result.records, start=1):
            for key, v in _epoch_metrics(rec).items():
                w.add_scalar(f"search/{key}", v, epochs_before + i)
                w.add_scalar(f"trial/{tid}/{key}", v, rec.epoch)
            if math.isfinite(incumbent.score):
                w.add_scalar("search/incumbent", incumbent.score, epochs_before + i)
        w.add_scalar("step/seconds", result.seconds, index)
        w.add_scalar("step/to_epoch", result.step.to_epoch, index)
        w.add_scalar("step/failed", float(result.status == "failed"), index)
        w.flush()

    def log_final(self, metrics: dict[str, Any], best_dir: Path | None,
                  results: Sequence[StepResult]) -> None:
        for key, v in _flat_numbers(metrics).items():
            self.writer.add_scalar(key, v, 0)
        best: dict[str, float] = {}
        configs: dict[str, dict[str, Any]] = {}
        for r in results:
            configs[r.trial_id] = r.step.config.to_dict()
            for rec in r.records:
                if math.isfinite(rec.score):
                    best[r.trial_id] = max(best.get(r.trial_id, -math.inf), rec.score)
        for tid, score in best.items():
            hparams = {k: _param_value(v) for k, v in configs[tid].items()}
            self.writer.add_hparams(hparams, {"hparam/best_score": score},
                                    run_name=f"hparams/{tid}")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MLflowLogger:
    """One MLflow run per search, a nested child run per trial; continues across resumes."""

    STATE = "mlflow.json"

    def __init__(self, out: Path, settings: dict[str, Any]) -> None:
        from mlflow.tracking import MlflowClient

        self.out = Path(out).resolve()
        default = f"sqlite:///{self.out / 'mlflow.db'}"
        self.uri = os.environ.get("MLFLOW_TRACKING_URI") or default
        self.client = MlflowClient(tracking_uri=self.uri)
        state = self._load_state()
        if state is not None:
            self.experiment_id, self.run_id = state["experiment_id"], state["run_id"]
            self.trials: dict[str, str] = dict(state.get("trials", {}))
            self.client.update_run(self.run_id, status="RUNNING")
            return
        name = self.out.name
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            self.experiment_id = exp.experiment_id
        else:
            where = (self.out / "mlflow-artifacts").as_uri() if self.uri == default else None
            self.experiment_id = self.client.create_experiment(name, artifact_location=where)
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={"hubtune.run_folder": str(self.out)})
        self.run_id, self.trials = run.info.run_id, {}
        from mlflow.entities import Param

        params = [Param(k, str(_param_value(v))[:6000]) for k, v in settings.items()]
        self.client.log_batch(self.run_id, params=params)
        self._save_state()

    def _load_state(self) -> dict[str, Any] | None:
        """The stored run ids, if they belong to this tracking URI and the run still exists."""
        path = self.out / self.STATE
        try:
            state = json.loads(path.read_text())
            if state.get("tracking_uri") != self.uri:
                return None
            self.client.get_run(state["run_id"])
        except Exception:  # noqa: BLE001 - missing/damaged file or a run the store lost
            return None
        return state

    def _save_state(self) -> None:
        from hubtune.core.atomic import write_json_atomic

        write_json_atomic(self.out / self.STATE, {
            "tracking_uri": self.uri, "experiment_id": self.experiment_id,
            "run_id": self.run_id, "trials": self.trials})

    def _trial_run(self, result: StepResult) -> str:
        from mlflow.entities import Param

        tid = result.trial_id
        if tid not in self.trials:
            run = self.client.create_run(self.experiment_id, run_name=tid, tags={
                "mlflow.parentRunId": self.run_id, "hubtune.trial_id": tid})
            self.trials[tid] = run.info.run_id
            cfg = result.step.config.to_dict()
            self.client.log_batch(run.info.run_id, params=[
                Param(k, str(_param_value(v))[:6000]) for k, v in cfg.items()])
            self._save_state()
        return self.trials[tid]

    def log_result(self, result: StepResult, incumbent: Incumbent, index: int,
                   epochs_before: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        child = self._trial_run(result)
        own: list[Metric] = []
        search: list[Metric] = [Metric("step_seconds", float(result.seconds), now, index)]
        for i, rec in enumerate(result.records, start=1):
            for key, v in _epoch_metrics(rec).items():
                own.append(Metric(key, v, now, rec.epoch))
                search.append(Metric(key, v, now, epochs_before + i))
            if math.isfinite(incumbent.score):
                search.append(Metric("incumbent", incumbent.score, now, epochs_before + i))
        self.client.log_batch(child, metrics=own)
        self.client.log_batch(self.run_id, metrics=search)
        self.client.set_tag(child, "status", result.status)
        if incumbent.trial_id is not None:
            self.client.set_tag(self.run_id, "incumbent_trial", incumbent.trial_id)

    def log_final(self, metrics: dict[str, Any], best_dir: Path | None,
                  results: Sequence[StepResult]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        finals = [Metric(k, v, now, 0) for k, v in _flat_numbers(metrics).items()]
        if finals:
            self.client.log_batch(self.run_id, metrics=finals)
        if metrics.get("model"):
            self.client.set_tag(self.run_id, "best_model", str(metrics["model"]))
        if best_dir is not None and Path(best_dir).is_dir():
            self.client.log_artifacts(self.run_id, str(best_dir), artifact_path="best")
        for child in self.trials.values():
            self.client.set_terminated(child, status="FINISHED")
        self.client.set_terminated(self.run_id, status="FINISHED")

    def close(self) -> None:
        """Nothing to release (every call above is written through)."""
