"""Quick-Tune's behaviour knobs and error type."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

COST_ERROR_PRIOR_STD = 0.25
"""Log-std of real / predicted step seconds assumed before a run has measured any."""
COST_ERROR_PRIOR_STEPS = 3.0
"""How many measured steps that assumption weighs as."""


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
            second) and ending with no model trained to the end. With it on, a
            never-started config (default-config anchors included) is only started
            if it alone could still reach ``max_epochs``, and when no started trial
            can be finished any more the whole budget left goes to the one predicted
            to end best (:func:`~hubtune.optim.quicktune.budget.can_finish_from_scratch`,
            :func:`~hubtune.optim.quicktune.budget.last_chance`). Off here, on for
            searches of a search space (``hubtune run``; ``make_quicktune``): on the
            leave-one-out replay (50-epoch schedules, hours) it raised the 16 h mean
            regret from 0.030 to 0.047 (three surrogate seeds), while in 8-minute
            real runs it was what let the search export a model trained to the end
            of its schedule (docs/optimizer.md).
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
        fit_horizon: with a known remaining budget, every step length is capped
            at the epochs that likely fit (``cost_quantile``'s margin included,
            :func:`~hubtune.optim.quicktune.budget.epochs_that_fit`): a
            16-epoch continuation that no longer fits is shortened to the
            longest step that does, not refused (the epochs it can still train
            may be the ones that win). ``False``: such a step is refused. On the
            leave-one-out replay (20 datasets x 2 seeds, runs with a 1 h and a
            4 h budget) it lowered the regret at the budget's end from 0.187 to
            0.183 (1 h) and 0.073 to 0.067 (4 h), no dataset worse; at 16 h the
            final regret is unchanged.
        win_threshold: with a known remaining budget, a trial only takes a step
            if at some epoch its allowed steps reach, the predicted chance of a
            score above the improvement bar is at least this
            (:func:`~hubtune.optim.quicktune.budget.can_win`). Near the end, when
            the incumbent's own next epoch no longer fits, plain EI per second
            otherwise starts wide-prior new configs that cannot win in the
            epochs left. Only trials whose longest step the budget cuts short are
            judged (mid-run, EI per second decides alone). 0.002 (a 2.9-sigma
            miss): the GP's std for never-started configs can be overconfident,
            and at 0.02 it dropped a config whose first epoch then won (a 2 h
            TEX_DTD replay with a weakly trained surrogate: regret 0.167 instead
            of 0.058) and raised BRD's regret at the end of a 4 h run from 0.026
            to 0.048; at 0.002 and 0.005 no replayed dataset was worse, and the
            runs end sooner (nothing left that can win). ``None``: off.
        lookahead: if > 0, each step of a trial is valued by at least this weight
            times the expected improvement of the trial's score at the end of the
            schedule (one more surrogate call per ask), so a slow starter's first
            epochs count for where its curve may end. Off: on the 16 h replay
            (1 seed) weight 1 gave 0.149 / 0.079 / 0.021 at 1 / 4 / 16 h against
            0.174 / 0.067 / 0.029 (worse at 4 h; docs/optimizer.md).
        installment_growth: if set, the winning step (valued by its score after all its
            epochs) runs only its first ``max(installment_first, installment_growth * n)``
            epochs for a trial at epoch ``n`` (the longest allowed step within that;
            :func:`~hubtune.optim.quicktune.budget.installment`), and the next decision
            is made afresh. Unlike ``growth``, which also restricts which steps are
            valued (so a slow starter is judged by its first epoch), a config is still
            chosen for where its curve leads, but a long step from scratch cannot sink
            hours into a config that diverges in its first epochs. ``None``: off. On the
            leave-one-out replay (fold surrogates of three meta-training seeds, 16 h runs)
            growth 1.0 with ``installment_first`` 2 lowered the mean regret at 1 / 4 / 16 h
            from 0.177 / 0.078 / 0.041 (before issue #13) to 0.150 / 0.077 / 0.032; growth
            1.5 and 2.0 did about the same as 1.0 (docs/optimizer.md).
        installment_first: the smallest installment (epochs), a never-started config's
            first. 2 rather than 1: one epoch of a warm-up or heavily frozen config is
            often at chance level and its continuation then looks hopeless (a BRD replay
            dropped the config that reaches the best score after two epochs at chance);
            on the replay 2 and 4 were better than 1 at 4 h and 16 h (0.077 / 0.074 vs
            0.081 at 4 h) and 2 also at 1 h.
        installment_first_parallel: the smallest installment while other steps are
            running (a parallel search; :func:`~hubtune.optim.quicktune.budget.first_installment`).
            ``None``: ``installment_first`` always. On the parallel replay (4 workers,
            20 datasets x 3 seeds, 16 h) a first installment of 1 instead of 2 gave
            0.099 / 0.025 / 0.0094 mean regret at 1 / 4 / 16 h against 0.110 / 0.034 /
            0.0071, and reached the 1-worker final mean 3.4x sooner instead of 2.7x
            (docs/optimizer.md). One worker never has another step running, so it is unchanged.
        calibrate_new: if set, predictions for never-started configs are calibrated to
            this task from the standardised residuals of this run's earlier new-config
            predictions (made before each observation; anchors' first steps only with
            ``anchor_residuals``):
            mean ``m + a s``, std ``c s``, with ``(a, c)`` shrunk towards ``(0, 1)`` by
            this many pseudo-residuals (:mod:`hubtune.optim.quicktune.calibration`).
            ``None``: off. The network and kernel keep their meta-trained values, so the
            prior cannot be forgotten. On the leave-one-out replay without installments it is
            neutral: with the fold surrogates of three meta-training seeds, 0.176 / 0.081 / 0.041 mean regret at
            1 / 4 / 16 h against 0.177 / 0.079 / 0.041 without (an earlier gain measured with
            one set of surrogates did not survive another; docs/optimizer.md). Replaying the
            journals of 33 real offline-hub runs (``benchmarks/prediction_replay.py``) it did
            not bring new-config predictions closer either (signed error -4.1 vs -4.0 points;
            after 5 observations -10.3 vs -10.9, inside +-1 std 40% vs 50%). On by default
            because, together with installments, it was the better setting on the replay
            across the three surrogates: 0.146 / 0.076 / 0.030 against 0.161 / 0.078 / 0.033
            without it.
        calibrate_continue: the same for continuations of started trials (their own
            residuals). ``None``: off.
        skip_collapse: a step whose score fell below this fraction of its trial's best
            earlier score (training diverged) adds no calibration residual
            (:func:`~hubtune.optim.quicktune.results.collapsed`). ``None``: every step does.
            On the leave-one-out replay (16 h, fold surrogates of meta-training seeds 0, 1, 2)
            0.5 against ``None``: 1 / 4 / 16 h mean regret +0.0001 / +0.0002 / -0.0010
            (16 h 95% CI [-0.0022, -0.0002], 5 datasets better, 0 worse); with 10 bench seeds
            and surrogate seed 0, level at every horizon (docs/optimizer.md).
        anchor_residuals: whether the first steps of the default-config anchors (started
            whatever they predict) add residuals to the new-config calibration. Off: an
            anchor's prediction is another model's default conditioned on the first
            anchor, and its miss (+-10-16 points at a 3-4 point std on the real offline
            runs) is about that model, not about how this task treats new configs; pooled
            with the sampled configs' misses it hid their consistent optimism. Replaying the
            journals of 53 real runs (``benchmarks/prediction_replay.py``; 29 Fashion-MNIST,
            15 animal-mnist, 9 digits), off against on: mean signed error of new-config
            predictions after 5 observations -1.8 / -0.3 / -9.3 points against -3.5 / -0.5 /
            -13.3, continuations unchanged. The replay of the meta-dataset has no anchors.
        refit_steps: if > 0, each time the number of observed epochs reaches
            16, 32, 64, ... the network and GP hyperparameters are re-fitted to
            this task's observations for this many marginal-likelihood steps,
            starting from the meta-trained weights (a pure function of the
            observations and the seed, so a replayed journal refits identically).
            Off: on the leave-one-out replay (fold surrogates of meta-training seeds
            0, 1, 2; 16 h) 20 and 50 steps gave 0.181 / 0.106 / 0.038 and 0.180 /
            0.105 / 0.041 mean regret at 1 / 4 / 16 h against 0.146 / 0.076 / 0.029.
        refit_lr: the Adam learning rate of those steps.
        refit_scope: what the refit changes: ``"all"`` (network and GP), or
            ``"kernel"``: only the kernel's output scale and lengthscale, the
            observation noise and the prior mean's constant (the network's features stay
            meta-trained). Also worse on the same replay: 20 steps at learning rate 0.01,
            0.164 / 0.090 / 0.034; 50 at 0.03, 0.160 / 0.095 / 0.035. The per-task
            calibration (``calibrate_new``, ``calibrate_continue``), which moves and
            widens predictions after the GP instead, is what adapts to the task.
        cost_cooling: if set, the cost exponent falls linearly from ``cost_power``
            to ``cost_cooling * cost_power`` as the budget is spent
            (:func:`~hubtune.optim.quicktune.budget.cooled_power`; a run with no known
            budget is not cooled). Cost-aware EI keeps putting off expensive configs,
            and on some datasets the best runs are expensive models. Off: on the same
            replay, 0.0 gave 0.150 / 0.072 / 0.034 and 0.5 gave 0.145 / 0.075 / 0.035
            against 0.146 / 0.076 / 0.029 (worse at 16 h).
    """

    horizons: tuple[int, ...] = (1, 2, 4, 8, 16)
    growth: float | None = None
    cost_power: float = 0.75
    cost_cooling: float | None = None
    blackbox: bool = False
    max_observations: int = 500
    pool_size: int = 256
    neighbours_every: int = 8
    refit_steps: int = 0
    refit_lr: float = 1e-3
    refit_scope: str = "all"
    start_with_defaults: bool = True
    endgame: bool = False
    schedule_epochs: int | None = None
    val_size: int | None = None
    believe_pending: bool = True
    finish_reserve: bool = False
    cost_quantile: float | None = 0.9
    fit_horizon: bool = True
    win_threshold: float | None = 0.002
    lookahead: float = 0.0
    installment_growth: float | None = 1.0
    installment_first: int = 2
    installment_first_parallel: int | None = 1
    calibrate_new: float | None = 5.0
    calibrate_continue: float | None = 5.0
    skip_collapse: float | None = 0.5
    anchor_residuals: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible field values."""
        d = asdict(self)
        d["horizons"] = list(self.horizons)
        return d
