"""Quick-Tune: meta-learned, cost-aware gray-box Bayesian optimisation (freeze-thaw).

Each decision scores every (candidate, step length) pair: for a candidate at
epoch ``n`` (0 if never started) and a step of ``k`` epochs, the deep-kernel
GP surrogate (meta-trained on other datasets, conditioned on this task's
every observed epoch) predicts the score at epoch ``n + k``; the acquisition
is the expected improvement of that score over the best score observed so far
(the quantity the user gets: the best checkpoint seen), divided by the
predicted seconds of the step (cost model prior corrected online by the
seconds actually measured, plus the measured resume overhead). Steps that
cannot finish within the remaining budget are not started. Looking several
step lengths ahead (1, 2, 4, ... epochs) lets a candidate whose curve rises
slowly win over one-epoch myopia, the weak spot of DyHPO-style EI at the next
fidelity.

With no observation yet the GP is its meta-learned prior, so the first steps
are the candidates the meta-trained model expects to do best per second on
this dataset (a zero-shot portfolio for its meta-features); every later step
conditions on what was seen.

The optimizer works on a fixed candidate pool (a tabular benchmark) or on a
:class:`~hubtune.space.searchspace.SearchSpace` (a pool sampled from the
space, refreshed during the run and extended with one-exchange neighbours of
the best configurations). Its state (the tell journal, the pool and the RNG)
is JSON; :meth:`QuickTune.load_state_dict` replays it and resumes exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from hubtune.core.records import EpochRecord
from hubtune.hub.descriptor import ModelDescriptor
from hubtune.protocol.steps import Step, StepResult, step_prediction
from hubtune.space.config import Config, linear_probing_epochs
from hubtune.surrogate.cost import OnlineCost
from hubtune.surrogate.features import N_CURVE, assemble_rows, observed_rows
from hubtune.surrogate.model import Surrogate

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)
COST_ERROR_PRIOR_STD = 0.25
"""Log-std of real / predicted step seconds assumed before a run has measured any."""
COST_ERROR_PRIOR_STEPS = 3.0
"""How many measured steps that assumption weighs as."""


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """Closed-form EI of ``N(mean, std^2)`` over ``best`` (maximisation)."""
    std = np.maximum(std, 1e-9)
    z = (mean - best) / std
    cdf = 0.5 * (1.0 + _erf(z / _SQRT2))
    pdf = np.exp(-0.5 * z * z) / _SQRT2PI
    return np.maximum((mean - best) * cdf + std * pdf, 0.0)


def _erf(x: np.ndarray) -> np.ndarray:
    # numpy has no vectorised erf; Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7).
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


class QuickTuneError(ValueError):
    """Raised on misuse of the optimizer (unknown trial told, malformed state)."""


@dataclass
class QuickTuneSettings:
    """Behaviour knobs (the ablations flip these).

    Attributes:
        horizons: step lengths (epochs ahead) considered for each candidate.
        growth: if set, a step from epoch ``n`` adds at most ``max(1, growth * n)``
            epochs (``None``: any horizon; on the 20-dataset benchmark unrestricted
            horizons did better at 4 h than probing every config for one epoch first).
        cost_power: acquisition = EI / cost**cost_power (0: cost-unaware). 0.75
            rather than 1: plain EI per second over-rewards very cheap steps with
            tiny EI (on the 20-dataset benchmark 0.75 gave lower regret at 1 h, 4 h
            and 16 h than 1.0, 0.5 or 0.25).
        blackbox: only full runs to ``max_epochs`` (no freeze-thaw).
        max_observations: most observed epochs the GP conditions on (the most
            recent epochs of each trial are kept first).
        pool_size: candidates kept in the pool on a search space.
        neighbours_every: add one-exchange neighbours of the best configs
            every this many tells (search-space mode).
        start_with_defaults: on a search space, first train every model's default
            config (:func:`hubtune.optim.defaults.default_candidates`) for one epoch,
            so the surrogate conditions on known-good anchors of each model before
            its own proposals (off the meta-dataset's hub the prior alone can open
            with slow configs; a short budget cannot afford that).
        endgame: with a known remaining budget, a never-started config is only
            started if it can still train as many epochs as the incumbent's best
            epoch before the budget ends (at its predicted seconds per epoch). A
            probe that cannot get there can almost never become the result the
            user gets; the Gaussian tail of a wide prior makes plain EI start such
            probes anyway in the last minutes of a short run. Off by default: on
            the 20-dataset replay it changed nothing at 1 h (8-epoch cap) and raised
            the 16 h regret from 0.028 to 0.034 (method ``qt_endgame``).
        schedule_epochs: the number of epochs the trials' learning-rate schedules
            span. ``None``: the meta-dataset's (50 epochs; tabular replays of it).
            When it differs (``hubtune run`` defines every schedule over
            ``--max-epochs``), epochs are presented to the surrogate as the same
            fraction of a 50-epoch schedule, so "the end of the schedule" (the
            annealed learning rate) means the same thing as in meta-training.
        believe_pending: with several workers, condition the GP on a "kriging
            believer" fantasy for every step still running (its query row
            observed at the mean predicted when it was proposed), so the next
            proposal is not a near copy of a running one (:meth:`QuickTune._believe_pending`).
        val_size: validation images behind each observed score. When set, each
            observation's binomial sampling variance ``s (1 - s) / val_size`` is
            added to the GP's meta-learned noise: on a small validation set (a
            few hundred images) one epoch's score is a few points noisy, and the
            GP should not take a lucky epoch at face value. The bar expected
            improvement is measured against is then the highest posterior mean
            at the observed epochs, not the highest observed score: the maximum
            of many noisy scores is biased upwards, and against an inflated bar
            only wide-uncertainty probes keep any expected improvement (a real
            demo run left its best default config at epoch 7 of 8 for batch-size
            2 and 4 probes costing 70 and 100 s).
        finish_reserve: with a known remaining budget, keep the time to train one
            started trial to the end of its schedule: the started, unfinished trial
            with the highest predicted score at ``max_epochs`` (among those that
            can still get there). Any other step is only taken if that trial can
            still be finished after it. No reserve once a finished trial's final
            score is at least that prediction. What a run hands over is a
            checkpoint; with schedules over ``max_epochs`` an unfinished one has
            not annealed. Without it, a short real run was seen spending its last
            minutes on cheap one-epoch probes (high expected improvement per
            second) and ending with no model trained to the end. Off by default
            (method ``qt_finish``): on the 8-minute demo (3 seeds) it changed the
            10k-test top-1 by +0.23, -0.24 and +0.01 points (docs/optimizer.md).
        cost_quantile: with a known remaining budget, a step is only started if
            this quantile of its duration fits in it, not just the predicted
            seconds: the prediction times a factor learnt from this run's own
            errors, the log ratios of real to predicted seconds of its earlier
            steps (first steps of a config and continuations apart, as their
            errors differ; before any, a log-std of ``COST_ERROR_PRIOR_STD``
            weighing as ``COST_ERROR_PRIOR_STEPS`` steps). The cost model is
            meta-learned on GPU runs and corrected per model online, so a first
            step of an unusual config (batch size 4, 60% frozen, on a CPU) can
            take 1.4x its prediction: with the point prediction alone a real 8-minute run
            started such a step with 70 s left and ended 28 s over its budget.
            ``None``: the point prediction must fit (the acquisition always
            uses the point prediction).
        refit_steps: if > 0, each time the number of observed epochs reaches
            16, 32, 64, ... the network and GP hyperparameters are re-fitted to
            this task's observations for this many marginal-likelihood steps,
            starting from the meta-trained weights (a pure function of the
            observations and the seed, so a replayed journal refits identically).
    """

    horizons: tuple[int, ...] = (1, 2, 4, 8, 16)
    growth: float | None = None
    cost_power: float = 0.75
    blackbox: bool = False
    max_observations: int = 500
    pool_size: int = 256
    neighbours_every: int = 8
    refit_steps: int = 0
    refit_lr: float = 1e-3
    start_with_defaults: bool = True
    endgame: bool = False
    schedule_epochs: int | None = None
    val_size: int | None = None
    believe_pending: bool = True
    finish_reserve: bool = False
    cost_quantile: float | None = 0.9

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["horizons"] = list(self.horizons)
        return d


@dataclass
class _Trial:
    trial_id: str
    config: Config
    scores: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    done: bool = False
    pending: bool = False
    curve: np.ndarray = field(default_factory=lambda: np.zeros(N_CURVE, dtype=np.float32))
    belief: tuple[int, np.ndarray, float] | None = None
    """Pending step's fantasy: (epoch when proposed, its query row, predicted mean)."""
    obs_rows: np.ndarray | None = None
    """Surrogate rows of the observed epochs (row ``e - 1``: epoch ``e`` after ``e - 1``)."""

    @property
    def epoch(self) -> int:
        return len(self.scores)


class QuickTune:
    """The Quick-Tune optimizer (see module docstring).

    Args:
        surrogate: a meta-trained :class:`~hubtune.surrogate.model.Surrogate`.
        max_epochs: highest fidelity.
        candidates: fixed pool as ``(trial_id, config)`` pairs, or ``None`` with ``space``.
        space: search space to sample candidates from.
        meta_features: the target dataset's meta-features.
        descriptors: hub descriptors of the candidates' models.
        seed: seeds pool sampling and tie breaking.
        settings: behaviour knobs.
    """

    def __init__(
        self,
        surrogate: Surrogate,
        max_epochs: int,
        candidates: Sequence[tuple[str, Config]] | None = None,
        space: Any = None,
        meta_features: Any = None,
        descriptors: dict[str, ModelDescriptor | None] | None = None,
        seed: int = 0,
        settings: QuickTuneSettings | None = None,
    ) -> None:
        if candidates is None and space is None:
            raise QuickTuneError("QuickTune needs candidates or a search space")
        if max_epochs < 1:
            raise QuickTuneError(f"max_epochs must be >= 1, got {max_epochs}")
        self.surrogate = surrogate
        self.max_epochs = int(max_epochs)
        self.space = space
        self.meta_features = meta_features
        self.descriptors = dict(descriptors or {})
        self.seed = int(seed)
        self.settings = settings or QuickTuneSettings()
        self._rng = np.random.default_rng(self.seed)
        self._trials: list[_Trial] = []
        self._index: dict[str, int] = {}
        self._static = np.zeros((0, 0), dtype=np.float32)
        self._cost_prior = np.zeros(0)
        self._journal: list[dict[str, Any]] = []
        self._overhead: dict[str, list[float]] = {"start": [], "resume": []}
        self._cost_errors: dict[str, list[float]] = {"start": [], "resume": []}
        self._tells_since_neighbours = 0
        self._base_surrogate = surrogate
        self._next_refit = 16
        self._anchors: list[str] = []
        if candidates is not None:
            self._add_candidates(list(candidates))
        else:
            if self.settings.start_with_defaults:
                self._add_anchors()
            self._refill_pool()

    # ------------------------------------------------------------ the pool
    def _add_candidates(self, items: list[tuple[str, Config]], dedupe: bool = False) -> None:
        new = [(tid, cfg) for tid, cfg in items if tid not in self._index]
        if dedupe:
            # search-space mode: skip configs that train exactly like one already in
            # the pool (e.g. a warmup_lr without warmup epochs)
            seen = {t.config.effective_key() for t in self._trials}
            kept = []
            for tid, cfg in new:
                k = cfg.effective_key()
                if k not in seen:
                    seen.add(k)
                    kept.append((tid, cfg))
            new = kept
        if not new:
            return
        for tid, cfg in new:
            self._index[tid] = len(self._trials)
            self._trials.append(_Trial(tid, cfg))
        fb = self.surrogate.features
        for _, cfg in new:
            if cfg.model not in self.descriptors:
                self.descriptors[cfg.model] = None
        cfgs = [c for _, c in new]
        static = fb.static_rows(cfgs, self.descriptors, self.meta_features)
        prior = self.surrogate.cost.predict_log(cfgs, self.descriptors, self.meta_features)
        self._static = static if self._static.size == 0 else np.concatenate([self._static, static])
        self._cost_prior = np.concatenate([self._cost_prior, prior])

    def _add_anchors(self) -> None:
        """Each model's default config (when the space allows it), tried first."""
        from hubtune.optim.defaults import default_candidates
        from hubtune.protocol.context import TaskContext

        ctx = TaskContext(max_epochs=self.max_epochs, space=self.space)
        anchors = [(c.trial_id, c.config) for c in default_candidates(ctx)
                   if self.space.contains(c.config)]
        self._add_candidates(anchors, dedupe=True)
        self._anchors = [tid for tid, _ in anchors if tid in self._index]

    def _next_anchor(self) -> Step | None:
        for tid in self._anchors:
            t = self._trials[self._index[tid]]
            if t.epoch == 0 and not t.pending and not t.done:
                t.pending = True
                return Step(trial_id=tid, config=t.config, to_epoch=1,
                            info={"why": "default config of the model (strong start)"})
        return None

    def _refill_pool(self) -> None:
        """Top the pool of never-started configs up to ``pool_size`` (search-space mode)."""
        if self.space is None:
            return
        fresh = sum(1 for t in self._trials if t.epoch == 0 and not t.pending and not t.done)
        want = self.settings.pool_size - fresh
        if want <= 0:
            return
        sampled = self.space.sample(want, seed=int(self._rng.integers(2**31 - 1)))
        self._add_candidates([(c.key(), c) for c in sampled], dedupe=True)

    def _add_neighbours(self) -> None:
        """One-exchange neighbours of the three best configs (search-space mode)."""
        if self.space is None:
            return
        started = [t for t in self._trials if t.scores]
        started.sort(key=lambda t: -max(t.scores))
        items = []
        choices = self.space.choices
        for t in started[:3]:
            names = [n for n in t.config.active_hyperparameters() if n in choices and len(choices[n]) > 1]
            for name in self._rng.permutation(names)[:8]:
                values = [v for v in choices[name] if v != getattr(t.config, name)]
                value = values[int(self._rng.integers(len(values)))]
                try:
                    cfg = t.config.replace(**{name: value})
                except ValueError:
                    continue
                if self.space.contains(cfg):
                    items.append((cfg.key(), cfg))
        self._add_candidates(items, dedupe=True)

    # ---------------------------------------------------------- observations
    def _observations(self) -> tuple[np.ndarray, np.ndarray]:
        """The observed epochs' rows and scores, at most ``max_observations`` of them.

        Each trial's most recent epoch is kept first, then its first epoch, then
        its other epochs newest first (stable over trials).
        """
        rows, ys, prio = [], [], []
        for t in self._trials:
            n = t.epoch
            if n == 0 or t.obs_rows is None:
                continue
            rows.append(t.obs_rows)
            ys.append(np.asarray(t.scores, dtype=np.float64))
            e = np.arange(1, n + 1)
            prio.append(np.where(e == n, 0, np.where(e == 1, 1, 2 + (n - e))))
        if not rows:
            return np.zeros((0, self.surrogate.features.dim), dtype=np.float32), np.zeros(0)
        order = np.argsort(np.concatenate(prio), kind="stable")[: self.settings.max_observations]
        return np.concatenate(rows)[order], np.concatenate(ys)[order]

    def _cost_per_epoch(self) -> np.ndarray:
        # Only trials that trained normally inform the cost model: a trial that
        # ended (crashed, diverged) at its first epoch did not pay a real epoch.
        # A linear-probing trial's head-only epochs (the trainer's first
        # linear_probing_epochs of the schedule) are far cheaper than the full
        # finetuning that follows, so only its later epochs count as its cost.
        head_only = linear_probing_epochs(self.settings.schedule_epochs or self.max_epochs)
        observed = {}
        for i, t in enumerate(self._trials):
            secs = t.seconds[head_only:] if t.config.linear_probing else t.seconds
            if secs and np.mean(secs) > 0 and (t.epoch >= 2 or not t.done):
                observed[i] = float(np.mean(secs))
        return OnlineCost(self._cost_prior, [t.config.model for t in self._trials]).per_epoch(observed)

    def _sampling_noise(self, y_obs: np.ndarray) -> np.ndarray | None:
        """Binomial variance of each observed score on ``val_size`` images (or None)."""
        n = self.settings.val_size
        if not n or len(y_obs) == 0:
            return None
        p = np.clip(y_obs, 0.0, 1.0)
        return p * (1.0 - p) / float(n)

    def _incumbent_epoch(self) -> int:
        """The epoch at which the best score so far was observed (0 before any)."""
        best, epoch = -math.inf, 0
        for t in self._trials:
            for e, s in enumerate(t.scores, start=1):
                if s > best:
                    best, epoch = s, e
        return epoch

    def _believe_pending(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Observations plus one "kriging believer" fantasy per pending step.

        A step still running on another worker is added as an observation of
        the query row it was proposed for (its trial's curve so far and target
        epoch) with the mean the surrogate predicted then. The GP's uncertainty
        there and at similar candidates shrinks, so their expected improvement
        drops and the next proposal is not a near copy of a running one. Only
        the surrogate sees fantasies: the incumbent and the journal hold real
        scores. Trials pending after a resume have no fantasy.
        """
        if not self.settings.believe_pending:
            return x, y
        beliefs = [t.belief for t in self._trials
                   if t.pending and t.belief is not None and t.belief[0] == t.epoch]
        if not beliefs:
            return x, y
        xb = np.stack([b[1] for b in beliefs]).astype(np.float32)
        yb = np.asarray([b[2] for b in beliefs], dtype=np.float64)
        return np.concatenate([x.astype(np.float32), xb]), np.concatenate([y, yb])

    def _overhead_estimate(self, kind: str) -> float:
        vals = self._overhead[kind]
        return float(np.mean(vals)) if vals else 0.0

    def _cost_margin(self, kind: str) -> float:
        """Factor from a step's predicted seconds to the ``cost_quantile`` of its real ones.

        The errors ``log(real / predicted)`` of this run's earlier steps of this
        ``kind`` ("start" or "resume") are taken as normal; their mean and
        variance are shrunk towards 0 and ``COST_ERROR_PRIOR_STD ** 2`` by
        ``COST_ERROR_PRIOR_STEPS`` pseudo-steps.
        """
        q = self.settings.cost_quantile
        if q is None:
            return 1.0
        errs = np.asarray(self._cost_errors[kind], dtype=np.float64)
        k = COST_ERROR_PRIOR_STEPS
        mu = float(errs.sum()) / (len(errs) + k)
        var = (k * COST_ERROR_PRIOR_STD**2 + float(((errs - mu) ** 2).sum())) / (len(errs) + k)
        return math.exp(mu + NormalDist().inv_cdf(q) * math.sqrt(var))

    def _finish_rows(self, open_idx: list[int]) -> tuple[list[int], np.ndarray | None]:
        """Started open trials and their query rows for the end of the schedule.

        Empty unless ``QuickTuneSettings.finish_reserve`` is on; the rows are
        predicted together with ``ask``'s own queries (one surrogate call).
        """
        if not self.settings.finish_reserve:
            return [], None
        started = [i for i in open_idx if self._trials[i].epoch > 0]
        if not started:
            return [], None
        epochs = np.asarray([self._trials[i].epoch for i in started])
        curves = np.stack([self._trials[i].curve for i in started])
        rows = assemble_rows(self._static[started], epochs, np.full(len(started), self.max_epochs), curves,
                             self.settings.schedule_epochs)
        return started, rows

    def _finish_reserve(
        self, budget_left: float, started: list[int], final: np.ndarray, per_epoch: np.ndarray,
        resume_margin: float,
    ) -> tuple[int, float] | None:
        """(trial index, seconds to finish it) the budget must keep, or None.

        ``started`` and ``final`` come from :meth:`_finish_rows` and the
        surrogate's predicted final scores; ``resume_margin`` is
        :meth:`_cost_margin` of a continuation. See
        ``QuickTuneSettings.finish_reserve``.
        """
        if not started:
            return None
        final = np.minimum(final, 1.0)
        resume = self._overhead_estimate("resume")
        # its likely duration, as for any step (cost_quantile)
        to_finish = resume_margin * np.asarray(
            [per_epoch[i] * (self.max_epochs - self._trials[i].epoch) + resume for i in started])
        feasible = to_finish <= budget_left
        if not feasible.any():
            return None
        k = int(np.argmax(np.where(feasible, final, -np.inf)))
        finished = [t.scores[-1] for t in self._trials if t.scores and t.epoch >= self.max_epochs]
        if finished and max(finished) >= final[k]:
            return None  # a finished model is already as good as finishing would give
        return started[k], float(to_finish[k])

    # ------------------------------------------------------------------- ask
    def ask(self, budget_left: float | None = None) -> Step | None:
        """The step with the highest expected improvement per predicted second."""
        if self.space is not None:
            anchor = self._next_anchor()
            if anchor is not None:
                return anchor
            self._refill_pool()
        open_idx = [i for i, t in enumerate(self._trials) if not t.done and not t.pending and t.epoch < self.max_epochs]
        if not open_idx:
            return None
        q_trial, q_k = [], []
        for i in open_idx:
            t = self._trials[i]
            n = t.epoch
            if self.settings.blackbox:
                if n > 0:
                    continue
                ks = [self.max_epochs]
            else:
                # a step may at most multiply the trial's epochs by (1 + growth): a
                # never-started config is probed for one epoch first, so a bad one
                # is dropped cheaply (the option to stop that a long blind step loses)
                cap = self.max_epochs if self.settings.growth is None else max(1, int(self.settings.growth * n))
                ks = sorted({min(k, cap, self.max_epochs - n) for k in self.settings.horizons})
            q_trial.extend([i] * len(ks))
            q_k.extend(ks)
        if not q_trial:
            return None
        trial_idx = np.asarray(q_trial)
        ks_arr = np.asarray(q_k, dtype=np.float64)
        prefix = np.asarray([self._trials[i].epoch for i in q_trial])
        curves = np.stack([self._trials[i].curve for i in q_trial])
        xq = assemble_rows(self._static[trial_idx], prefix, prefix + np.asarray(q_k), curves,
                           self.settings.schedule_epochs)
        x_obs, y_obs = self._observations()
        x_all, y_all = self._believe_pending(x_obs, y_obs)
        finish_idx, finish_rows = self._finish_rows(open_idx) if budget_left is not None else ([], None)
        # one surrogate call: the queries, the reserve's final epochs, the observed epochs
        noisy = bool(self.settings.val_size) and len(y_obs) > 0
        parts = [xq] + ([finish_rows] if finish_rows is not None else []) + ([x_obs] if noisy else [])
        mean, std = self.surrogate.predict(x_all, y_all, np.concatenate(parts).astype(np.float32),
                                           extra_noise=self._sampling_noise(y_all))
        n_q, n_f = len(xq), 0 if finish_rows is None else len(finish_rows)
        final = mean[n_q:n_q + n_f]
        smoothed_obs = mean[n_q + n_f:]
        mean, std = mean[:n_q], std[:n_q]
        mean = np.minimum(mean, 1.0)  # scores are fractions (guards extrapolation on odd inputs)
        self._last_query = (trial_idx, ks_arr, mean, std)

        if noisy:
            best = float(min(smoothed_obs.max(), 1.0))  # see QuickTuneSettings.val_size
        elif len(y_obs):
            best = float(max(max(t.scores) for t in self._trials if t.scores))
        else:
            best = float(np.median(mean))
        ei = expected_improvement(mean, std, best)
        per_epoch_all = self._cost_per_epoch()
        per_epoch = per_epoch_all[trial_idx]
        started = np.asarray([self._trials[i].epoch > 0 for i in q_trial])
        overhead = np.where(started, self._overhead_estimate("resume"), self._overhead_estimate("start"))
        cost = per_epoch * ks_arr + overhead
        acq = ei / np.power(np.maximum(cost, 1e-6), self.settings.cost_power)
        reserve = None
        if budget_left is not None:
            resume_margin = self._cost_margin("resume")
            margin = np.where(started, resume_margin, self._cost_margin("start"))
            fits = cost * margin <= budget_left
            if self.settings.endgame and len(y_obs):
                fits &= started | (budget_left / np.maximum(per_epoch, 1e-9) >= self._incumbent_epoch())
            reserve = self._finish_reserve(budget_left, finish_idx, final, per_epoch_all, resume_margin)
            if reserve is not None:
                keep, keep_cost = reserve
                fits &= (trial_idx == keep) | (cost * margin + keep_cost <= budget_left)
            if not fits.any():
                return None
            acq = np.where(fits, acq, -np.inf)
        # deterministic tie-break by a seeded jitter far below any real difference
        finite = np.isfinite(acq)
        scale = float(np.abs(acq[finite]).max()) if finite.any() else 1.0
        acq = acq + self._rng.random(len(acq)) * 1e-12 * (scale + 1e-30)
        j = int(np.argmax(acq))
        t = self._trials[trial_idx[j]]
        t.pending = True
        t.belief = (t.epoch, xq[j], float(mean[j]))
        info = {
            "mean": float(mean[j]),
            "std": float(std[j]),
            "ei": float(ei[j]),
            "cost": float(cost[j]),
            "acq": float(acq[j]),
            "incumbent": best,
            "horizon": int(ks_arr[j]),
        }
        if budget_left is not None:
            info["cost_bound"] = float(cost[j] * margin[j])
        if reserve is not None:
            info["reserved_for"] = self._trials[reserve[0]].trial_id
            info["reserved_seconds"] = float(reserve[1])
        return Step(trial_id=t.trial_id, config=t.config, to_epoch=t.epoch + int(ks_arr[j]), info=info)

    # ------------------------------------------------------------------ tell
    def tell(self, result: StepResult) -> None:
        """Record a step's epochs, cost and status."""
        self._apply(
            result.step.trial_id,
            result.step.config,
            [(r.epoch, r.score, r.seconds) for r in result.records],
            result.status,
            result.seconds,
            step_prediction(result.step, "seconds"),
        )

    def _apply(
        self,
        trial_id: str,
        config: Config,
        records: list[tuple[int, float, float]],
        status: str,
        seconds: float,
        predicted_seconds: float | None = None,
    ) -> None:
        if trial_id not in self._index:
            if self.space is None:
                raise QuickTuneError(f"told about unknown trial {trial_id!r}")
            self._add_candidates([(trial_id, config)])
        t = self._trials[self._index[trial_id]]
        was_started = t.epoch > 0
        t.pending = False
        entry = {"trial_id": trial_id, "config": config.to_dict(),
                 "records": [list(r) for r in records], "status": status, "seconds": seconds}
        if predicted_seconds is not None:
            entry["predicted_seconds"] = predicted_seconds
        self._journal.append(entry)
        if (predicted_seconds is not None and predicted_seconds > 0 and seconds > 0
                and status == "ok" and records):
            self._cost_errors["resume" if was_started else "start"].append(
                math.log(seconds / predicted_seconds))
        for epoch, score, sec in records:
            if epoch != t.epoch + 1:
                if epoch <= t.epoch:
                    continue  # a repeated epoch (e.g. replay) adds nothing
                raise QuickTuneError(f"trial {trial_id!r}: epoch {epoch} follows epoch {t.epoch}")
            t.scores.append(float(score) if math.isfinite(score) else 0.0)
            t.seconds.append(float(sec))
        if records:
            extra = seconds - sum(r[2] for r in records)
            if extra > 0:
                self._overhead["resume" if was_started else "start"].append(float(extra))
        if t.scores:
            t.obs_rows, table = observed_rows(self._static[self._index[trial_id]], t.scores,
                                              self.settings.schedule_epochs)
            t.curve = table[-1]
        if status != "ok" or t.epoch >= self.max_epochs:
            t.done = True
        self._tells_since_neighbours += 1
        if self.space is not None and self._tells_since_neighbours >= self.settings.neighbours_every:
            self._tells_since_neighbours = 0
            self._add_neighbours()
        if self.settings.refit_steps > 0:
            n_obs = sum(t.epoch for t in self._trials)
            if n_obs >= self._next_refit:
                while self._next_refit <= n_obs:
                    self._next_refit *= 2
                self._refit(n_obs)

    def _refit(self, n_obs: int) -> None:
        """Fit a copy of the meta-trained surrogate to this task's observations."""
        x, y = self._observations()
        if len(y) < 2:
            return
        self.surrogate = self._base_surrogate.refit(x, y, steps=self.settings.refit_steps,
                                                    lr=self.settings.refit_lr,
                                                    seed=self.seed * 1_000_003 + n_obs)

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """JSON state: the tell journal, the candidate pool, pending trials and the RNG."""
        return {
            "kind": "quicktune",
            "version": 1,
            "seed": self.seed,
            "settings": self.settings.to_dict(),
            "pool": [[t.trial_id, t.config.to_dict()] for t in self._trials],
            "journal": list(self._journal),
            "pending": [t.trial_id for t in self._trials if t.pending],
            "rng": self._rng.bit_generator.state,
            "tells_since_neighbours": self._tells_since_neighbours,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output by replaying its journal."""
        if not isinstance(state, dict) or state.get("kind") != "quicktune":
            raise QuickTuneError("not a QuickTune state (missing kind='quicktune')")
        self._trials, self._index = [], {}
        self._static = np.zeros((0, 0), dtype=np.float32)
        self._cost_prior = np.zeros(0)
        self._journal = []
        self._overhead = {"start": [], "resume": []}
        self._cost_errors = {"start": [], "resume": []}
        self.surrogate = self._base_surrogate
        self._next_refit = 16
        space, self.space = self.space, None  # no pool refill or neighbours while replaying
        self._add_candidates([(tid, Config.from_dict(c)) for tid, c in state["pool"]])
        for entry in state["journal"]:
            self._apply(
                entry["trial_id"],
                Config.from_dict(entry["config"]),
                [(int(e), float(s), float(c)) for e, s, c in entry["records"]],
                entry["status"],
                float(entry["seconds"]),
                entry.get("predicted_seconds"),
            )
        self.space = space
        for tid in state.get("pending", []):
            if tid in self._index:
                self._trials[self._index[tid]].pending = True
        self._rng.bit_generator.state = state["rng"]
        self._tells_since_neighbours = int(state.get("tells_since_neighbours", 0))

    # ------------------------------------------------------------- reporting
    def incumbent(self) -> tuple[str, int, float] | None:
        """``(trial_id, epoch, score)`` of the best epoch observed, or ``None``."""
        best = None
        for t in self._trials:
            if t.scores:
                e = int(np.argmax(t.scores))
                if best is None or t.scores[e] > best[2]:
                    best = (t.trial_id, e + 1, float(t.scores[e]))
        return best

    @property
    def n_candidates(self) -> int:
        return len(self._trials)


def records_from_scores(scores: Sequence[float], seconds: Sequence[float], start_epoch: int = 0) -> list[EpochRecord]:
    """Epoch records for a replayed curve segment (helper for tests and tools)."""
    return [
        EpochRecord(epoch=start_epoch + i + 1, score=float(s), train_seconds=float(c))
        for i, (s, c) in enumerate(zip(scores, seconds, strict=True))
    ]
