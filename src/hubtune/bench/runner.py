"""Drive one search method through a replayed dataset on a simulated clock.

:func:`run_one` builds the method's optimizer (through the method registry)
and runs it with the search loop of ``hubtune run``
(:class:`~hubtune.search.loop.SearchLoop`: the same ask -> advance -> tell
cycle and the same budget rules), on a simulated clock: a
:class:`~hubtune.search.simexec.SimExecutor` replays each step with the
:class:`~hubtune.bench.simulator.SimulatedEvaluator`, and the clock advances
by each step's recorded seconds (plus start/resume overheads) and by the
optimizer's own decision time (measured around every ``ask`` and ``tell`` and
charged to the clock, so an expensive optimizer pays for its thinking). With
``workers > 1`` the clock is event driven: up to ``workers`` steps run
concurrently and each finishes when its recorded seconds have elapsed; the
optimizer itself is one controller.

The incumbent is the best validation score of any epoch finished so far; an
epoch counts only if it finishes within the budget (with ``budget_rules``
the loop starts only steps likely to fit; without, a step that would overrun
is truncated there). The run ends when the budget is spent or the optimizer
has nothing left to propose.

Leakage guard: the meta-training data handed to a method for test dataset
``D`` never contains ``D`` (:func:`check_no_leakage`, enforced here).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from hubtune.bench.simulator import SimulatedEvaluator, SimulationError
from hubtune.optim.registry import MethodSpec, get_method
from hubtune.protocol.context import Candidate, TaskContext
from hubtune.search.budget import BudgetGuard
from hubtune.search.clock import OverheadClock, SimClock, overhead_timer
from hubtune.search.loop import EventHook, SearchLoop
from hubtune.search.simexec import PendingTrialError, SimExecutor

if TYPE_CHECKING:
    from hubtune.hub.descriptor import ModelDescriptor
    from hubtune.metadata import DatasetRuns, MetaDataset
    from hubtune.protocol.steps import Step, StepResult

NO_PROGRESS_LIMIT = 10_000
"""Consecutive steps that train nothing before the runner gives up on a method."""


class LeakageError(ValueError):
    """Meta-training data contains the test dataset."""


class BenchmarkError(RuntimeError):
    """A method broke the protocol or cannot run in this setting."""


def normalized_regret(score: float | None, best: float, worst: float) -> float:
    """``(best - score) / (best - worst)`` clipped to [0, 1]; no score yet -> 1.

    ``best``/``worst`` are the best and worst score over all epochs of all
    runs of the dataset (the Quick-Tune paper's normalisation).
    """
    if score is None or not math.isfinite(score):
        return 1.0
    span = best - worst
    if span <= 0:
        return 0.0 if score >= best else 1.0
    return min(1.0, max(0.0, (best - score) / span))


# ---------------------------------------------------------------- leakage
def check_no_leakage(train_metadata: MetaDataset | None, dataset: str) -> None:
    """Raise :class:`LeakageError` if ``train_metadata`` holds ``dataset``."""
    if train_metadata is not None and dataset in train_metadata.datasets:
        raise LeakageError(
            f"leakage: the meta-training data for test dataset {dataset!r} contains it"
        )


def make_folds(datasets: Sequence[str], folds: int | None) -> list[list[str]]:
    """Split dataset names (sorted) into ``folds`` groups; ``None`` -> one dataset per group.

    Assignment is round-robin over the sorted names, so it is deterministic.
    """
    names = sorted(datasets)
    if folds is None or folds >= len(names):
        return [[n] for n in names]
    if folds < 2:
        raise ValueError(f"folds must be >= 2 (or None for leave-one-dataset-out), got {folds}")
    return [names[i::folds] for i in range(folds)]


def fold_train_metadata(
    train_metadata: MetaDataset,
    test_dataset: str,
    test_datasets: Sequence[str] | None = None,
    folds: int | None = None,
) -> MetaDataset:
    """Meta-training data for ``test_dataset``: ``train_metadata`` minus its test fold.

    Leave-one-dataset-out by default; with ``folds=k`` the test datasets
    (``test_datasets``, default: those of ``train_metadata`` plus
    ``test_dataset``) are split into k groups and the whole group of
    ``test_dataset`` is held out. A dataset of the same name is always removed,
    even when the meta-training data come from another meta-dataset.
    """
    pool = set(test_datasets or train_metadata.datasets) | {test_dataset}
    group = next(g for g in make_folds(sorted(pool), folds) if test_dataset in g)
    drop = [d for d in group if d in train_metadata.datasets]
    result = train_metadata.without(drop) if drop else train_metadata
    check_no_leakage(result, test_dataset)
    return result


# ---------------------------------------------------------------- results
@dataclass
class OverheadStats:
    """The optimizer's own time per decision (one ``ask`` plus its ``tell``)."""

    clock: str = "process"
    decisions: int = 0
    total_seconds: float = 0.0
    mean_seconds: float = 0.0
    max_seconds: float = 0.0
    observed_epochs: int = 0
    """Epochs the optimizer had been told about at the end of the run."""
    by_observed: list[list[float]] = field(default_factory=list)
    """``[observed-epoch bin start, mean seconds per decision, decisions]`` per bin of 100 epochs."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OverheadStats:
        return cls(**data)


@dataclass
class Trajectory:
    """How one method did on one dataset with one seed.

    ``times``/``scores``/``regrets`` list the simulated time (seconds) of every
    improvement of the incumbent and its score and normalized regret; before
    the first entry the regret is 1.
    """

    method: str
    dataset: str
    seed: int
    budget: float
    times: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    regrets: list[float] = field(default_factory=list)
    end_time: float = 0.0
    end_reason: str = "budget"
    steps: int = 0
    epochs: int = 0
    trials: int = 0
    overhead: OverheadStats = field(default_factory=OverheadStats)

    def regret_at(self, t: float) -> float:
        """Normalized regret of the incumbent at simulated time ``t``."""
        regret = 1.0
        for time_i, r in zip(self.times, self.regrets, strict=True):
            if time_i > t:
                break
            regret = r
        return regret

    @property
    def final_regret(self) -> float:
        return self.regrets[-1] if self.regrets else 1.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["overhead"] = self.overhead.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trajectory:
        data = dict(data)
        data["overhead"] = OverheadStats.from_dict(data.get("overhead", {}))
        return cls(**data)


_DESCRIPTOR_CACHE: dict[str, ModelDescriptor | None] = {}


def model_descriptors(models: Sequence[str]) -> dict[str, ModelDescriptor]:
    """Hub descriptors of ``models`` where the hub knows them (cached; unknown ones skipped)."""
    try:
        from hubtune.hub import get_descriptor  # type: ignore[attr-defined]
    except ImportError:
        return {}
    out = {}
    for name in models:
        if name not in _DESCRIPTOR_CACHE:
            try:
                _DESCRIPTOR_CACHE[name] = get_descriptor(name)
            except Exception:  # unknown model: the method falls back on its own
                _DESCRIPTOR_CACHE[name] = None
        if _DESCRIPTOR_CACHE[name] is not None:
            out[name] = _DESCRIPTOR_CACHE[name]
    return out


def make_context(
    runs: DatasetRuns,
    *,
    seed: int,
    budget_seconds: float,
    max_epochs: int,
    train_metadata: MetaDataset | None = None,
    descriptors: dict[str, ModelDescriptor] | None = None,
) -> TaskContext:
    """The :class:`TaskContext` a method sees for one replayed dataset (no curves in it)."""
    check_no_leakage(train_metadata, runs.dataset)
    candidates = [Candidate(rid, cfg) for rid, cfg in zip(runs.run_ids, runs.configs, strict=True)]
    if descriptors is None:
        descriptors = model_descriptors(sorted({c.model for c in runs.configs}))
    return TaskContext(
        max_epochs=max_epochs,
        seed=seed,
        candidates=candidates,
        meta_features=runs.meta_features,
        train_metadata=train_metadata,
        budget=budget_seconds,
        descriptors=dict(descriptors),
        dataset=runs.dataset,
    )


# ---------------------------------------------------------------- runner
# Long by its docstring, which documents every argument: 55 lines without it.
def run_one(
    method: str | MethodSpec,
    runs: DatasetRuns,
    *,
    seed: int,
    budget_seconds: float,
    train_metadata: MetaDataset | None = None,
    max_epochs: int | None = None,
    resume_overhead: float = 0.0,
    start_overhead: float = 0.0,
    workers: int = 1,
    overhead_clock: OverheadClock = "process",
    descriptors: dict[str, ModelDescriptor] | None = None,
    budget_rules: bool = True,
    on_event: EventHook | None = None,
) -> Trajectory:
    """Run ``method`` on the replayed ``runs`` for ``budget_seconds`` of simulated time.

    The search is :class:`~hubtune.search.loop.SearchLoop` itself (the engine of
    ``hubtune run``) on a :class:`~hubtune.search.clock.SimClock`, with a
    :class:`~hubtune.search.simexec.SimExecutor` replaying the steps and a null
    journal; the trajectory is read off the steps it ran.

    Args:
        method: registry name or :class:`MethodSpec`.
        runs: the test dataset's runs (the method only sees their configs).
        seed: the method's seed.
        budget_seconds: simulated budget (training, overheads and the
            optimizer's own time).
        train_metadata: meta-training data; must not contain ``runs.dataset``
            (:class:`LeakageError`). Only passed to methods with ``needs_metadata``.
        max_epochs: highest fidelity (default: the table's width).
        resume_overhead / start_overhead: seconds per thaw / per first step.
        workers: simulated concurrent workers (methods need ``supports_async``).
        overhead_clock: how the optimizer's time is measured: ``"process"``
            (CPU time of this process; robust to other load), ``"wall"`` or
            ``"none"`` (not charged; exact replays in tests). Methods that run
            in a subprocess are always measured in wall time.
        budget_rules: the loop's budget contract as in ``hubtune run``: steps
            that do not fit are shortened or declined. Not its start-up and probe
            rules (one step of one epoch until an epoch is measured; one epoch
            first for an unmeasured trial near the end), which keep a real run's
            wall clock in bounds; in a replay epochs past the budget never count
            anyway, and all workers start at once. ``False``: every proposed
            step starts while budget is left and is cut off at the budget.
        on_event: the loop's event hook (``step``, ``result``, ``declined``, ...;
            ``elapsed`` in simulated seconds).
    """
    spec = get_method(method) if isinstance(method, str) else method
    _check_run(spec, runs, budget_seconds, workers, train_metadata)
    if spec.subprocess and overhead_clock == "process":
        overhead_clock = "wall"
    width = int(runs.scores.shape[1])
    max_epochs = width if max_epochs is None else int(max_epochs)
    ctx = make_context(
        runs, seed=seed, budget_seconds=budget_seconds, max_epochs=max_epochs,
        train_metadata=train_metadata if spec.needs_metadata else None, descriptors=descriptors,
    )
    evaluator = SimulatedEvaluator(runs, resume_overhead, start_overhead, max_epochs=max_epochs)
    clock = SimClock(overhead_timer(overhead_clock))

    spec.run_prepare(ctx)  # offline work (e.g. meta-training a per-fold surrogate): not charged
    with clock.charged():  # building the optimizer (e.g. loading a surrogate) is charged
        optimizer = spec.make(ctx)
    executor = SimExecutor(evaluator, clock, workers, deadline=budget_seconds)
    costs = _DecisionCosts(budget_seconds, clock)
    loop = SearchLoop(
        None, optimizer, evaluator, budget_seconds, executor=executor, clock=clock,
        budget_rules=budget_rules, guard=BudgetGuard(serial_start=False, probe_share=None),
        export_allowance=None, on_charge=costs.charge,
        after_result=_progress_check(spec.name), max_consecutive_failures=NO_PROGRESS_LIMIT,
        on_event=on_event,
    )
    loop.start_clock(0.0)  # the optimizer's construction counts
    try:
        outcome = loop.run()
    except (SimulationError, PendingTrialError) as exc:
        raise BenchmarkError(f"method {spec.name!r}: {exc}") from exc
    traj = Trajectory(
        method=spec.name, dataset=runs.dataset, seed=seed, budget=budget_seconds,
        end_time=min(outcome.elapsed, budget_seconds),
        end_reason="exhausted" if outcome.why == "exhausted" else "budget",
        steps=evaluator.steps, trials=len(evaluator.epochs),
    )
    _add_improvements(traj, runs, executor.submitted, budget_seconds)
    traj.overhead = _overhead_stats(costs.decisions, costs.observed, overhead_clock)
    return traj


def _check_run(spec: MethodSpec, runs: DatasetRuns, budget_seconds: float, workers: int,
               train_metadata: MetaDataset | None) -> None:
    """Refuse a replay that cannot be run as asked (bad budget or workers, leakage, no metadata)."""
    if not (budget_seconds > 0 and math.isfinite(budget_seconds)):
        raise ValueError(f"budget_seconds must be positive, got {budget_seconds}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers > 1 and not spec.supports_async:
        raise BenchmarkError(
            f"method {spec.name!r} does not support several workers (supports_async=False)"
        )
    check_no_leakage(train_metadata, runs.dataset)
    if spec.needs_metadata and train_metadata is None:
        raise BenchmarkError(f"method {spec.name!r} needs meta-training data (train_metadata)")


def _add_improvements(traj: Trajectory, runs: DatasetRuns,
                      submitted: list[tuple[float, StepResult]], limit: float) -> None:
    """Count the epochs finished by ``limit`` and record every improvement of the incumbent."""
    best = -math.inf
    for t, score in _epoch_events(submitted, limit):
        traj.epochs += 1
        if score > best:
            best = score
            traj.times.append(t)
            traj.scores.append(score)
            traj.regrets.append(normalized_regret(score, runs.best, runs.worst))


def _epoch_events(submitted: list[tuple[float, StepResult]], limit: float) -> list[tuple[float, float]]:
    """``(finish time, score)`` of every epoch that finished by ``limit``, in time order."""
    events = []
    for start, result in submitted:
        t = start
        for rec in result.records:
            t += rec.seconds
            if t > limit:
                break
            if rec.score is not None and math.isfinite(rec.score):
                events.append((t, rec.score))
    events.sort()
    return events


def _progress_check(name: str) -> Callable[[StepResult, object], None]:
    """An ``after_result`` hook that fails a method whose steps keep training nothing."""
    idle = [0]

    def check(result: StepResult, _incumbent: object) -> None:
        idle[0] = 0 if result.records else idle[0] + 1
        if idle[0] >= NO_PROGRESS_LIMIT:
            raise BenchmarkError(
                f"method {name!r} proposed {NO_PROGRESS_LIMIT} steps in a row that train nothing"
            )

    return check


class _DecisionCosts:
    """The optimizer's time per decision (an ``ask`` plus the ``tell`` of its step)."""

    def __init__(self, budget: float, clock: SimClock) -> None:
        self.budget = budget
        self.clock = clock
        self.decisions: list[tuple[int, float]] = []  # (observed epochs, seconds)
        self.open: dict[str, int] = {}  # trial id -> index of the decision that proposed it
        self.observed = 0

    def charge(self, kind: str, step: Step | None, result: StepResult | None,
               seconds: float) -> None:
        """The loop's ``on_charge`` hook."""
        if kind == "ask":
            if step is not None:
                self.open[step.trial_id] = len(self.decisions)
            self.decisions.append((self.observed, seconds))
            return
        assert step is not None and result is not None
        index = self.open.pop(step.trial_id, None)
        if self.clock.now() - seconds > self.budget:
            return  # told while the loop drained, after the budget: not part of the run
        if index is not None:
            obs, cost = self.decisions[index]
            self.decisions[index] = (obs, cost + seconds)
        self.observed += len(result.records)


def _overhead_stats(costs: list[tuple[int, float]], observed: int, clock: str) -> OverheadStats:
    stats = OverheadStats(clock=clock, observed_epochs=observed)
    if not costs:
        return stats
    seconds = [c for _, c in costs]
    stats.decisions = len(costs)
    stats.total_seconds = float(sum(seconds))
    stats.mean_seconds = stats.total_seconds / len(costs)
    stats.max_seconds = float(max(seconds))
    bins: dict[int, list[float]] = {}
    for obs, c in costs:
        bins.setdefault(obs // 100 * 100, []).append(c)
    stats.by_observed = [[float(b), sum(v) / len(v), float(len(v))] for b, v in sorted(bins.items())]
    return stats
