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
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hubtune.core.atomic import write_json_atomic
from hubtune.core.metafeatures import DatasetMetaFeatures
from hubtune.core.records import EpochRecord
from hubtune.metadata.errors import MetadataError, UnmappedRun
from hubtune.metadata.loader import save_metadata
from hubtune.metadata.metadataset import MetaDataset
from hubtune.metagen.design import design_configs
from hubtune.space.config import Config

RESULT_FILE = "result.json"
SETTINGS_FILE = "generate.json"
SUMMARY_FILE = "summary.json"
LOCK_FILE = ".generate.lock"
RESULT_FORMAT = 1


class GenerateError(ValueError):
    """Bad input for meta-dataset generation (the message names the problem)."""


# ------------------------------------------------------------------ datasets
@dataclass(frozen=True)
class DatasetSpec:
    """One dataset to generate runs on.

    Attributes:
        source: what :func:`hubtune.data.load_dataset` takes (built-in name or folder).
        name: the dataset's name in the meta-dataset.
        subset: stratified training-subset size, or ``None`` for all images.
        data_seed: seed of the split and the subset.
    """

    source: str
    name: str
    subset: int | None
    data_seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetSpec:
        return cls(str(data["source"]), str(data["name"]),
                   None if data.get("subset") is None else int(data["subset"]), int(data["data_seed"]))


_SEED_SUFFIX = re.compile(r"^(.*)@(\d+)$")
_NAME_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def parse_datasets(text: str | Sequence[str], seed: int = 0, subset: int | None = None) -> list[DatasetSpec]:
    """Parse ``"fashion-mnist:600,animal-mnist:600@1,path/to/folder"`` into :class:`DatasetSpec` s.

    Each entry is a built-in name (``fashion-mnist``, ``animal-mnist``, ``digits``,
    optionally ``:K`` for a K-image training subset) or an ImageFolder path, with an
    optional ``@S`` suffix for the split/subset seed (default ``seed``). ``subset``
    applies to entries without their own ``:K``. Names in the meta-dataset are
    ``fashion-mnist-600``, ``animal-mnist-600-seed1``, ``<folder name>[-K]``.

    Raises:
        GenerateError: an empty list, an unknown name/path, or two entries with one name.
    """
    from hubtune.data import DataError, parse_builtin_name

    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if not items:
        raise GenerateError("no datasets given: pass e.g. --datasets fashion-mnist:600,digits")
    specs: list[DatasetSpec] = []
    for item in items:
        data_seed = seed
        m = _SEED_SUFFIX.match(item)
        body = item
        if m and not Path(item).exists():
            body, data_seed = m.group(1), int(m.group(2))
        try:
            builtin = parse_builtin_name(body)
        except DataError as exc:
            raise GenerateError(str(exc)) from None
        if builtin is not None:
            base, own_subset = builtin
            source = base
        else:
            path = Path(body).expanduser()
            if not path.is_dir():
                raise GenerateError(
                    f"dataset {item!r} is neither a built-in dataset (fashion-mnist, animal-mnist, "
                    f"digits; optionally ':K' and '@SEED') nor an existing folder"
                )
            source, own_subset = str(path.resolve()), None
            base = _NAME_SAFE.sub("-", path.resolve().name) or "folder"
        k = own_subset if own_subset is not None else subset
        if k is not None and k <= 0:
            raise GenerateError(f"subset size must be positive, got {k} in {item!r}")
        name = base + (f"-{k}" if k is not None else "") + (f"-seed{data_seed}" if data_seed != seed else "")
        specs.append(DatasetSpec(source, name, k, data_seed))
    names = Counter(s.name for s in specs)
    clash = [n for n, c in names.items() if c > 1]
    if clash:
        raise GenerateError(f"dataset(s) given twice: {', '.join(clash)} (use '@SEED' for another split)")
    return specs


# ------------------------------------------------------------------ settings
@dataclass
class GenerateSettings:
    """What defines the runs (stored as ``generate.json``; must match when resuming).

    ``device``, ``num_threads`` and ``keep_checkpoints`` may change between
    invocations; the rest may not (the recorded runs would mean something else).
    """

    models: list[str]
    max_epochs: int = 4
    image_size: int = 32
    seed: int = 0
    space: dict[str, Any] | None = None
    portfolio: bool = True
    extra_configs: list[dict[str, Any]] = field(default_factory=list)
    pretrained: bool = True
    device: str = "cpu"
    num_threads: int | None = 1
    keep_checkpoints: bool = False

    CHANGEABLE = ("device", "num_threads", "keep_checkpoints")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerateSettings:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def search_space(self):
        """The :class:`~hubtune.space.SearchSpace` the design samples."""
        from hubtune.space import SearchSpace

        spec = dict(self.space or {})
        if not self.pretrained:
            # Co-Tuning needs the pretrained ImageNet head (as in `hubtune run --no-pretrained`).
            spec["fixed"] = {**spec.get("fixed", {}), "cotuning_reg": 0.0}
        return SearchSpace.from_dict(spec, models=self.models)


@dataclass(frozen=True)
class RunTask:
    """One (dataset, config) run."""

    dataset: DatasetSpec
    run_id: str
    origin: str
    config: Config

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset.to_dict(), "run_id": self.run_id, "origin": self.origin,
                "config": self.config.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunTask:
        return cls(DatasetSpec.from_dict(data["dataset"]), str(data["run_id"]), str(data["origin"]),
                   Config.from_dict(data["config"]))


@dataclass
class RunOutcome:
    """What one run produced: ``status`` is ``ok``, ``diverged`` or ``failed`` (with ``reason``)."""

    task: RunTask
    status: str
    reason: str | None
    records: list[EpochRecord]
    meta_features: DatasetMetaFeatures | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RESULT_FORMAT,
            **self.task.to_dict(),
            "status": self.status,
            "reason": self.reason,
            "seconds": self.seconds,
            "meta_features": None if self.meta_features is None else self.meta_features.to_dict(),
            "records": [r.to_dict() for r in self.records],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunOutcome:
        mf = data.get("meta_features")
        return cls(
            RunTask.from_dict(data), str(data["status"]), data.get("reason"),
            [EpochRecord.from_dict(r) for r in data.get("records", [])],
            None if mf is None else DatasetMetaFeatures.from_dict(mf), float(data.get("seconds", 0.0)),
        )


# ------------------------------------------------------------------ planning
def plan_runs(settings: GenerateSettings, datasets: Sequence[DatasetSpec], n_configs: int) -> list[RunTask]:
    """Every (dataset, config) run, round robin over datasets (config 0 of each, then 1, ...).

    Every dataset gets the same design, so curves are comparable across datasets.
    Run ids are ``<index>-<origin>-<config key>`` and stable under a longer design.
    """
    from hubtune.space import ConfigError

    space = settings.search_space()
    try:
        extra = [Config.from_dict(c) for c in settings.extra_configs]
    except ConfigError as exc:
        raise GenerateError(f"a given configuration is invalid: {exc}") from None
    design = design_configs(space, n_configs, seed=settings.seed, portfolio=settings.portfolio, extra=extra)
    return [
        RunTask(ds, f"{i:03d}-{origin}-{cfg.key()}", origin, cfg)
        for i, (origin, cfg) in enumerate(design)
        for ds in datasets
    ]


# ------------------------------------------------------------------ one run
_DATA: dict[tuple[Any, ...], Any] = {}


def _load_data(spec: DatasetSpec, image_size: int, cache_dir: Path | None):
    key = (spec.source, spec.subset, spec.data_seed, image_size)
    if key not in _DATA:
        from hubtune.data import load_dataset

        _DATA.clear()  # one dataset in memory per process is enough
        _DATA[key] = load_dataset(spec.source, image_size=image_size, subset=spec.subset,
                                  seed=spec.data_seed, cache_dir=cache_dir)
    return _DATA[key]


def _committed_records(workdir: Path) -> list[EpochRecord]:
    """The run's records as its checkpoint commits them, else from ``records.jsonl``.

    The checkpoint's list is the one consistent with the weights; the JSON-lines
    file can hold an epoch twice after a process was killed between training an
    epoch and committing it, so it is only read without a checkpoint, keeping the
    last record of each epoch and stopping at the first gap.
    """
    from hubtune.finetune import read_records
    from hubtune.finetune.checkpoint import has_checkpoint, read_state

    if has_checkpoint(workdir):
        return [EpochRecord.from_dict(r) for r in read_state(workdir).get("records", [])]
    by_epoch = {r.epoch: r for r in read_records(workdir)}
    out = []
    while len(out) + 1 in by_epoch:
        out.append(by_epoch[len(out) + 1])
    return out


def _drop_checkpoint(workdir: Path) -> None:
    for p in list(workdir.glob("tensors-*.safetensors*")) + [workdir / "checkpoint.json"]:
        p.unlink(missing_ok=True)


def execute_run(task: dict[str, Any], settings: dict[str, Any], out: str) -> dict[str, Any]:
    """Train one run to ``max_epochs``, one epoch per step (checkpoint after each); JSON in and out.

    Runs in the driver (one worker) or in a Ray task. Continues from the run's
    checkpoint if an earlier attempt was interrupted. Never raises for a run
    that cannot be built or trained: the outcome says ``failed`` with the reason.
    Writes nothing but the trainer's workdir; the driver records the result.
    """
    from hubtune.finetune import advance

    t = RunTask.from_dict(task)
    s = GenerateSettings.from_dict(settings)
    workdir = Path(out) / "runs" / t.dataset.name / t.run_id
    start = time.perf_counter()
    status, reason, meta_features = "ok", None, None
    try:
        data = _load_data(t.dataset, s.image_size, Path(out) / "data-cache")
        meta_features = data.meta_features
        for epoch in range(1, s.max_epochs + 1):
            res = advance(t.config, epoch, data=data, workdir=workdir, max_epochs=s.max_epochs,
                          seed=s.seed, device=s.device, num_threads=s.num_threads,
                          pretrained=s.pretrained)
            if res.status != "ok":
                status, reason = res.status, res.reason
                break
        records = _committed_records(workdir)
    except Exception as exc:  # one broken run must not end the generation
        status, reason = "failed", f"{type(exc).__name__}: {exc}"
        try:
            records = _committed_records(workdir)
        except Exception:
            records = []
    if status == "ok" and len(records) < s.max_epochs:  # pragma: no cover - trainer invariant
        status, reason = "failed", f"only {len(records)} of {s.max_epochs} epochs were recorded"
    if not s.keep_checkpoints:
        _drop_checkpoint(workdir)
    outcome = RunOutcome(t, status, reason, records, meta_features, time.perf_counter() - start)
    return outcome.to_dict()


# ------------------------------------------------------------------ results


def result_path(out: Path, task: RunTask) -> Path:
    """Where the driver records ``task``'s outcome."""
    return Path(out) / "runs" / task.dataset.name / task.run_id / RESULT_FILE


def read_outcomes(out: str | Path) -> list[RunOutcome]:
    """Every recorded run outcome under ``out`` (sorted by dataset, then run id)."""
    outcomes = []
    for path in sorted(Path(out).glob(f"runs/*/*/{RESULT_FILE}")):
        try:
            outcomes.append(RunOutcome.from_dict(json.loads(path.read_text())))
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise MetadataError(f"{path}: unreadable run result ({exc}); delete it to redo the run") from None
    return outcomes


def build_metadataset(outcomes: Sequence[RunOutcome], max_epochs: int | None = None) -> MetaDataset:
    """The meta-dataset of ``outcomes``: runs with at least one epoch, the rest ``unmapped``."""
    meta = MetaDataset(max_epochs=max_epochs)
    unmapped = []
    for o in outcomes:
        if o.records:
            meta.append(o.task.dataset.name, o.task.run_id, o.task.config, o.records, o.meta_features,
                        schedule_epochs=max_epochs)
        else:
            unmapped.append(UnmappedRun(o.task.dataset.name, o.task.run_id,
                                        f"{o.status}: {o.reason or 'no epoch recorded'}"))
    meta.unmapped = unmapped
    return meta


@dataclass
class GenerateSummary:
    """Counts per dataset and failures by reason (``summary.json``)."""

    out: str
    planned: int
    finished: int
    skipped: int
    per_dataset: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """The end-of-generation table (runs per status per dataset, then failures)."""
        lines = [f"{'dataset':<28} {'planned':>7} {'ok':>4} {'diverged':>8} {'failed':>6} "
                 f"{'best':>7} {'run s':>8}"]
        for r in self.per_dataset:
            best = "-" if r["best"] is None else f"{r['best']:.4f}"
            lines.append(f"{r['dataset']:<28} {r['planned']:>7} {r['ok']:>4} {r['diverged']:>8} "
                         f"{r['failed']:>6} {best:>7} {r['seconds']:>8.0f}")
        if self.failures:
            lines.append("runs that diverged or failed, by reason:")
            by_reason = Counter((f["status"], f["reason"]) for f in self.failures)
            for (status, reason), n in by_reason.most_common():
                lines.append(f"  {n} x {status}: {reason}")
        return "\n".join(lines)


def summarize(out: Path, tasks: Sequence[RunTask], outcomes: Sequence[RunOutcome], skipped: int,
              seconds: float) -> GenerateSummary:
    """Summary of the planned ``tasks`` given the recorded ``outcomes``."""
    planned_ids = {(t.dataset.name, t.run_id) for t in tasks}
    mine = [o for o in outcomes if (o.task.dataset.name, o.task.run_id) in planned_ids]
    rows = []
    for name in dict.fromkeys(t.dataset.name for t in tasks):
        runs = [o for o in mine if o.task.dataset.name == name]
        scores = [r.score for o in runs for r in o.records]
        rows.append({
            "dataset": name,
            "planned": sum(1 for t in tasks if t.dataset.name == name),
            "ok": sum(o.status == "ok" for o in runs),
            "diverged": sum(o.status == "diverged" for o in runs),
            "failed": sum(o.status == "failed" for o in runs),
            "best": max(scores) if scores else None,
            "seconds": sum(o.seconds for o in runs),
        })
    failures = [{"dataset": o.task.dataset.name, "run_id": o.task.run_id, "status": o.status,
                 "reason": o.reason, "epochs": len(o.records)} for o in mine if o.status != "ok"]
    return GenerateSummary(str(out), len(tasks), len(mine), skipped, rows, failures, seconds)


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
