"""The Quick-Tune optimizer: ask/tell over a candidate pool (see :mod:`hubtune.optim.quicktune`).

Over 500 lines by design: one class's ask/tell/state, whose every rule is already a pure
function in :mod:`.budget`, :mod:`.acquisition`, :mod:`.calibration` and :mod:`.pool`; what is
left here is the wiring of those rules to the pool's state, which a further split would only
spread over files that all reach into the same object.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from hubtune.hub.descriptor import ModelDescriptor
from hubtune.optim.quicktune import budget
from hubtune.optim.quicktune.acquisition import (
    cost_scaled,
    expected_improvement,
    improvement_bar,
    tie_break,
    win_probability,
)
from hubtune.optim.quicktune.calibration import apply_calibration, fit_calibration
from hubtune.optim.quicktune.pool import (
    CandidatePool,
    default_anchors,
    neighbours,
    sample_fresh,
)
from hubtune.optim.quicktune.results import (  # noqa: F401  (re-exported: their home was here)
    collapsed,
    effective_status,
    records_from_scores,
    score_prediction,
    step_residual,
)
from hubtune.optim.quicktune.settings import QuickTuneError, QuickTuneSettings
from hubtune.protocol.steps import Step, StepResult, step_prediction
from hubtune.space.config import Config
from hubtune.surrogate.features import assemble_rows
from hubtune.surrogate.model import Surrogate


class QuickTune:
    """The Quick-Tune optimizer (see :mod:`hubtune.optim.quicktune`).

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
        self.seed = int(seed)
        self.settings = settings or QuickTuneSettings()
        self.pool = CandidatePool(surrogate, descriptors, meta_features, self.settings.schedule_epochs)
        self._rng = np.random.default_rng(self.seed)
        self._base_surrogate = surrogate
        self._anchors: list[str] = []
        self._reset_history()
        if candidates is not None:
            self.pool.add(list(candidates))
        else:
            if self.settings.start_with_defaults:
                anchors = default_anchors(self.space, self.max_epochs)
                self.pool.add(anchors, dedupe=True)
                self._anchors = [tid for tid, _ in anchors if tid in self.pool]
            self._refill_pool()

    def _reset_history(self) -> None:
        self._journal: list[dict[str, Any]] = []
        self._overhead: dict[str, list[float]] = {"start": [], "resume": []}
        self._cost_errors: dict[str, list[float]] = {"start": [], "resume": []}
        self._residuals: dict[str, list[float]] = {"start": [], "resume": []}
        self._tells_since_neighbours = 0
        self._budget_start: float | None = None  # the budget left at the first ask that knew it
        self._next_refit = 16
        self.surrogate = self._base_surrogate

    @property
    def descriptors(self) -> dict[str, ModelDescriptor | None]:
        """Hub descriptors of the pool's models (``None`` where unknown)."""
        return self.pool.descriptors

    # ------------------------------------------------------------ the pool
    def _next_anchor(self, budget_left: float | None = None) -> Step | None:
        for tid in self._anchors:
            t = self.pool[tid]
            if t.epoch == 0 and not t.pending and not t.done:
                if not self._anchor_fits(tid, budget_left):
                    self._anchors = []  # the remaining default configs become ordinary candidates
                    return None
                t.pending = True
                info: dict[str, Any] = {"why": "default config of the model (strong start)", "anchor": True}
                info.update(self._anchor_prediction(tid))
                return Step(trial_id=tid, config=t.config, to_epoch=1, info=info)
        return None

    def _anchor_fits(self, trial_id: str, budget_left: float | None) -> bool:
        """With the finish reserve on, whether a default config may still start unconditionally.

        Anchors are started before EI per second decides, so they obey the same
        rules as any new config: once something was observed, it must be able to
        reach ``max_epochs`` alone, and its first epoch must leave the reserve of
        the started trial most worth finishing (or, when none can be finished,
        no anchor starts unless a finished trial is already as good).
        """
        if budget_left is None or not self.settings.finish_reserve or self.pool.best_score() is None:
            return True
        i = self.pool.index[trial_id]
        per_epoch = self._cost_per_epoch()
        start, margin = self._overhead_estimate("start"), self._cost_margin("start")
        if not budget.can_finish_from_scratch(per_epoch[[i]], self.max_epochs, start, margin, budget_left)[0]:
            return False
        finish_idx, rows = self._finish_rows(self.pool.open_indices(self.max_epochs))
        if not finish_idx:
            return True
        final, _ = self._posterior(rows)
        reserve = self._reserve(budget_left, finish_idx, final, per_epoch)
        if reserve is None:
            return True
        if reserve[1] >= budget_left:  # a last chance: everything is kept for that trial
            return False
        cost = np.asarray([per_epoch[i] + start])
        return bool(budget.keeps_reserve(np.zeros(1, dtype=bool), cost, np.asarray([margin]), budget_left,
                                         reserve[1])[0])

    def _reserve(self, budget_left: float, finish_idx: list[int], final: np.ndarray, per_epoch_all: np.ndarray
                 ) -> tuple[int, float] | None:
        """(trial index, seconds) the budget keeps for finishing a started trial, or None.

        The finishable trial with the highest predicted final score
        (:func:`~hubtune.optim.quicktune.budget.finish_reserve`); when none can be
        finished any more, the whole budget for the most promising started one
        (:func:`~hubtune.optim.quicktune.budget.last_chance`).
        """
        trials = self.pool.trials
        finished = [t.scores[-1] for t in trials if t.scores and t.epoch >= self.max_epochs]
        kept = budget.reserve(budget_left, np.asarray([trials[i].epoch for i in finish_idx]), final,
                              per_epoch_all[finish_idx], self.max_epochs, self._overhead_estimate("resume"),
                              self._cost_margin("resume"), max(finished) if finished else None)
        return None if kept is None else (finish_idx[kept[0]], kept[1])

    def _anchor_prediction(self, trial_id: str) -> dict[str, float]:
        """The (calibrated) prediction for an anchor's first epoch, for the decision log and
        the calibration residuals (the anchor is started whatever it predicts)."""
        i = self.pool.index[trial_id]
        t = self.pool.trials[i]
        row = assemble_rows(self.pool.static[[i]], np.zeros(1, dtype=int), np.ones(1, dtype=int),
                            t.curve[None], self.settings.schedule_epochs)
        m, sd = self._posterior(row)
        m = np.minimum(m, 1.0)
        cm, cs = self._calibrated(m, sd, np.zeros(1, dtype=bool))
        return self._prediction_info(m, sd, cm, cs, 0)

    def _posterior(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The GP's (mean, std) at query ``rows``, conditioned on this task's observations and
        the pending steps' fantasies (uncalibrated)."""
        x_obs, y_obs = self._observations()
        x_all, y_all = self._believe_pending(x_obs, y_obs)
        return self.surrogate.predict(x_all, y_all, rows.astype(np.float32), extra_noise=self._sampling_noise(y_all))

    def _refill_pool(self) -> None:
        """Top the pool of never-started configs up to ``pool_size`` (search-space mode)."""
        if self.space is not None:
            self.pool.add(sample_fresh(self.pool, self.space, self._rng, self.settings.pool_size), dedupe=True)

    # ---------------------------------------------------------- observations
    def _observations(self) -> tuple[np.ndarray, np.ndarray]:
        return self.pool.observations(self.settings.max_observations)

    def _cost_per_epoch(self) -> np.ndarray:
        return self.pool.cost_per_epoch(self.settings.schedule_epochs or self.max_epochs)

    def _sampling_noise(self, y_obs: np.ndarray) -> np.ndarray | None:
        """Binomial variance of each observed score on ``val_size`` images (or None)."""
        n = self.settings.val_size
        if not n or len(y_obs) == 0:
            return None
        p = np.clip(y_obs, 0.0, 1.0)
        return p * (1.0 - p) / float(n)

    def _believe_pending(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Observations plus one "kriging believer" fantasy per pending step.

        A step still running on another worker is added as an observation of
        the query row it was proposed for (its trial's curve so far and target
        epoch) with the mean the GP predicted then (before this task's calibration, which
        is applied on top of the GP's posterior). The GP's uncertainty
        there and at similar candidates shrinks, so their expected improvement
        drops and the next proposal is not a near copy of a running one. Only
        the surrogate sees fantasies: the incumbent and the journal hold real
        scores. Trials pending after a resume have no fantasy.
        """
        if not self.settings.believe_pending:
            return x, y
        beliefs = [t.belief for t in self.pool.trials
                   if t.pending and t.belief is not None and t.belief[0] == t.epoch]
        if not beliefs:
            return x, y
        xb = np.stack([b[1] for b in beliefs]).astype(np.float32)
        yb = np.asarray([b[2] for b in beliefs], dtype=np.float64)
        return np.concatenate([x.astype(np.float32), xb]), np.concatenate([y, yb])

    def _overhead_estimate(self, kind: str) -> float:
        vals = self._overhead[kind]
        return float(np.mean(vals)) if vals else 0.0

    def _noise_var(self, mean: np.ndarray) -> np.ndarray:
        """Observation-noise variance of a score predicted at ``mean``: the GP's learnt
        noise plus (``val_size``) the binomial sampling variance."""
        var = np.full(len(mean), float(self.surrogate.likelihood.noise.detach().item()))
        if self.settings.val_size:
            p = np.clip(mean, 0.0, 1.0)
            var = var + p * (1.0 - p) / float(self.settings.val_size)
        return var

    def calibration(self, kind: str) -> tuple[float, float]:
        """``(offset in std units, std scale)`` applied to predictions of ``kind`` ("start":
        never-started configs, "resume": continuations); ``(0, 1)`` when that calibration is off
        (``QuickTuneSettings.calibrate_new`` / ``calibrate_continue``)."""
        w = self.settings.calibrate_new if kind == "start" else self.settings.calibrate_continue
        if w is None:
            return 0.0, 1.0
        return fit_calibration(self._residuals[kind], w)

    def _calibrated(self, mean: np.ndarray, std: np.ndarray, started: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Query means (capped at 1) and stds after this task's calibration of each kind."""
        for kind, mask in (("start", ~started), ("resume", started)):
            offset, scale = self.calibration(kind)
            if (offset, scale) != (0.0, 1.0) and mask.any():
                mean, std = apply_calibration(mean, std, offset, scale, mask)
        return np.minimum(mean, 1.0), std

    def _prediction_info(self, gp_mean: np.ndarray, gp_std: np.ndarray, mean: np.ndarray, std: np.ndarray,
                         j: int) -> dict[str, float]:
        """A step's predicted score at its target epoch: ``mean``/``std`` (what decided; the
        GP's latent score), ``noise_std`` (observation noise), and the uncalibrated
        ``gp_mean``/``gp_std`` when a calibration changed them."""
        info = {"mean": float(mean[j]), "std": float(std[j]),
                "noise_std": float(math.sqrt(self._noise_var(gp_mean[j:j + 1])[0]))}
        if float(mean[j]) != float(gp_mean[j]) or float(std[j]) != float(gp_std[j]):
            info["gp_mean"], info["gp_std"] = float(gp_mean[j]), float(gp_std[j])
        return info

    def _cost_margin(self, kind: str) -> float:
        """:func:`budget.cost_margin` of this run's steps of ``kind`` ("start" or "resume")."""
        return budget.cost_margin(self._cost_errors[kind], self.settings.cost_quantile)

    # ------------------------------------------------------------------- ask
    def _fit_caps(self, open_idx: list[int], per_epoch_all: np.ndarray, budget_left: float | None
                  ) -> tuple[list[int | None], set[int]]:
        """Per open trial, the most epochs its next step may take (``fit_horizon``; else
        None), and the trials whose longest step the budget cuts short (the end-game)."""
        if budget_left is None or not open_idx:
            return [None] * len(open_idx), set()
        s = self.settings
        trials = self.pool.trials
        started = np.asarray([trials[i].epoch > 0 for i in open_idx])
        overhead = np.where(started, self._overhead_estimate("resume"), self._overhead_estimate("start"))
        margin = np.where(started, self._cost_margin("resume"), self._cost_margin("start"))
        fit = budget.epochs_that_fit(per_epoch_all[open_idx], overhead, margin, budget_left)
        bound = {i for i, k in zip(open_idx, fit, strict=True)
                 if k < max(budget.step_lengths(trials[i].epoch, self.max_epochs, s.horizons, s.growth,
                                                s.blackbox), default=0)}
        return ([int(k) for k in fit] if s.fit_horizon else [None] * len(open_idx)), bound

    def _queries(self, open_idx: list[int], caps: list[int | None]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(trial index, step length, query row) of every (open trial, step length) pair."""
        s = self.settings
        q_trial, q_k = [], []
        for i, cap in zip(open_idx, caps, strict=True):
            ks = budget.step_lengths(self.pool.trials[i].epoch, self.max_epochs, s.horizons, s.growth, s.blackbox,
                                     cap)
            q_trial.extend([i] * len(ks))
            q_k.extend(ks)
        if not q_trial:
            return None
        trials = self.pool.trials
        prefix = np.asarray([trials[i].epoch for i in q_trial])
        curves = np.stack([trials[i].curve for i in q_trial])
        trial_idx = np.asarray(q_trial)
        xq = assemble_rows(self.pool.static[trial_idx], prefix, prefix + np.asarray(q_k), curves,
                           s.schedule_epochs)
        return trial_idx, np.asarray(q_k, dtype=np.float64), xq

    def _finish_rows(self, open_idx: list[int]) -> tuple[list[int], np.ndarray | None]:
        """Started open trials and their query rows for the end of the schedule.

        Empty unless ``QuickTuneSettings.finish_reserve`` is on; the rows are
        predicted together with ``ask``'s own queries (one surrogate call).
        """
        trials = self.pool.trials
        started = [i for i in open_idx if trials[i].epoch > 0] if self.settings.finish_reserve else []
        if not started:
            return [], None
        epochs = np.asarray([trials[i].epoch for i in started])
        curves = np.stack([trials[i].curve for i in started])
        rows = assemble_rows(self.pool.static[started], epochs, np.full(len(started), self.max_epochs), curves,
                             self.settings.schedule_epochs)
        return started, rows

    def _lookahead_ei(self, open_idx: list[int], best: float) -> np.ndarray:
        """Per open trial, the expected improvement of its score at the end of the schedule
        (``QuickTuneSettings.lookahead``): any step of it is the way there."""
        trials = self.pool.trials
        epochs = np.asarray([trials[i].epoch for i in open_idx])
        curves = np.stack([trials[i].curve for i in open_idx])
        rows = assemble_rows(self.pool.static[open_idx], epochs, np.full(len(open_idx), self.max_epochs), curves,
                             self.settings.schedule_epochs)
        x_obs, y_obs = self._observations()
        x_all, y_all = self._believe_pending(x_obs, y_obs)
        mean, std = self.surrogate.predict(x_all, y_all, rows.astype(np.float32),
                                           extra_noise=self._sampling_noise(y_all))
        return self.settings.lookahead * expected_improvement(np.minimum(mean, 1.0), std, best)

    def _installment_query(self, j: int, trial_idx: np.ndarray, ks: np.ndarray) -> int:
        """The query of the installment of the chosen query ``j`` (``installment_growth``)."""
        g = self.settings.installment_growth
        if g is None:
            return j
        same = np.flatnonzero(trial_idx == trial_idx[j])
        k = budget.installment(int(ks[j]), self.pool.trials[trial_idx[j]].epoch, [int(ks[i]) for i in same], g,
                               first=budget.first_installment(self.settings.installment_first,
                                                              self.settings.installment_first_parallel,
                                                              any(t.pending for t in self.pool.trials)))
        return int(same[np.flatnonzero(ks[same] == k)[0]])

    def _predict(self, xq: np.ndarray, finish_rows: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, bool]:
        """One surrogate call for the queries, the reserve's final epochs and (noisy
        scores) the observed epochs: query mean (capped at 1) and std, final means,
        smoothed observations, and whether any score was observed."""
        x_obs, y_obs = self._observations()
        x_all, y_all = self._believe_pending(x_obs, y_obs)
        noisy = bool(self.settings.val_size) and len(y_obs) > 0
        parts = [xq] + ([finish_rows] if finish_rows is not None else []) + ([x_obs] if noisy else [])
        mean, std = self.surrogate.predict(x_all, y_all, np.concatenate(parts).astype(np.float32),
                                           extra_noise=self._sampling_noise(y_all))
        n_q, n_f = len(xq), 0 if finish_rows is None else len(finish_rows)
        final, smoothed = mean[n_q:n_q + n_f], (mean[n_q + n_f:] if noisy else None)
        # scores are fractions (guards extrapolation on odd inputs)
        return np.minimum(mean[:n_q], 1.0), std[:n_q], final, smoothed, len(y_obs) > 0

    def _budget_rules(self, budget_left: float, trial_idx: np.ndarray, cost: np.ndarray, started: np.ndarray,
                      per_epoch_all: np.ndarray, finish_idx: list[int], final: np.ndarray, observed: bool,
                      ) -> tuple[np.ndarray, np.ndarray, tuple[int, float] | None]:
        """(steps allowed, their cost margins, reserve as (trial index, seconds) or None)."""
        s = self.settings
        resume_margin = self._cost_margin("resume")
        margin = np.where(started, resume_margin, self._cost_margin("start"))
        allowed = budget.fits(cost, margin, budget_left)
        if s.endgame and observed:
            allowed &= budget.endgame(started, per_epoch_all[trial_idx], budget_left, self.pool.incumbent_epoch())
        if s.finish_reserve and observed:  # a new config must be able to reach max_epochs
            allowed &= started | budget.can_finish_from_scratch(
                per_epoch_all[trial_idx], self.max_epochs, self._overhead_estimate("start"),
                self._cost_margin("start"), budget_left)
        reserve = self._reserve(budget_left, finish_idx, final, per_epoch_all) if finish_idx else None
        if reserve is not None:
            allowed &= budget.keeps_reserve(trial_idx == reserve[0], cost, margin, budget_left, reserve[1])
        return allowed, margin, reserve

    def _cost_power(self, budget_left: float | None) -> float:
        """The acquisition's cost exponent now: ``cost_power``, cooled as the budget is spent."""
        if budget_left is not None and self._budget_start is None:
            self._budget_start = float(budget_left)
        return budget.cooled_power(self.settings.cost_power, self.settings.cost_cooling,
                                   budget_left, self._budget_start)

    def ask(self, budget_left: float | None = None) -> Step | None:
        """The step with the highest expected improvement per predicted second."""
        if self.space is not None:
            anchor = self._next_anchor(budget_left)
            if anchor is not None:
                return anchor
            self._refill_pool()
        open_idx = self.pool.open_indices(self.max_epochs)
        per_epoch_all = self._cost_per_epoch()
        caps, bound = self._fit_caps(open_idx, per_epoch_all, budget_left)
        queries = self._queries(open_idx, caps) if open_idx else None
        if queries is None:
            return None
        trial_idx, ks, xq = queries
        finish_idx, finish_rows = self._finish_rows(open_idx) if budget_left is not None else ([], None)
        gp_mean, gp_std, final, smoothed, observed = self._predict(xq, finish_rows)
        started = np.asarray([self.pool.trials[i].epoch > 0 for i in trial_idx])
        mean, std = self._calibrated(gp_mean, gp_std, started)
        best = improvement_bar(smoothed, self.pool.best_score() if observed else None, mean)
        ei = expected_improvement(mean, std, best)
        if self.settings.lookahead:
            ei = np.maximum(ei, self._lookahead_ei(open_idx, best)[np.searchsorted(open_idx, trial_idx)])
        overhead = np.where(started, self._overhead_estimate("resume"), self._overhead_estimate("start"))
        cost = per_epoch_all[trial_idx] * ks + overhead
        acq = cost_scaled(ei, cost, self._cost_power(budget_left))
        reserve = margin = p_win = None
        if budget_left is not None:
            allowed, margin, reserve = self._budget_rules(budget_left, trial_idx, cost, started, per_epoch_all,
                                                          finish_idx, final, observed)
            if observed and self.settings.win_threshold is not None and bound:
                p_win = budget.best_reachable(win_probability(mean, std, best), trial_idx, allowed)
                allowed &= ~np.isin(trial_idx, list(bound)) | (p_win >= self.settings.win_threshold)
            if not allowed.any():
                return None
            acq = np.where(allowed, acq, -np.inf)
        j, acq = tie_break(acq, self._rng)
        valued = int(ks[j])
        j = self._installment_query(j, trial_idx, ks)
        t = self.pool.trials[trial_idx[j]]
        t.pending = True
        t.belief = (t.epoch, xq[j], float(gp_mean[j]))  # the GP believes its own mean
        info: dict[str, Any] = self._prediction_info(gp_mean, gp_std, mean, std, j)
        info.update({"ei": float(ei[j]), "cost": float(cost[j]), "acq": float(acq[j]), "incumbent": best,
                     "horizon": int(ks[j])})
        if valued != int(ks[j]):
            info["valued_horizon"] = valued  # the step won for where it leads; this is its installment
        if margin is not None:
            info["cost_bound"] = float(cost[j] * margin[j])
        if p_win is not None:
            info["p_win"] = float(p_win[j])  # its trial's best chance to beat the bar in the budget
        if reserve is not None:
            info["reserved_for"] = self.pool.trials[reserve[0]].trial_id
            info["reserved_seconds"] = float(reserve[1])
        return Step(trial_id=t.trial_id, config=t.config, to_epoch=t.epoch + int(ks[j]), info=info)

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
            result.step.to_epoch,
            score_prediction(result.step.info),
            anchor=bool((result.step.info or {}).get("anchor")),
        )

    def _apply(
        self,
        trial_id: str,
        config: Config,
        records: list[tuple[int, float, float]],
        status: str,
        seconds: float,
        predicted_seconds: float | None = None,
        to_epoch: int | None = None,
        prediction: Sequence[float] | None = None,
        anchor: bool = False,
    ) -> None:
        if trial_id not in self.pool:
            if self.space is None:
                raise QuickTuneError(f"told about unknown trial {trial_id!r}")
            self.pool.add([(trial_id, config)])
        t = self.pool[trial_id]
        kind = "resume" if t.epoch > 0 else "start"
        t.pending = False
        entry = {"trial_id": trial_id, "config": config.to_dict(),
                 "records": [list(r) for r in records], "status": status, "seconds": seconds}
        if predicted_seconds is not None:
            entry["predicted_seconds"] = predicted_seconds
        if to_epoch is not None:
            entry["to_epoch"] = int(to_epoch)
        if prediction is not None:
            entry["prediction"] = [float(prediction[0]), float(prediction[1])]
        if anchor:
            entry["anchor"] = True
        self._journal.append(entry)
        z = step_residual(records, to_epoch, prediction)
        if anchor and kind == "start" and not self.settings.anchor_residuals:
            z = None  # started whatever it predicted; its miss is another model's, not this task's
        if z is not None and not collapsed(t.scores, records, to_epoch, self.settings.skip_collapse):
            self._residuals[kind].append(z)
        self.pool.record(t, records, self.settings.schedule_epochs, QuickTuneError)
        told, status = status, effective_status(status, to_epoch, t.epoch)
        if (predicted_seconds is not None and predicted_seconds > 0 and seconds > 0
                and status == "ok" and records):
            self._cost_errors[kind].append(math.log(seconds / predicted_seconds))
        if records and status == told:  # a truncated step's extra seconds are no overhead
            extra = seconds - sum(r[2] for r in records)
            if extra > 0:
                self._overhead[kind].append(float(extra))
        if status != "ok" or t.epoch >= self.max_epochs:
            t.done = True
        self._tells_since_neighbours += 1
        if self.space is not None and self._tells_since_neighbours >= self.settings.neighbours_every:
            self._tells_since_neighbours = 0
            self.pool.add(neighbours(self.pool, self.space, self._rng), dedupe=True)
        if self.settings.refit_steps > 0:
            n_obs = sum(t.epoch for t in self.pool.trials)
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
                                                    seed=self.seed * 1_000_003 + n_obs,
                                                    scope=self.settings.refit_scope)

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """JSON state: the tell journal, the candidate pool, pending trials and the RNG."""
        return {
            "kind": "quicktune",
            "version": 1,
            "seed": self.seed,
            "settings": self.settings.to_dict(),
            "pool": [[t.trial_id, t.config.to_dict()] for t in self.pool.trials],
            "journal": list(self._journal),
            "pending": [t.trial_id for t in self.pool.trials if t.pending],
            "rng": self._rng.bit_generator.state,
            "tells_since_neighbours": self._tells_since_neighbours,
            "budget_start": self._budget_start,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output by replaying its journal."""
        if not isinstance(state, dict) or state.get("kind") != "quicktune":
            raise QuickTuneError("not a QuickTune state (missing kind='quicktune')")
        self.pool.clear()
        self._reset_history()
        space, self.space = self.space, None  # no pool refill or neighbours while replaying
        self.pool.add([(tid, Config.from_dict(c)) for tid, c in state["pool"]])
        for entry in state["journal"]:
            self._apply(
                entry["trial_id"],
                Config.from_dict(entry["config"]),
                [(int(e), float(s), float(c)) for e, s, c in entry["records"]],
                entry["status"],
                float(entry["seconds"]),
                entry.get("predicted_seconds"),
                entry.get("to_epoch"),
                entry.get("prediction"),
                anchor=bool(entry.get("anchor")),
            )
        self.space = space
        for tid in state.get("pending", []):
            if tid in self.pool:
                self.pool[tid].pending = True
        self._rng.bit_generator.state = state["rng"]
        self._tells_since_neighbours = int(state.get("tells_since_neighbours", 0))
        start = state.get("budget_start")
        self._budget_start = float(start) if start is not None else None

    # ------------------------------------------------------------- reporting
    def incumbent(self) -> tuple[str, int, float] | None:
        """``(trial_id, epoch, score)`` of the best epoch observed, or ``None``."""
        return self.pool.incumbent()

    @property
    def n_candidates(self) -> int:
        return len(self.pool)
