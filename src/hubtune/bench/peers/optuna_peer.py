"""Optuna's TPE sampler with its Hyperband pruner, driven through ask/tell.

Each Optuna trial samples a configuration (define-by-run: a conditional
hyperparameter is only suggested when its parent activates it; ordered
numeric hyperparameters as an integer index into the table's sorted values so
TPE sees their order, categorical ones with ``suggest_categorical``), which
is mapped onto the nearest table configuration
(:class:`~hubtune.bench.peers.mapping.TableMapping`). The trial then trains
and reports its validation score after every epoch
(``trial.report(score, epoch)``); ``trial.should_prune()`` is asked at every
epoch where the ``HyperbandPruner`` (min 1, max ``ctx.max_epochs`` epochs,
reduction factor 3) can decide, i.e. at epochs 1, 3, 9, 27, so a step trains
up to the next of those epochs (or to the end): the same decisions as asking
after every epoch, with fewer pauses. A trial that survives trains to the end.
Continuation is natural: an Optuna trial is one training run.

A new Optuna trial is a new training run, so when it maps onto a
configuration trained before it gets a fresh trial id ``"<run id>#<n>"``.
"""

from __future__ import annotations

import warnings
from typing import Any

from hubtune.bench.peers._common import (
    RESTART_SEPARATOR,
    PeerOptimizer,
    require_candidates,
)
from hubtune.bench.peers.mapping import TableMapping
from hubtune.protocol.context import TaskContext
from hubtune.protocol.steps import Step, StepResult
from hubtune.space.searchspace import CONDITIONS, ORDINAL, _token


def next_stop(epoch: int, max_epochs: int, reduction_factor: int = 3) -> int:
    """The next epoch after ``epoch`` where the Hyperband pruner may decide, or the end."""
    rung = 1
    while rung <= epoch:
        rung *= reduction_factor
    return min(rung, max_epochs)


class OptunaTPEHyperband(PeerOptimizer):
    """Optuna TPE + Hyperband pruning over the table's configurations."""

    method = "optuna_tpe_hb"

    def __init__(self, ctx: TaskContext, reduction_factor: int = 3) -> None:
        require_candidates(ctx, self.method)
        super().__init__(ctx)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        self.mapping = TableMapping(ctx.candidates, seed=ctx.seed)
        self.reduction_factor = reduction_factor
        self.study = optuna.create_study(
            study_name=f"hubtune-{ctx.dataset or 'task'}-{ctx.seed}",
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=ctx.seed),
            pruner=optuna.pruners.HyperbandPruner(
                min_resource=1, max_resource=ctx.max_epochs, reduction_factor=reduction_factor),
        )
        self._running: dict[str, Any] = {}  # trial id -> optuna trial (not finished)
        self._epoch: dict[str, int] = {}
        self._uses: dict[int, int] = {}
        self._index: dict[str, int] = {}

    # ------------------------------------------------------------ sampling
    def _suggest(self, trial: Any) -> dict[str, Any]:
        values: dict[str, Any] = {}
        models = sorted({c.config.model for c in self.mapping.candidates})
        values["model"] = trial.suggest_categorical("model", models) if len(models) > 1 \
            else models[0]
        for name in self.mapping.hyperparameters:
            if name in CONDITIONS:
                parent, on = CONDITIONS[name]
                if values.get(parent) not in on:
                    values[name] = None
                    continue
            choices = self.mapping.values[name]
            if not choices:
                values[name] = None
            elif len(choices) == 1:
                values[name] = choices[0]
            elif name in ORDINAL:
                values[name] = choices[trial.suggest_int(name, 0, len(choices) - 1)]
            else:
                tokens = [_token(v) for v in choices]
                values[name] = choices[tokens.index(trial.suggest_categorical(name, tokens))]
        return values

    def _start(self) -> Step:
        trial = self.study.ask()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = self._suggest(trial)
        idx, dist = self.mapping.nearest(values, prefer_unused=True)
        run_id = self.mapping.candidates[idx].trial_id
        n = self._uses.get(idx, 0)
        self._uses[idx] = n + 1
        tid = run_id if n == 0 else f"{run_id}{RESTART_SEPARATOR}{n}"
        trial.set_user_attr("table_run", run_id)
        self._running[tid] = trial
        self._epoch[tid] = 0
        self._index[tid] = idx
        return self._step(tid, {"mapping_distance": dist})

    def _step(self, tid: str, info: dict[str, Any]) -> Step:
        to_epoch = next_stop(self._epoch[tid], self.ctx.max_epochs, self.reduction_factor)
        info = {**info, "optuna_trial": int(self._running[tid].number)}
        return Step(trial_id=tid, config=self.mapping.candidates[self._index[tid]].config,
                    to_epoch=to_epoch, info=info)

    # ------------------------------------------------------------ protocol
    def _ask(self, budget_left: float | None) -> Step | None:
        for tid in self._running:
            if tid not in self.pending:
                return self._step(tid, {"continue": True})
        return self._start()

    def _tell(self, result: StepResult) -> None:
        from optuna.trial import TrialState

        tid = result.step.trial_id
        trial = self._running[tid]
        for rec in result.records:
            trial.report(float(rec.score), int(rec.epoch))
            self._epoch[tid] = int(rec.epoch)
        done = result.status != "ok" or self._epoch[tid] >= self.ctx.max_epochs
        if not done and result.records and trial.should_prune():
            self.study.tell(trial, state=TrialState.PRUNED)
        elif done or not result.records:
            if result.records:
                self.study.tell(trial, float(result.records[-1].score))
            else:
                self.study.tell(trial, state=TrialState.FAIL)
        else:
            return  # survives: continues at the next ask
        del self._running[tid]


def make_optuna_tpe_hb(ctx: TaskContext) -> OptunaTPEHyperband:
    """Factory for the registry (``optuna_tpe_hb``)."""
    return OptunaTPEHyperband(ctx)
