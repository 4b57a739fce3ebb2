"""Tune your own training function on Ray Tune with hubtune's ``quicktune`` (freeze-thaw).

Two Ray Tune plug-ins share one hubtune optimizer:

- :class:`QuickTuneSearcher` (a ``ray.tune.search.Searcher``) creates a Ray trial for
  every new configuration the optimizer asks for. The configurations come from
  hubtune's finetuning space over the hub models you list (the surrogate is
  meta-learned on it): ``config["model"]``, ``config["lr"]``, ``config["batch_size"]``,
  ``config["opt"]``, ... plus ``config["max_epochs"]`` (what schedules should span).
- :class:`FreezeThawScheduler` (a ``ray.tune.schedulers.TrialScheduler``) lets a trial
  train up to the epoch the optimizer asked for, then PAUSEs it (Ray keeps its last
  reported checkpoint); when the optimizer later asks to continue that trial, the
  scheduler resumes it and Ray restores the checkpoint: the trial's epochs go on
  where they stopped.

Your trainable reports the metric and the epoch after every epoch, with a checkpoint
(without one a resumed trial would start over; epochs it already reported are then
ignored)::

    def train(config):
        start = 0
        if (ckpt := tune.get_checkpoint()) is not None:
            start = ...  # load the model and the epoch from ckpt
        for epoch in range(start + 1, config["max_epochs"] + 1):
            ...  # train one epoch with config["lr"], config["batch_size"], ...
            tune.report({"val_acc": acc, "epoch": epoch}, checkpoint=...)

    searcher = QuickTuneSearcher(models=["resnet18", "mobilenetv3_large_100"],
                                 max_epochs=10, dataset={"n_images": 5000, "n_classes": 10},
                                 metric="val_acc", mode="max", max_steps=30)
    tuner = tune.Tuner(train, tune_config=tune.TuneConfig(
        search_alg=searcher, scheduler=FreezeThawScheduler(searcher), num_samples=-1))

The metric must be a validation score in [0, 1] (``mode="max"``: accuracy-like;
``mode="min"``: an error rate, told to the optimizer as ``1 - value``). See
``docs/integrations.md``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

try:
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import Searcher
except ImportError as exc:  # pragma: no cover - exercised only without ray
    raise ImportError("hubtune.integrations.ray_tune needs Ray Tune: "
                      "pip install 'hubtune[ray]'") from exc

from hubtune.core.atomic import write_json_atomic
from hubtune.core.errors import RunError
from hubtune.core.metafeatures import DatasetMetaFeatures
from hubtune.core.records import EpochRecord
from hubtune.protocol.codec import result_from_dict, result_to_dict, step_from_dict, step_to_dict
from hubtune.protocol.steps import Step, StepResult

STATE_KIND = "hubtune.ray_tune.QuickTuneSearcher"
STATE_VERSION = 1


def _meta_features(dataset: Mapping[str, Any] | DatasetMetaFeatures) -> DatasetMetaFeatures:
    """The dataset description the surrogate conditions on (sizes and image shape)."""
    if isinstance(dataset, DatasetMetaFeatures):
        return dataset
    unknown = set(dataset) - {"n_images", "n_classes", "mean_resolution", "channels"}
    if unknown or "n_images" not in dataset or "n_classes" not in dataset:
        raise RunError("dataset must give n_images and n_classes (and optionally "
                       f"mean_resolution, channels); got {sorted(dataset)}")
    return DatasetMetaFeatures(n_images=int(dataset["n_images"]),
                               n_classes=int(dataset["n_classes"]),
                               mean_resolution=float(dataset.get("mean_resolution", 224.0)),
                               channels=int(dataset.get("channels", 3)))


def build_optimizer(models: Sequence[str], max_epochs: int,
                    dataset: Mapping[str, Any] | DatasetMetaFeatures, *,
                    optimizer: str = "quicktune", space: dict[str, Any] | None = None,
                    seed: int = 0, budget: float | None = None,
                    surrogate: str | Path | None = None,
                    options: Mapping[str, Any] | None = None) -> Any:
    """A hubtune optimizer (``optimizer``: a registered method) over ``models``' finetuning space.

    ``options`` are passed to the method's factory on top of its registered ones (for
    ``quicktune``: :class:`~hubtune.optim.quicktune.QuickTuneSettings` fields, e.g.
    ``{"pool_size": 16}``).
    """
    from hubtune.hub import get_descriptor
    from hubtune.optim.registry import get_method
    from hubtune.protocol.context import TaskContext
    from hubtune.space import SearchSpace
    from hubtune.surrogate.cache import default_surrogate_dir

    models = list(dict.fromkeys(models))
    if not models:
        raise RunError("models must name at least one hub model")
    ctx = TaskContext(
        max_epochs=int(max_epochs), seed=seed,
        space=SearchSpace.from_dict(space or {}, models=models, schedule_epochs=int(max_epochs)),
        meta_features=_meta_features(dataset), budget=budget,
        descriptors={m: get_descriptor(m) for m in models},
        surrogate_dir=str(surrogate or default_surrogate_dir(models)),
    )
    spec = get_method(optimizer)
    return spec.load()(ctx, **{**dict(spec.options), **dict(options or {})})


class QuickTuneSearcher(Searcher):
    """A Ray Tune searcher driven by a hubtune optimizer; pair it with :class:`FreezeThawScheduler`.

    Args:
        models: hub model names (``hubtune hub list``); the configurations are drawn
            from hubtune's finetuning space over them (``space`` restricts it, as
            ``hubtune run --space`` does).
        max_epochs: the most epochs a trial may reach.
        dataset: ``{"n_images", "n_classes", "mean_resolution", "channels"}`` of your
            training data (the surrogate's meta-features).
        metric, mode: the reported validation score in [0, 1] and its direction.
        epoch_key: the reported key holding the epoch just finished (default
            ``"epoch"``; Ray's ``training_iteration`` when absent).
        optimizer: a registered hubtune method (``hubtune bench --list-methods``).
        max_steps: stop after this many freeze-thaw steps (None: no limit).
        budget_s: seconds for the whole search, counted from the first trial; the
            optimizer does not start steps it predicts cannot finish in time.
        max_concurrent: steps (trials training) at once.
        seed: the optimizer's seed.
        surrogate: a ``hubtune metatrain`` folder instead of the shipped surrogate.
        optimizer_options: extra options of the method (see :func:`build_optimizer`).

    Its state is JSON (:meth:`get_state`): Ray Tune saves it with every experiment
    checkpoint (:meth:`save`, called by ``Tuner.fit``) and ``Tuner.restore`` loads
    it back (:meth:`restore`), so a restored experiment continues with the
    optimizer's state, the trials it paused and the steps in progress. Pickling
    the searcher (Ray does, for ``tuner.pkl``) also stores only the constructor's
    arguments and that JSON state; the optimizer is rebuilt from them.
    """

    def __init__(self, models: Sequence[str], max_epochs: int,
                 dataset: Mapping[str, Any] | DatasetMetaFeatures, *,
                 metric: str = "val_acc", mode: str = "max", epoch_key: str = "epoch",
                 optimizer: str = "quicktune", space: dict[str, Any] | None = None,
                 max_steps: int | None = None, budget_s: float | None = None,
                 max_concurrent: int = 1, seed: int = 0,
                 surrogate: str | Path | None = None,
                 optimizer_options: Mapping[str, Any] | None = None) -> None:
        if mode not in ("max", "min"):
            raise RunError(f"mode must be 'max' or 'min', got {mode!r}")
        if max_concurrent < 1:
            raise RunError(f"max_concurrent must be >= 1, got {max_concurrent}")
        super().__init__(metric=metric, mode=mode)
        self._init_args: dict[str, Any] = {
            "models": list(models), "max_epochs": int(max_epochs),
            "dataset": (dataset.to_dict() if isinstance(dataset, DatasetMetaFeatures)
                        else dict(dataset)),
            "metric": metric, "mode": mode, "epoch_key": epoch_key, "optimizer": optimizer,
            "space": space, "max_steps": max_steps, "budget_s": budget_s,
            "max_concurrent": max_concurrent, "seed": seed,
            "surrogate": None if surrogate is None else str(surrogate),
            "optimizer_options": None if optimizer_options is None else dict(optimizer_options),
        }
        self.max_epochs = int(max_epochs)
        self.epoch_key = epoch_key
        self.max_steps, self.budget_s, self.max_concurrent = max_steps, budget_s, max_concurrent
        self.optimizer = build_optimizer(models, max_epochs, dataset, optimizer=optimizer,
                                         space=space, seed=seed, budget=budget_s,
                                         surrogate=surrogate, options=optimizer_options)
        self.results: list[StepResult] = []
        """Every step told to the optimizer, in order."""
        self.ray_of: dict[str, str] = {}  # hubtune trial id -> Ray trial id
        self.hub_of: dict[str, str] = {}  # Ray trial id -> hubtune trial id
        self.steps: dict[str, Step] = {}  # hubtune trial id -> its step in progress
        self.records: dict[str, list[EpochRecord]] = {}
        self.seen: dict[str, int] = {}  # hubtune trial id -> last epoch told
        self.new: list[Step] = []  # asked steps of trials that have no Ray trial yet
        self.resume: list[str] = []  # paused hubtune trials the optimizer wants continued
        self.exhausted = False
        self.asked = 0
        self.paused_at: dict[str, list[int]] = {}  # Ray trial id -> epochs it was paused at
        self.resumed: dict[str, int] = {}  # Ray trial id -> times it was resumed
        self._t0: float | None = None

    # -------------------------------------------------------------- asking
    def budget_left(self) -> float | None:
        """Seconds left of ``budget_s`` (None without a budget)."""
        if self.budget_s is None:
            return None
        used = 0.0 if self._t0 is None else time.monotonic() - self._t0
        return max(0.0, self.budget_s - used)

    def ask_more(self) -> None:
        """Fill free slots with the optimizer's next steps (new trials or resumes)."""
        if self._t0 is None:
            self._t0 = time.monotonic()
        while not self.exhausted and len(self.steps) < self.max_concurrent:
            left = self.budget_left()
            if (self.max_steps is not None and self.asked >= self.max_steps) or left == 0.0:
                self.exhausted = True
                break
            step = self.optimizer.ask(budget_left=left)
            if step is None:
                self.exhausted = not self.steps  # more may come once running steps report
                break
            self.asked += 1
            self.steps[step.trial_id] = step
            self.records[step.trial_id] = []
            (self.resume.append(step.trial_id) if step.trial_id in self.ray_of
             else self.new.append(step))

    def finished(self) -> bool:
        """Nothing is running and the optimizer will not ask for more."""
        return self.exhausted and not self.steps

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        """Ray asks for a new trial: the config of the next new hubtune trial, if one is wanted."""
        self.ask_more()
        if self.new:
            step = self.new.pop(0)
            self.ray_of[step.trial_id], self.hub_of[trial_id] = trial_id, step.trial_id
            return {**step.config.to_dict(), "max_epochs": self.max_epochs,
                    "hubtune_trial_id": step.trial_id}
        return Searcher.FINISHED if self.finished() else None

    def set_search_properties(self, metric: str | None, mode: str | None,
                              config: dict[str, Any], **spec: Any) -> bool:
        """Accept Tune's metric/mode where this searcher has none; the space is hubtune's."""
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    # ------------------------------------------------------------- telling
    def _score(self, result: Mapping[str, Any]) -> float:
        value = float(result[self.metric])
        return 1.0 - value if self.mode == "min" else value

    def observe(self, ray_trial_id: str, result: Mapping[str, Any]) -> str:
        """Record one reported epoch; the decision: ``"continue"``, ``"pause"`` or ``"stop"``."""
        tid = self.hub_of.get(ray_trial_id)
        if tid is None or tid not in self.steps or self.metric not in result:
            return "continue"
        epoch = int(result.get(self.epoch_key, result.get("training_iteration", 0)))
        if epoch <= self.seen.get(tid, 0):
            return "continue"  # restarted without a checkpoint: already told
        score = self._score(result)
        self.records[tid].append(EpochRecord(epoch=epoch, score=score,
                                             train_seconds=float(result.get("time_this_iter_s", 0.0))))
        self.seen[tid] = epoch
        if not math.isfinite(score):
            self._tell(tid, "diverged", "the reported metric is not finite")
            return "stop"
        if epoch < self.steps[tid].to_epoch:
            return "continue"
        self._tell(tid, "ok")
        if epoch >= self.max_epochs:
            return "stop"
        self.ask_more()
        if tid in self.resume:  # the optimizer goes on with this very trial: no pause
            self.resume.remove(tid)
            return "continue"
        return "pause"

    def _tell(self, tid: str, status: str, reason: str | None = None) -> None:
        step, records = self.steps.pop(tid), self.records.pop(tid, [])
        result = StepResult(step, records, status=status, reason=reason,  # type: ignore[arg-type]
                            seconds=sum(r.seconds for r in records))
        self.results.append(result)
        self.optimizer.tell(result)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Results are handled by :class:`FreezeThawScheduler` (which decides the pauses)."""

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        """A trial ended (its function returned, or raised): tell its step as ended/failed."""
        tid = self.hub_of.get(trial_id)
        if tid is not None and tid in self.steps:
            self._tell(tid, "failed" if error else "ended",
                       "the trainable raised" if error else None)
        if tid in self.resume:
            self.resume.remove(tid)
        self.ask_more()

    # --------------------------------------------------------------- state
    def get_state(self) -> dict[str, Any]:
        """The searcher's whole state as JSON-serialisable data: the optimizer's own
        ``state_dict()``, every told step, the steps in progress with the epochs
        reported so far, the Ray <-> hubtune trial ids, the pause/resume wishes and
        the seconds of ``budget_s`` used."""
        used = 0.0 if self._t0 is None else time.monotonic() - self._t0
        return {
            "kind": STATE_KIND, "version": STATE_VERSION,
            "metric": self._metric, "mode": self._mode, "max_epochs": self.max_epochs,
            "optimizer": self.optimizer.state_dict(),
            "results": [result_to_dict(r) for r in self.results],
            "ray_of": dict(self.ray_of), "hub_of": dict(self.hub_of),
            "steps": [step_to_dict(st) for st in self.steps.values()],
            "records": {tid: [r.to_dict() for r in recs] for tid, recs in self.records.items()},
            "seen": dict(self.seen), "new": [step_to_dict(st) for st in self.new],
            "resume": list(self.resume), "exhausted": self.exhausted, "asked": self.asked,
            "paused_at": {k: list(v) for k, v in self.paused_at.items()},
            "resumed": dict(self.resumed),
            "elapsed_s": used if self._t0 is not None else None,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`get_state` output (of a searcher built with the same arguments)."""
        if not isinstance(state, Mapping) or state.get("kind") != STATE_KIND:
            raise RunError("not a saved QuickTuneSearcher state")
        if int(state.get("version", 0)) > STATE_VERSION:
            raise RunError(f"searcher state version {state.get('version')} is newer than this "
                           f"hubtune understands ({STATE_VERSION})")
        if int(state["max_epochs"]) != self.max_epochs:
            raise RunError(f"the saved searcher state is for max_epochs={state['max_epochs']}, "
                           f"this searcher has max_epochs={self.max_epochs}")
        self._metric = state.get("metric") or self._metric
        self._mode = state.get("mode") or self._mode
        self.optimizer.load_state_dict(state["optimizer"])
        self.results = [result_from_dict(r) for r in state["results"]]
        self.ray_of = {str(k): str(v) for k, v in state["ray_of"].items()}
        self.hub_of = {str(k): str(v) for k, v in state["hub_of"].items()}
        steps = [step_from_dict(st) for st in state["steps"]]
        self.steps = {st.trial_id: st for st in steps}
        self.records = {tid: [EpochRecord.from_dict(r) for r in recs]
                        for tid, recs in state["records"].items()}
        self.seen = {str(k): int(v) for k, v in state["seen"].items()}
        self.new = [step_from_dict(st) for st in state["new"]]
        self.resume = [str(t) for t in state["resume"]]
        self.exhausted, self.asked = bool(state["exhausted"]), int(state["asked"])
        self.paused_at = {k: [int(e) for e in v] for k, v in state.get("paused_at", {}).items()}
        self.resumed = {k: int(v) for k, v in state.get("resumed", {}).items()}
        used = state.get("elapsed_s")
        self._t0 = None if used is None else time.monotonic() - float(used)

    def save(self, checkpoint_path: str) -> None:
        """Write :meth:`get_state` as JSON to ``checkpoint_path`` (Ray Tune calls this with
        every experiment checkpoint; the file name Ray picks ends in ``.pkl``, its content
        is JSON)."""
        write_json_atomic(checkpoint_path, self.get_state())

    def restore(self, checkpoint_path: str) -> None:
        """Load a state written by :meth:`save` (``Tuner.restore`` calls this)."""
        try:
            state = json.loads(Path(checkpoint_path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise RunError(f"cannot read the searcher state {checkpoint_path}: {exc}") from None
        self.set_state(state)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as constructor arguments + JSON state (no optimizer object)."""
        return (_rebuild_searcher, (type(self), self._init_args, self.get_state()))

    # -------------------------------------------------------------- result
    def best(self) -> tuple[dict[str, Any] | None, float, int]:
        """The best configuration told so far, its score (as told) and the epoch it was reached."""
        best: tuple[dict[str, Any] | None, float, int] = (None, -math.inf, 0)
        for r in self.results:
            for rec in r.records:
                if math.isfinite(rec.score) and rec.score > best[1]:
                    best = (r.step.config.to_dict(), rec.score, rec.epoch)
        return best


class FreezeThawScheduler(TrialScheduler):
    """Pauses each trial at the epoch ``searcher``'s optimizer asked for; resumes the one it asks next."""

    def __init__(self, searcher: QuickTuneSearcher) -> None:
        super().__init__()
        self.searcher = searcher

    @property
    def paused_at(self) -> dict[str, list[int]]:
        """Ray trial id -> the epochs it was paused at (kept in the searcher's saved state)."""
        return self.searcher.paused_at

    @property
    def resumed(self) -> dict[str, int]:
        """Ray trial id -> times it was resumed (kept in the searcher's saved state)."""
        return self.searcher.resumed

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        """A new trial: nothing to do (the searcher knows it already). A trial that
        ``Tuner.restore`` brings back: Ray re-queues every unfinished trial as PENDING
        (and starts every PENDING trial); one that the optimizer had paused is kept
        PAUSED here, so it waits for the optimizer to continue it, as before."""
        s = self.searcher
        tid = s.hub_of.get(trial.trial_id)
        if trial.status == Trial.PENDING and tid is not None and (
                tid not in s.steps or tid in s.resume):
            trial.set_status(Trial.PAUSED)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        decision = self.searcher.observe(trial.trial_id, result)
        if decision == "pause":
            tid = self.searcher.hub_of[trial.trial_id]
            self.paused_at.setdefault(trial.trial_id, []).append(self.searcher.seen[tid])
            return TrialScheduler.PAUSE
        return TrialScheduler.STOP if decision == "stop" else TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        """The searcher hears of it through its own ``on_trial_complete``."""

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        """The searcher hears of it through its own ``on_trial_complete``."""

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        """Nothing to release."""

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        """A new (PENDING) trial first, else the paused trial the optimizer wants continued.

        Once the search is over, paused trials are stopped (Ray would wait on them).
        """
        s = self.searcher
        trials = tune_controller.get_trials()
        for trial in trials:
            if trial.status == Trial.PENDING:
                return trial
        by_id = {t.trial_id: t for t in trials}
        for tid in list(s.resume):
            trial = by_id.get(s.ray_of[tid])
            if trial is not None and trial.status == Trial.PAUSED:
                s.resume.remove(tid)
                s.resumed[trial.trial_id] = s.resumed.get(trial.trial_id, 0) + 1
                return trial
        if s.finished():
            for trial in trials:
                if trial.status == Trial.PAUSED:
                    tune_controller.stop_trial(trial)
        return None

    def debug_string(self) -> str:
        s = self.searcher
        return (f"FreezeThawScheduler: {len(s.results)} steps told, {len(self.paused_at)} trials "
                f"paused, {sum(self.resumed.values())} resumes")


def _rebuild_searcher(cls: type[QuickTuneSearcher], init_args: dict[str, Any],
                      state: dict[str, Any]) -> QuickTuneSearcher:
    """Unpickle a :class:`QuickTuneSearcher`: build it from its arguments, load its state."""
    searcher = cls(**init_args)
    searcher.set_state(state)
    return searcher
