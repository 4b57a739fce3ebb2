"""Generate a meta-dataset by real finetuning: datasets x designed configs, every epoch recorded.

``hubtune metadata generate`` (and :class:`MetadataGenerator`) trains, on each
dataset, the configurations of :func:`hubtune.metagen.design.design_configs`
(each model's default config plus a scrambled Sobol design over the search
space) for ``max_epochs`` epochs with the same trainer ``hubtune run`` uses
(:func:`hubtune.finetune.advance`, one epoch per step, checkpoint after each),
and writes hubtune's own meta-dataset format into the output folder::

    OUT/metadata.json, OUT/arrays.safetensors   the meta-dataset (load_metadata(OUT))
    OUT/generate.json                            the settings that define the runs
    OUT/summary.json                             counts per dataset and failures by reason
    OUT/runs/<dataset>/<run_id>/result.json      one finished run (written by the driver)
    OUT/runs/<dataset>/<run_id>/...              the trainer's workdir (records.jsonl;
                                                 checkpoint only while the run is unfinished)

A run is finished once its ``result.json`` exists; running the same command
again skips those and continues the others from their last epoch checkpoint
(``--retry-failed`` redoes failed ones). A run that diverged keeps its good
epochs (its curve ends early) and is reported; a run that failed before its
first epoch is stored in the meta-dataset's ``unmapped`` list with the reason.

With ``workers > 1`` every run is one Ray task (``ray.init`` of a local
instance, or ``ray_address`` to join a cluster; the output folder must then be
on storage every node reads and writes). Only the driver writes results and the
meta-dataset (single writer); a task whose worker process dies is retried by
Ray and continues from the run's last checkpoint.

Example::

    gen = MetadataGenerator(GenerateSettings(models=["mobilenetv2_100"], max_epochs=3,
                                             image_size=32), out="/tmp/meta")
    summary = gen.run(parse_datasets("fashion-mnist:600,digits"), n_configs=8)
    meta = load_metadata("/tmp/meta")
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from hubtune.core.atomic import write_json_atomic
from hubtune.metadata.loader import save_metadata
from hubtune.metagen.execute import (  # noqa: F401  (re-exported)
    _committed_records,
    _drop_checkpoint,
    _load_data,
    execute_run,
)
from hubtune.metagen.plan import (  # noqa: F401  (re-exported)
    LOCK_FILE,
    RESULT_FILE,
    RESULT_FORMAT,
    SETTINGS_FILE,
    SUMMARY_FILE,
    DatasetSpec,
    GenerateError,
    GenerateSettings,
    RunOutcome,
    RunTask,
    parse_datasets,
    plan_runs,
)
from hubtune.metagen.results import (  # noqa: F401  (re-exported)
    GenerateSummary,
    build_metadataset,
    read_outcomes,
    result_path,
    summarize,
)


# ------------------------------------------------------------------ driver
@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``: two drivers on one folder would train runs twice."""
    import fcntl

    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            raise GenerateError(
                f"another 'hubtune metadata generate' (pid {holder}) is writing into {path.parent}; "
                f"wait for it or stop it first"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class MetadataGenerator:
    """Plan, run (in process or on Ray) and record a generated meta-dataset in ``out``.

    Args:
        settings: what defines the runs (see :class:`GenerateSettings`).
        out: output folder (created; an existing one is resumed).
        workers: concurrent runs; 1 runs in this process without Ray.
        ray_address: join this Ray cluster instead of starting a local instance.
        retry_failed: redo runs recorded as failed or diverged.
        log: progress callback (one line per finished run).
    """

    def __init__(
        self,
        settings: GenerateSettings,
        out: str | Path,
        workers: int = 1,
        ray_address: str | None = None,
        retry_failed: bool = False,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise GenerateError(f"workers must be a positive integer, got {workers!r}")
        if settings.max_epochs < 1:
            raise GenerateError(f"max_epochs must be >= 1, got {settings.max_epochs}")
        if settings.image_size < 8:
            raise GenerateError(f"image_size must be >= 8 pixels, got {settings.image_size}")
        if not settings.models:
            raise GenerateError("no models to train")
        self.settings = settings
        self.out = Path(out)
        self.workers = workers
        self.ray_address = ray_address
        self.retry_failed = retry_failed
        self.log = log or (lambda _m: None)

    def _check_settings(self) -> None:
        path = self.out / SETTINGS_FILE
        if not path.is_file():
            return
        stored = GenerateSettings.from_dict(json.loads(path.read_text())["settings"])
        diffs = [
            f"{k}: {getattr(stored, k)!r} (stored) vs {getattr(self.settings, k)!r} (now)"
            for k in self.settings.to_dict()
            if k not in GenerateSettings.CHANGEABLE and getattr(stored, k) != getattr(self.settings, k)
        ]
        if diffs:
            raise GenerateError(
                f"{self.out} holds runs generated with other settings ({'; '.join(diffs)}); "
                f"use a new --out, or the same settings to resume"
            )

    def plan(self, datasets: Sequence[DatasetSpec], n_configs: int) -> list[RunTask]:
        """The runs of ``datasets`` x ``n_configs`` designed configurations."""
        return plan_runs(self.settings, datasets, n_configs)

    def run(self, datasets: Sequence[DatasetSpec], n_configs: int) -> GenerateSummary:
        """Run every planned run not recorded yet; write the meta-dataset and summary into ``out``.

        Raises:
            GenerateError: bad settings, or another generation is running on ``out``.
        """
        self.out.mkdir(parents=True, exist_ok=True)
        with _exclusive(self.out / LOCK_FILE):
            return self._run(datasets, n_configs)

    def _run(self, datasets: Sequence[DatasetSpec], n_configs: int) -> GenerateSummary:
        t0 = time.perf_counter()
        self._check_settings()
        tasks = self.plan(datasets, n_configs)
        self.out.mkdir(parents=True, exist_ok=True)
        previous = {}
        if (self.out / SETTINGS_FILE).is_file():
            previous = json.loads((self.out / SETTINGS_FILE).read_text())
        known = {d["name"]: d for d in previous.get("datasets", [])}
        for d in datasets:
            if d.name in known and DatasetSpec.from_dict(known[d.name]) != d:
                raise GenerateError(f"dataset name {d.name!r} is recorded in {self.out} for another source")
            known[d.name] = d.to_dict()
        write_json_atomic(self.out / SETTINGS_FILE, {
            "settings": self.settings.to_dict(),
            "datasets": list(known.values()),
            "configs": max(n_configs, int(previous.get("configs", 0))),
        }, indent=1)
        done = {(o.task.dataset.name, o.task.run_id): o for o in read_outcomes(self.out)}
        todo = [t for t in tasks if (t.dataset.name, t.run_id) not in done
                or (self.retry_failed and done[(t.dataset.name, t.run_id)].status != "ok")]
        skipped = len(tasks) - len(todo)
        self.log(f"{len(tasks)} runs planned ({len(datasets)} datasets x {len(tasks) // max(1, len(datasets))} "
                 f"configs, {self.settings.max_epochs} epochs), {skipped} already recorded, "
                 f"{len(todo)} to run on {self.workers} worker(s)")
        if todo:
            if self.workers == 1:
                self._run_inline(todo)
            else:
                self._run_ray(todo)
        outcomes = read_outcomes(self.out)
        self._save_metadata(outcomes)
        summary = summarize(self.out, tasks, outcomes, skipped, time.perf_counter() - t0)
        write_json_atomic(self.out / SUMMARY_FILE, summary.to_dict(), indent=1)
        return summary

    # ---------------------------------------------------------- execution
    def _record(self, outcome: dict[str, Any], n_done: int, n_todo: int) -> None:
        o = RunOutcome.from_dict(outcome)
        write_json_atomic(result_path(self.out, o.task), outcome, indent=1)
        self._save_metadata(read_outcomes(self.out))
        last = f"{o.records[-1].score:.4f}" if o.records else "-"
        extra = f" ({o.reason})" if o.reason else ""
        self.log(f"[{n_done}/{n_todo}] {o.task.dataset.name} {o.task.run_id} {o.task.config.model}: "
                 f"{o.status}{extra}, {len(o.records)} epochs, last val {last}, {o.seconds:.0f}s")

    def _save_metadata(self, outcomes: Sequence[RunOutcome]) -> None:
        if not outcomes:
            return
        meta = build_metadataset(outcomes, self.settings.max_epochs)
        tmp = self.out / ".metadata.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save_metadata(meta, tmp)
        # arrays first, manifest last: a reader never sees a manifest without its arrays
        for name in ("arrays.safetensors", "metadata.json"):
            (tmp / name).replace(self.out / name)
        shutil.rmtree(tmp, ignore_errors=True)

    def _run_inline(self, todo: Sequence[RunTask]) -> None:
        settings = self.settings.to_dict()
        for i, task in enumerate(todo, 1):
            self._record(execute_run(task.to_dict(), settings, str(self.out)), i, len(todo))

    def _run_ray(self, todo: Sequence[RunTask]) -> None:
        try:
            import ray
        except ImportError:
            raise GenerateError(
                "--workers > 1 runs on Ray, which is not installed: pip install 'ray>=2.9' "
                "(or use --workers 1)"
            ) from None
        started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.ray_address:
                ray.init(address=self.ray_address, **kwargs)
            else:
                ray.init(num_cpus=self.workers, **kwargs)
            started = True
        try:
            threads = self.settings.num_threads or 1
            remote = ray.remote(num_cpus=threads, max_retries=2)(execute_run)
            settings = self.settings.to_dict()
            out = str(self.out.resolve())
            pending: dict[Any, RunTask] = {}
            queue = list(todo)
            n_done = 0
            # keep a few more tasks in flight than workers, so a free worker never waits
            while queue or pending:
                while queue and len(pending) < 2 * self.workers:
                    task = queue.pop(0)
                    pending[remote.remote(task.to_dict(), settings, out)] = task
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    task = pending.pop(ref)
                    n_done += 1
                    try:
                        outcome = ray.get(ref)
                    except Exception as exc:  # the task's worker died more often than retried
                        outcome = RunOutcome(task, "failed", f"Ray task lost: {type(exc).__name__}: "
                                             f"{str(exc).splitlines()[0] if str(exc) else ''}",
                                             [], None, 0.0).to_dict()
                    self._record(outcome, n_done, len(todo))
        finally:
            if started:
                ray.shutdown()
