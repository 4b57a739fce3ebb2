"""Drive one search method through a replayed dataset on a simulated clock.

:func:`run_one` builds the method's optimizer (through the method registry),
then alternates ``ask`` -> :class:`~hubtune.bench.simulator.SimulatedEvaluator`
-> ``tell``. The simulated clock advances by each step's recorded seconds
(plus start/resume overheads) and by the optimizer's own decision time
(measured around every ``ask`` and ``tell`` and charged to the clock, so an
expensive optimizer pays for its thinking). With ``workers > 1`` the clock is
event driven: up to ``workers`` steps run concurrently and each finishes when
its recorded seconds have elapsed; the optimizer itself is one controller.

The incumbent is the best validation score of any epoch finished so far; an
epoch counts only if it finishes within the budget (a step that would overrun
is truncated there). The run ends when the budget is spent or the optimizer
has nothing left to propose.

Leakage guard: the meta-training data handed to a method for test dataset
``D`` never contains ``D`` (:func:`check_no_leakage`, enforced here).
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from hubtune.bench.simulator import SimulatedEvaluator, SimulationError
from hubtune.optim.registry import MethodSpec, get_method
from hubtune.protocol.context import Candidate, TaskContext

if TYPE_CHECKING:
    from hubtune.hub.descriptor import ModelDescriptor
    from hubtune.metadata import DatasetRuns, MetaDataset
    from hubtune.protocol.steps import StepResult

OverheadClock = Literal["process", "wall", "none"]
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


# ---------------------------------------------------------------- clock
def _timer(clock: OverheadClock) -> Callable[[], float]:
    if clock == "process":
        return time.process_time
    if clock == "wall":
        return time.perf_counter
    if clock == "none":
        return lambda: 0.0
    raise ValueError(f"overhead clock must be 'process', 'wall' or 'none', got {clock!r}")


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
) -> Trajectory:
    """Run ``method`` on the replayed ``runs`` for ``budget_seconds`` of simulated time.

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
    """
    spec = get_method(method) if isinstance(method, str) else method
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
    if spec.subprocess and overhead_clock == "process":
        overhead_clock = "wall"
    width = int(runs.scores.shape[1])
    max_epochs = width if max_epochs is None else int(max_epochs)
    ctx = make_context(
        runs, seed=seed, budget_seconds=budget_seconds, max_epochs=max_epochs,
        train_metadata=train_metadata if spec.needs_metadata else None, descriptors=descriptors,
    )
    evaluator = SimulatedEvaluator(runs, resume_overhead, start_overhead, max_epochs=max_epochs)
    timer = _timer(overhead_clock)

    spec.run_prepare(ctx)  # offline work (e.g. meta-training a per-fold surrogate): not charged
    t0 = timer()
    optimizer = spec.make(ctx)
    clock = timer() - t0  # building the optimizer (e.g. loading a surrogate) is charged too

    events: list[tuple[float, float]] = []  # (finish time, score) of every counted epoch
    # (end, seq, start, result, index of the decision that proposed it in decision_costs)
    pending: list[tuple[float, int, float, StepResult, int]] = []
    pending_trials: set[str] = set()
    decision_costs: list[tuple[int, float]] = []  # (observed epochs, seconds of ask + tell)
    observed = 0
    seq = 0
    no_progress = 0
    end_reason = "budget"
    exhausted = False
    ask_cost = 0.0

    def count_epochs(start: float, result: StepResult, limit: float) -> None:
        t = start
        for rec in result.records:
            t += rec.seconds
            if t > limit:
                break
            if rec.score is not None and math.isfinite(rec.score):
                events.append((t, rec.score))

    while True:
        # Fill idle workers with new steps.
        while not exhausted and len(pending) < workers and clock < budget_seconds:
            t0 = timer()
            step = optimizer.ask(budget_left=budget_seconds - clock)
            ask_cost = timer() - t0
            clock += ask_cost
            if step is None:
                exhausted = True
                decision_costs.append((observed, ask_cost))
                break
            if step.trial_id in pending_trials:
                raise BenchmarkError(
                    f"method {spec.name!r} proposed trial {step.trial_id!r} while it is pending"
                )
            try:
                result = evaluator.advance(step)
            except SimulationError as exc:
                raise BenchmarkError(f"method {spec.name!r}: {exc}") from exc
            no_progress = 0 if result.records else no_progress + 1
            if no_progress >= NO_PROGRESS_LIMIT:
                raise BenchmarkError(
                    f"method {spec.name!r} proposed {NO_PROGRESS_LIMIT} steps in a row that "
                    f"train nothing"
                )
            seq += 1
            heapq.heappush(pending, (clock + result.seconds, seq, clock, result,
                                     len(decision_costs)))
            pending_trials.add(step.trial_id)
            decision_costs.append((observed, ask_cost))
        if clock >= budget_seconds:
            end_reason = "budget"
            break
        if not pending:
            end_reason = "exhausted"
            break
        end, _, start, result, decision = heapq.heappop(pending)
        if end > budget_seconds:
            pending.append((end, seq, start, result, decision))  # counted below, truncated
            clock = budget_seconds
            end_reason = "budget"
            break
        clock = max(clock, end)
        pending_trials.discard(result.trial_id)
        count_epochs(start, result, budget_seconds)
        t0 = timer()
        optimizer.tell(result)
        tell_cost = timer() - t0
        clock += tell_cost
        observed += len(result.records)
        # the tell completes the decision that proposed this step
        obs, cost = decision_costs[decision]
        decision_costs[decision] = (obs, cost + tell_cost)
        exhausted = False  # a tell may unblock an optimizer that was waiting

    # Epochs of unfinished steps that finished within the budget still count.
    for _end, _, start, result, _decision in pending:
        count_epochs(start, result, min(clock, budget_seconds))

    traj = Trajectory(
        method=spec.name, dataset=runs.dataset, seed=seed, budget=budget_seconds,
        end_time=min(clock, budget_seconds), end_reason=end_reason, steps=evaluator.steps,
        trials=len(evaluator.epochs),
    )
    events.sort()
    best = -math.inf
    for t, score in events:
        traj.epochs += 1
        if score > best:
            best = score
            traj.times.append(t)
            traj.scores.append(score)
            traj.regrets.append(normalized_regret(score, runs.best, runs.worst))
    traj.overhead = _overhead_stats(decision_costs, observed, overhead_clock)
    return traj


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
