"""The budget as a contract: the loop starts no step that is not likely to fit.

Every optimizer's steps go through :class:`BudgetGuard` before they start
(:class:`~hubtune.search.loop.SearchLoop`), whatever the optimizer itself
checks. A step's likely duration is ``(overhead + epochs x seconds per epoch)
x margin``:

- seconds per epoch (:func:`epoch_estimate`): the trial's own measured mean;
  else the slowest measured epoch of the same model (scaled by the batch size
  when both batch sizes are known, :func:`batch_scaled`); else the slowest
  measured epoch of any trial times a prior margin; when nothing has been
  measured yet the step is allowed (the first step must run), but only one
  step runs at a time until an epoch has been measured;
- overhead (:func:`recent_overhead`): the median of the last few measured
  per-step overheads (the step's seconds beyond its epochs: building the
  model, loading and saving checkpoints), for a trial's first step and for a
  continued one separately; the run's very first step is left out (it also
  pays the process's warm-up: imports, device initialisation, first writes);
- margin (:func:`learned_margin`): an upper quantile of the run's own
  prediction errors (observed / predicted seconds), never below ``base``.

A several-epoch step of a trial that was never measured is first run for one
epoch (a probe) when nothing has been measured yet, or when its estimate
exceeds half of the budget left: the estimate for an unseen trial can be far
off (epoch times of one model differ several-fold with its hyperparameters),
so near the end of the budget it risks one epoch, not many. The loop then
continues the probe to the epochs asked for (or those that fit), now with a
measured epoch, and tells the optimizer one result for the step it asked
for: the probe is invisible to it. A step that does
not fit is shortened to the epochs that fit
(:func:`epochs_that_fit`) when at least one does, else declined; the loop
tells the optimizer a declined step as a result with no epochs (status
``failed``, reason ``declined: ...``), so it proposes something else, and it
stops when nothing can fit (:func:`nothing_fits`) or after ``max_declines``
declines in a row. The optimizer's own prediction (``predicted_seconds`` in
``Step.info``) is honoured too: a step it predicts to overrun is declined.

:func:`export_allowance` is the time kept back from the search for the end of
the run: exporting the best model (evaluating it on validation and test) and,
with ``--ensemble K``, the ensemble (:class:`ExportPlan`).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field, replace
from typing import Literal

from hubtune.protocol.steps import Step, StepResult, step_prediction

Action = Literal["run", "shorten", "decline"]


# ------------------------------------------------------------ pure rules
def result_costs(result: StepResult) -> tuple[float, float] | None:
    """``(seconds per epoch, step overhead)`` measured by ``result`` (None: no epochs).

    An epoch costs its training + evaluation seconds; the overhead is whatever
    else the step took (``result.seconds`` beyond its epochs; never negative).
    """
    if not result.records:
        return None
    epochs = [r.train_seconds + r.eval_seconds for r in result.records]
    per_epoch = sum(epochs) / len(epochs)
    total = result.seconds if result.seconds > 0 else sum(r.seconds for r in result.records)
    return per_epoch, max(0.0, total - sum(epochs))


def batch_scaled(seconds: float, measured_batch: int | None, wanted_batch: int | None) -> float:
    """Epoch seconds measured at ``measured_batch`` carried to ``wanted_batch``.

    A smaller batch costs more per epoch (more optimizer steps, less parallel
    work): the time is scaled up by ``sqrt(measured / wanted)`` when the wanted
    batch is smaller; a larger batch is not assumed to be faster.
    """
    if not measured_batch or not wanted_batch or wanted_batch >= measured_batch:
        return seconds
    return seconds * math.sqrt(measured_batch / wanted_batch)


def learned_margin(ratios: list[float], base: float = 1.05, quantile: float = 0.9,
                   early: float = 1.25, min_n: int = 5, cap: float = 4.0,
                   presorted: bool = False) -> float:
    """Safety factor on predicted seconds from the run's ``observed / predicted`` ratios.

    With fewer than ``min_n`` ratios: the largest of ``early`` and the ratios
    seen; then the ``quantile`` of the ratios. Never below ``base``, never above
    ``cap``. ``presorted``: ``ratios`` are already sorted, finite and positive.
    """
    finite = ratios if presorted else sorted(r for r in ratios if math.isfinite(r) and r > 0)
    if len(finite) < min_n:
        value = max([early, *finite])
    else:
        pos = quantile * (len(finite) - 1)
        lo = int(math.floor(pos))
        hi = min(lo + 1, len(finite) - 1)
        value = finite[lo] + (finite[hi] - finite[lo]) * (pos - lo)
    return min(cap, max(base, value))


def epochs_that_fit(left: float, per_epoch: float, overhead: float, margin: float,
                    wanted: int) -> int:
    """Most epochs ``k <= wanted`` with ``(overhead + k * per_epoch) * margin <= left`` (0: none)."""
    if wanted <= 0:
        return 0
    room = left / margin - overhead
    if per_epoch <= 0:
        return wanted if room >= 0 else 0
    if room < per_epoch:
        return 0
    return min(wanted, int(math.floor(room / per_epoch + 1e-9)))


def recent_overhead(starts: list[float], resumes: list[float], first_step: bool) -> float:
    """Median of the recent overheads of the step's kind (a trial's first step or a
    continued one); of the other kind when none of its kind was measured; else 0."""
    own, other = (starts, resumes) if first_step else (resumes, starts)
    values = sorted(own or other)
    if not values:
        return 0.0
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def nothing_fits(left: float, cheapest_epoch: float | None, margin: float) -> bool:
    """True when even the cheapest measured epoch (no overhead) would not fit in ``left``."""
    return cheapest_epoch is not None and cheapest_epoch * margin > left


def eval_seconds_per_image(results: list[StepResult], n_val: int) -> float | None:
    """The slowest measured validation pass per image (``eval_seconds / n_val``; None: none)."""
    if n_val <= 0:
        return None
    slowest = max((r.eval_seconds for res in results for r in res.records), default=0.0)
    return slowest / n_val if slowest > 0 else None


@dataclass(frozen=True)
class ExportPlan:
    """What the end of a run evaluates: the input of :func:`export_allowance`.

    Args:
        n_val / n_test: images in the validation / test split.
        ensemble: ``--ensemble K`` (0: no ensemble).
        budget: the run's budget; the ensemble's share of the allowance is capped at
            ``ensemble_share x budget`` (the selection then evaluates fewer candidates).
        max_candidates: at most this many trials are ensemble candidates.
        load_seconds: loading (or writing) one model's checkpoint, until the run has
            measured it (:func:`load_seconds`).
        extra: fixed seconds (the report, writing ``best/``).
        margin: factor on the whole estimate (the machine may be busier at the end).
        latency_calls: forward passes at batch 1 per model for the ensemble's latency.
    """

    n_val: int
    n_test: int = 0
    ensemble: int = 0
    budget: float = math.inf
    max_candidates: int = 25
    ensemble_share: float = 0.2
    load_seconds: float = 0.5
    extra: float = 5.0
    margin: float = 1.25
    latency_calls: int = 23

    def __call__(self, results: list[StepResult]) -> float:
        return export_allowance(results, plan=self)

    def single_seconds(self, per_image: float) -> float:
        """Exporting the best model: load it, score validation and test, write it."""
        return 2 * self.load_seconds + per_image * (self.n_val + self.n_test)

    def ensemble_seconds(self, per_image: float, candidates: int) -> float:
        """The ensemble after it (0 without one), capped at ``ensemble_share x budget``:
        each candidate's load and validation pass, each member's test pass, writing the
        members, and the latency of members and single model (a batch-1 forward pass taken
        as 5 images of a batched evaluation)."""
        if self.ensemble <= 0 or candidates <= 0:
            return 0.0
        c = min(candidates, self.max_candidates)
        m = min(self.ensemble, c)
        cost = (c * (self.load_seconds + per_image * self.n_val)
                + m * (self.load_seconds + per_image * self.n_test)
                + m * 2 * self.load_seconds
                + (m + 1) * self.latency_calls * 5 * per_image)
        return min(cost, self.ensemble_share * self.budget)

    def tail_seconds(self, per_image: float, members: int) -> float:
        """What follows the members' predictions: writing ``members`` models, measuring
        the latency, the report."""
        return (members * 2 * self.load_seconds
                + (members + 1) * self.latency_calls * 5 * per_image + self.extra)


def load_seconds(results: list[StepResult]) -> float | None:
    """Seconds to load (or write) one checkpoint, from the run's own steps: the median
    step overhead (:func:`result_costs`: building the model, loading and saving its
    checkpoint), the run's first step left out (it also paid the warm-up). None: not
    measured yet."""
    overheads = sorted(costs[1] for costs in (result_costs(r) for r in results[1:])
                       if costs is not None)
    if not overheads:
        return None
    mid = len(overheads) // 2
    return overheads[mid] if len(overheads) % 2 else 0.5 * (overheads[mid - 1] + overheads[mid])


def candidate_count(results: list[StepResult]) -> int:
    """Trials with at least one measured epoch (each may be an ensemble candidate)."""
    return len({res.trial_id for res in results if res.records})


def export_allowance(results: list[StepResult], extra: float = 5.0, factor: float = 2.0,
                     plan: ExportPlan | None = None) -> float:
    """Seconds to keep back from the search for the end of the run.

    Without a ``plan``: ``factor`` x the slowest measured evaluation + ``extra`` (the
    export evaluates the chosen checkpoint on validation and test, test taken as large
    as validation). With one: ``plan.margin`` x (exporting the single model + the
    ensemble's share + ``plan.extra``), from the slowest measured validation seconds
    per image (:func:`eval_seconds_per_image`) and the split sizes, so a large test
    split and ``--ensemble K`` are provided for; loading a checkpoint is taken from the
    run's measured step overheads (:func:`load_seconds`; else ``plan.load_seconds``).
    Nothing measured yet: ``plan.extra``.
    """
    if plan is None:
        slowest = max((r.eval_seconds for res in results for r in res.records), default=0.0)
        return factor * slowest + extra
    per_image = eval_seconds_per_image(results, plan.n_val)
    if per_image is None:
        return plan.extra
    load = load_seconds(results)
    if load is not None:
        plan = replace(plan, load_seconds=load)
    return plan.margin * (plan.single_seconds(per_image) + plan.extra
                          + plan.ensemble_seconds(per_image, candidate_count(results)))


# ------------------------------------------------------------ cost model
@dataclass(frozen=True)
class Estimate:
    """Seconds per epoch and per step for one step, and where they come from."""

    per_epoch: float | None
    """None: nothing measured yet (the step is allowed unchecked)."""
    overhead: float
    source: Literal["trial", "model", "prior", "none"]


def epoch_estimate(trial: tuple[float, int | None] | None, model: tuple[float, int | None] | None,
                   slowest: float | None, wanted_batch: int | None,
                   prior_margin: float = 1.5) -> tuple[float | None, str]:
    """Seconds per epoch for a step: own measurement, else same model, else a prior.

    ``trial``/``model``: ``(seconds per epoch, batch size)`` measured for the
    trial / the slowest of its model; ``slowest``: the slowest measured epoch of
    any trial. Returns ``(seconds, source)``; ``(None, "none")`` if nothing is measured.
    """
    if trial is not None:
        return trial[0], "trial"
    if model is not None:
        return batch_scaled(model[0], model[1], wanted_batch), "model"
    if slowest is not None:
        return slowest * prior_margin, "prior"
    return None, "none"


@dataclass
class Verdict:
    """What the guard decided for one step."""

    action: Action
    step: Step
    """The step to run (shortened when ``action == "shorten"``)."""
    predicted: float | None
    """Likely seconds of :attr:`step` (margin included); None when unknown."""
    why: str = ""
    raw: float | None = None
    """The prediction without the margin (what :meth:`BudgetGuard.observe` learns from)."""


@dataclass
class BudgetGuard:
    """Keeps every step within the budget (see the module docstring).

    Args:
        max_declines: stop asking after this many declined steps in a row.
        base_margin / quantile / early_margin: :func:`learned_margin` settings.
        prior_margin: factor on the slowest measured epoch for a model never measured.
        serial_start: until an epoch has been measured, run one step at a time and
            only its first epoch.
        probe_share: a several-epoch step of a trial never measured is first run
            for one epoch (a probe) when its estimate exceeds this share of the
            budget left (``None``: never).
    """

    max_declines: int = 25
    base_margin: float = 1.05
    quantile: float = 0.9
    early_margin: float = 1.25
    prior_margin: float = 1.5
    serial_start: bool = True
    probe_share: float | None = 0.0
    trial: dict[str, tuple[float, int | None]] = field(default_factory=dict)
    model: dict[str, tuple[float, int | None]] = field(default_factory=dict)
    epoch: dict[str, int] = field(default_factory=dict)
    ratios: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    resumes: list[float] = field(default_factory=list)
    recent: int = 5
    slowest: float | None = None
    cheapest: float | None = None
    declines: int = 0
    _sums: dict[str, tuple[float, int]] = field(default_factory=dict)
    _margin: float | None = None
    _warm: bool = False

    @property
    def measured(self) -> bool:
        """True once any epoch has been measured."""
        return self.slowest is not None

    def may_start_beside(self, running: int) -> bool:
        """Whether a step may start while ``running`` steps run (``serial_start`` rule)."""
        return running == 0 or self.measured or not self.serial_start

    def margin(self) -> float:
        """The current safety factor (:func:`learned_margin` of :attr:`ratios`, kept sorted)."""
        if self._margin is None:
            self._margin = learned_margin(self.ratios, self.base_margin, self.quantile,
                                          self.early_margin, presorted=True)
        return self._margin

    def observe(self, result: StepResult, predicted: float | None = None) -> None:
        """Learn from a finished step (``predicted``: its unmargined prediction, if any)."""
        first_step = self.epoch.get(result.trial_id, 0) == 0
        if result.records:
            self.epoch[result.trial_id] = max(self.epoch.get(result.trial_id, 0),
                                              result.last_epoch)
        costs = result_costs(result)
        if costs is None:
            return
        per_epoch, overhead = costs
        total, n = self._sums.get(result.trial_id, (0.0, 0))
        total, n = total + per_epoch * len(result.records), n + len(result.records)
        self._sums[result.trial_id] = (total, n)
        batch = result.records[-1].batch_size or getattr(result.step.config, "batch_size", None)
        mean = total / n
        self.trial[result.trial_id] = (mean, batch)
        name = result.step.config.model
        if name not in self.model or mean > self.model[name][0]:
            self.model[name] = (mean, batch)
        self.slowest = mean if self.slowest is None else max(self.slowest, mean)
        self.cheapest = mean if self.cheapest is None else min(self.cheapest, mean)
        if self._warm:
            kind = self.starts if first_step else self.resumes
            kind.append(overhead)
            del kind[:-self.recent]
        self._warm = True  # the run's first step also paid the process's warm-up: not kept
        if predicted is not None and predicted > 0 and result.seconds > 0:
            ratio = result.seconds / predicted
            if math.isfinite(ratio):
                bisect.insort(self.ratios, ratio)
                self._margin = None

    def estimate(self, step: Step) -> Estimate:
        """Seconds per epoch and per step of ``step`` (before the margin)."""
        batch = getattr(step.config, "batch_size", None)
        per_epoch, source = epoch_estimate(
            self.trial.get(step.trial_id), self.model.get(step.config.model), self.slowest,
            batch if isinstance(batch, int) else None, self.prior_margin,
        )
        overhead = recent_overhead(self.starts, self.resumes,
                                   self.epoch.get(step.trial_id, 0) == 0)
        return Estimate(per_epoch, overhead, source)  # type: ignore[arg-type]

    def vet(self, step: Step, left: float) -> Verdict:
        """Run, shorten or decline ``step`` with ``left`` seconds of budget left for steps."""
        own = step_prediction(step, "seconds")
        if own is not None and own > left:
            return Verdict("decline", step, own,
                           f"the optimizer predicts {own:.0f}s, {left:.0f}s left")
        if own is not None:
            # An optimizer that predicts its steps' seconds (quicktune: a cost model plus its
            # own measured errors) has done this accounting; a second, cruder estimate on
            # top declined its new configs and cost it regret on the replay. The trainer's
            # deadline still bounds whatever the prediction missed.
            return Verdict("run", step, own, "the optimizer's own prediction fits", own)
        est = self.estimate(step)
        current = self.epoch.get(step.trial_id, 0)
        wanted = step.to_epoch - current
        if wanted <= 0:
            return Verdict("run", step, None)
        if est.per_epoch is None:
            if wanted > 1 and self.serial_start:
                return self._probe(step, current, None, "nothing measured yet")
            return Verdict("run", step, None, "nothing measured yet")
        margin = self.margin()
        fit = epochs_that_fit(left, est.per_epoch, est.overhead, margin, wanted)
        if fit <= 0:
            need = (est.overhead + est.per_epoch) * margin
            return Verdict("decline", step, need,
                           f"one epoch likely takes {need:.0f}s ({est.source} estimate), "
                           f"{left:.0f}s left")
        full = (est.overhead + wanted * est.per_epoch) * margin
        if (self.probe_share is not None and est.source != "trial" and wanted > 1
                and full > left * self.probe_share):
            raw = est.overhead + est.per_epoch
            return self._probe(step, current, raw,
                               f"never measured ({est.source} estimate); one epoch first")
        if fit < wanted:
            short = replace(step, to_epoch=current + fit,
                            info={**step.info, "shortened_from": step.to_epoch})
            raw = est.overhead + fit * est.per_epoch
            return Verdict("shorten", short, raw * margin,
                           f"{fit} of {wanted} epochs fit in {left:.0f}s", raw)
        raw = est.overhead + wanted * est.per_epoch
        return Verdict("run", step, raw * margin, "", raw)

    def _probe(self, step: Step, current: int, raw: float | None, why: str) -> Verdict:
        """Shorten ``step`` to its first epoch (the trial stays open: status ``ok``)."""
        short = replace(step, to_epoch=current + 1,
                        info={**step.info, "shortened_from": step.to_epoch, "probe": True})
        predicted = None if raw is None else raw * self.margin()
        return Verdict("shorten", short, predicted, why, raw)
