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

Modules: :mod:`.settings` (the knobs), :mod:`.pool` (the candidates and their
observations), :mod:`.acquisition` (EI per second), :mod:`.budget` (the rules
that keep steps inside the remaining budget, and installments), :mod:`.calibration`
(per-task calibration of predictions), :mod:`.results` (what a told step means),
:mod:`.optimizer` (ask/tell/state);
:mod:`hubtune.optim.qt_factory` builds one for a task. Surrogate rows come from
:mod:`hubtune.surrogate.features`.
"""

from __future__ import annotations

from hubtune.optim.quicktune.acquisition import expected_improvement
from hubtune.optim.quicktune.optimizer import QuickTune, records_from_scores
from hubtune.optim.quicktune.settings import (
    COST_ERROR_PRIOR_STD,
    COST_ERROR_PRIOR_STEPS,
    QuickTuneError,
    QuickTuneSettings,
)

__all__ = [
    "COST_ERROR_PRIOR_STD",
    "COST_ERROR_PRIOR_STEPS",
    "QuickTune",
    "QuickTuneError",
    "QuickTuneSettings",
    "expected_improvement",
    "records_from_scores",
]
