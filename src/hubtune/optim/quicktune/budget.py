"""Quick-Tune's budget rules: small pure functions of predicted costs and the time left.

:meth:`~hubtune.optim.quicktune.QuickTune.ask` combines them; each is one rule
of :class:`~hubtune.optim.quicktune.QuickTuneSettings` (``horizons``/``growth``/
``blackbox``, ``cost_quantile``, ``endgame``, ``finish_reserve``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

from hubtune.optim.quicktune.settings import COST_ERROR_PRIOR_STD, COST_ERROR_PRIOR_STEPS


def step_lengths(epoch: int, max_epochs: int, horizons: Sequence[int], growth: float | None,
                 blackbox: bool, fit: int | None = None) -> list[int]:
    """The step lengths (epochs) considered for a trial at ``epoch``, ascending.

    Blackbox: only a full run from scratch (none once started). Otherwise each
    horizon, capped at the epochs left and, with ``growth``, at
    ``max(1, int(growth * epoch))``: a never-started config is probed for one
    epoch first, so a bad one is dropped cheaply (the option to stop that a
    long blind step loses). ``fit`` (:func:`epochs_that_fit`) caps every
    horizon at the epochs the remaining budget holds, so a step too long for
    the budget is shortened to the longest that fits instead of refused
    (``fit < 1``: no step; blackbox steps are never shortened).
    """
    if blackbox:
        return [] if epoch > 0 else [max_epochs]
    cap = max_epochs if growth is None else max(1, int(growth * epoch))
    if fit is not None:
        cap = min(cap, fit)
    return sorted({min(k, cap, max_epochs - epoch) for k in horizons} - {0}) if cap >= 1 else []


def installment(chosen: int, epoch: int, lengths: Sequence[int], growth: float | None, first: int = 1) -> int:
    """The step length to run when the ``chosen`` length (of a trial at ``epoch``) won.

    A step is valued by where it leads (its score after ``chosen`` epochs), but
    run in installments: at most ``max(first, growth * epoch)`` epochs, the
    longest of the trial's ``lengths`` within that (their shortest if none is),
    so a new config is seen after ``first`` epochs and a diverging or
    disappointing one stops there; each installment is a fresh decision.
    ``growth=None``: the chosen length.
    """
    if growth is None:
        return chosen
    cap = max(first, int(growth * epoch))
    within = [k for k in lengths if k <= min(chosen, cap)]
    return max(within) if within else min(chosen, *lengths)


def first_installment(first: int, parallel: int | None, others_pending: bool) -> int:
    """The smallest installment: ``parallel`` while other steps are running (a parallel
    search), else ``first``.

    With several workers a config's first look is cheaper to spread: the other workers
    keep the search moving while it runs. ``parallel=None``: always ``first``.

    >>> first_installment(2, 1, others_pending=True), first_installment(2, 1, others_pending=False)
    (1, 2)
    """
    return int(parallel) if parallel is not None and others_pending else int(first)


def epochs_that_fit(per_epoch: np.ndarray, overhead: np.ndarray, margin: np.ndarray,
                    budget_left: float) -> np.ndarray:
    """The most epochs ``k`` whose likely duration, ``(per_epoch * k + overhead) * margin``,
    fits in ``budget_left`` (0 where not even one epoch does); :func:`fits` agrees."""
    room = budget_left / np.maximum(margin, 1e-12) - overhead
    k = np.clip(np.floor(room / np.maximum(per_epoch, 1e-12) + 1e-9), 0, 2**31 - 1)
    k = k - (~fits(per_epoch * k + overhead, margin, budget_left) & (k > 0))  # rounding at the boundary
    return k.astype(np.int64)


def cost_margin(log_errors: Sequence[float], quantile: float | None,
                prior_std: float = COST_ERROR_PRIOR_STD, prior_steps: float = COST_ERROR_PRIOR_STEPS) -> float:
    """Factor from a step's predicted seconds to the ``quantile`` of its real ones.

    ``log_errors`` are ``log(real / predicted)`` of this run's earlier steps of
    one kind, taken as normal; their mean and variance are shrunk towards 0 and
    ``prior_std ** 2`` by ``prior_steps`` pseudo-steps. ``quantile=None``: 1.
    """
    if quantile is None:
        return 1.0
    errs = np.asarray(log_errors, dtype=np.float64)
    k = prior_steps
    mu = float(errs.sum()) / (len(errs) + k)
    var = (k * prior_std**2 + float(((errs - mu) ** 2).sum())) / (len(errs) + k)
    return math.exp(mu + NormalDist().inv_cdf(quantile) * math.sqrt(var))


def fits(cost: np.ndarray, margin: np.ndarray, budget_left: float) -> np.ndarray:
    """Steps whose likely duration (predicted seconds times margin) fits in the budget."""
    return cost * margin <= budget_left


def endgame(started: np.ndarray, per_epoch: np.ndarray, budget_left: float, incumbent_epoch: int) -> np.ndarray:
    """Steps the endgame rule allows: continuations, and first steps of configs that
    can still train ``incumbent_epoch`` epochs (at their seconds per epoch) in the budget."""
    return started | (budget_left / np.maximum(per_epoch, 1e-9) >= incumbent_epoch)


def best_reachable(p_win: np.ndarray, trial_idx: np.ndarray, reachable: np.ndarray) -> np.ndarray:
    """Per step, its trial's highest ``p_win`` over the ``reachable`` steps (e.g. those
    that fit in the budget); ``-inf`` for a trial with none.

    A step is a path to all its trial's later epochs, so the end-game rule
    (:func:`can_win`) judges a step by the best epoch its trial can still reach.
    """
    best = np.full(int(trial_idx.max()) + 1 if len(trial_idx) else 0, -np.inf)
    np.maximum.at(best, trial_idx, np.where(reachable, p_win, -np.inf))
    return best[trial_idx]


def can_win(p_win: np.ndarray, trial_idx: np.ndarray, reachable: np.ndarray, threshold: float) -> np.ndarray:
    """Steps of trials that may still beat the incumbent: at some epoch their steps
    can reach, the predicted chance ``p_win`` of scoring above the incumbent is at
    least ``threshold`` (:func:`best_reachable`).

    A one-epoch step of a trial whose 16-epoch prediction may win is kept; a
    trial whose every reachable epoch almost surely stays below the incumbent
    (an exotic new config with a wide but low prior in the last minutes) takes
    no step.
    """
    return best_reachable(p_win, trial_idx, reachable) >= threshold


def seconds_to_finish(per_epoch: np.ndarray, epochs_left: np.ndarray | int, overhead: float, margin: float
                      ) -> np.ndarray:
    """Likely seconds to train ``epochs_left`` more epochs: ``margin`` times the predicted
    seconds plus the start or resume ``overhead``."""
    return margin * (np.asarray(per_epoch) * np.asarray(epochs_left) + overhead)


def finish_reserve(budget_left: float, epochs: np.ndarray, final: np.ndarray, per_epoch: np.ndarray,
                   max_epochs: int, resume_seconds: float, resume_margin: float,
                   best_finished: float | None) -> tuple[int, float] | None:
    """(position in the started trials, seconds to finish it) the budget must keep, or None.

    Among started, unfinished trials (their ``epochs``, predicted ``final``
    scores at ``max_epochs`` and seconds ``per_epoch``), the one with the highest
    predicted final score that can still be finished in ``budget_left`` (its
    likely duration: ``resume_margin`` times the predicted seconds plus the
    resume overhead). None when none can, or when a finished trial's final score
    ``best_finished`` is already at least that prediction.
    """
    if len(epochs) == 0:
        return None
    final = np.minimum(final, 1.0)
    to_finish = seconds_to_finish(per_epoch, max_epochs - np.asarray(epochs), resume_seconds, resume_margin)
    feasible = to_finish <= budget_left
    if not feasible.any():
        return None
    k = int(np.argmax(np.where(feasible, final, -np.inf)))
    if best_finished is not None and best_finished >= final[k]:
        return None  # a finished model is already as good as finishing would give
    return k, float(to_finish[k])


def keeps_reserve(is_reserved: np.ndarray, cost: np.ndarray, margin: np.ndarray, budget_left: float,
                  reserve_seconds: float) -> np.ndarray:
    """Steps that leave the reserved trial's finishing time (or are that trial's own)."""
    return is_reserved | (cost * margin + reserve_seconds <= budget_left)


def can_finish_from_scratch(per_epoch: np.ndarray, max_epochs: int, start_seconds: float, start_margin: float,
                            budget_left: float) -> np.ndarray:
    """Never-started configs that alone could still be trained to ``max_epochs``.

    With the finish reserve on, a new config that cannot reach the end of its
    schedule in the budget left can neither become the exported model (its
    checkpoint would not have annealed) nor overtake the trial the reserve keeps
    time for: its epochs are wasted. Likely duration as for any start:
    ``start_margin`` times the predicted seconds plus the start overhead.
    """
    return seconds_to_finish(per_epoch, max_epochs, start_seconds, start_margin) <= budget_left


def last_chance(final: np.ndarray, best_finished: float | None) -> int | None:
    """When no started trial can be finished any more: the one every step should go to, or None.

    The started trial with the highest predicted score at the end of its
    schedule (position in ``final``): each epoch brings its checkpoint closer to
    the end, while a probe of anything else can only end unfinished. None when
    there is none, or when a finished trial's score ``best_finished`` is already
    at least its prediction (then the search may spend what is left freely).
    """
    if len(final) == 0:
        return None
    k = int(np.argmax(final))
    if best_finished is not None and best_finished >= float(final[k]):
        return None
    return k


def reserve(budget_left: float, epochs: np.ndarray, final: np.ndarray, per_epoch: np.ndarray, max_epochs: int,
            resume_seconds: float, resume_margin: float, best_finished: float | None) -> tuple[int, float] | None:
    """(position in the started trials, seconds) the finish reserve keeps, or None.

    :func:`finish_reserve` while some started trial can still be finished; when
    none can, :func:`last_chance`'s trial with the whole ``budget_left``.
    """
    kept = finish_reserve(budget_left, epochs, final, per_epoch, max_epochs, resume_seconds, resume_margin,
                          best_finished)
    if kept is not None or len(epochs) == 0:
        return kept
    to_finish = seconds_to_finish(per_epoch, max_epochs - np.asarray(epochs), resume_seconds, resume_margin)
    if (to_finish <= budget_left).any():
        return None  # finishable, but a finished trial is already as good
    k = last_chance(np.minimum(final, 1.0), best_finished)
    return None if k is None else (k, float(budget_left))


def cooled_power(power: float, cooling: float | None, budget_left: float | None,
                 budget_start: float | None) -> float:
    """The acquisition's cost exponent once part of the budget is spent ("cost cooling").

    ``power`` while nothing is spent, falling linearly to ``cooling * power`` when
    the budget is gone: cheap steps are favoured early, and later the expensive
    configs cost-aware EI keeps putting off get their turn. ``cooling`` ``None``,
    or no known budget: ``power`` throughout.

    >>> cooled_power(0.75, 0.0, 50.0, 100.0)
    0.375
    >>> cooled_power(0.75, None, 50.0, 100.0)
    0.75
    """
    if cooling is None or budget_left is None or not budget_start or budget_start <= 0:
        return power
    left = min(max(budget_left / budget_start, 0.0), 1.0)
    return power * (cooling + (1.0 - cooling) * left)
