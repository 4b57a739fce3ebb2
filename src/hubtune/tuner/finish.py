"""The end of a ``hubtune run``: final epochs, the export to ``best/``, the ensemble, ``result.json``.

:func:`finish_run` is what :class:`~hubtune.tuner.hubtuner.HubTuner` calls once
the search loop has ended. The trials are ranked by the validation score of
their latest checkpoint (in the run's metric), the best one may be trained
``final_epochs`` further, and the first whose checkpoint loads is exported;
everything ``best/metrics.json`` holds (chance levels, latency) is known before
``best/`` is published, so a published ``best/`` is never modified in place.

A finished run run again exports nothing new when the journal's last
``exported`` note names the trial, epoch and ensemble size that would be
exported now and ``best/`` is byte for byte what that export wrote
(:func:`~hubtune.tuner.bestdir.fingerprint`); the result is still written and
the summary still shown.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hubtune.protocol.steps import Step
from hubtune.tuner.outcome import add_chance_fields, no_model_reason
from hubtune.tuner.results import SearchResult
from hubtune.tuner.settings import RunSettings


@dataclass
class RunEnd:
    """What the end of a run needs from the session that searched."""

    out: Path
    settings: RunSettings
    ds: Any  # the loaded dataset
    store: Any  # the CheckpointStore of the trials
    loop: Any  # the SearchLoop, ended
    outcome: Any  # its LoopOutcome
    on_event: Callable[[str, dict[str, Any]], None]
    loggers: Any  # the LoggerSet of the experiment trackers
    allowed: set[str] | None = None  # models the deployment limits allow (None: all)
    latency: dict[str, Any] = field(default_factory=dict)  # measured latency per model
    latency_cond: Any = None  # their measurement Conditions
    recovered_best: list[str] = field(default_factory=list)  # what recover_best did at start

    def note(self, what: str, **fields: Any) -> None:
        """Append a ``note`` event to the run's journal."""
        self.loop.journal.append("note", what=what, **fields)


def ranked_trials(end: RunEnd) -> tuple[list[str], dict[str, int]]:
    """Trial ids with a checkpoint and a finite latest score, best first, and each
    trial's latest told epoch. Only models the deployment limits allow are ranked:
    the exported model is one we can hand over without retraining."""
    from hubtune.finetune.checkpoint import has_checkpoint

    latest: dict[str, tuple[int, float]] = {}
    for r in end.loop.results:
        for rec in r.records:
            latest[r.trial_id] = (rec.epoch, rec.score)
    model_of = {r.trial_id: r.step.config.model for r in end.loop.results}
    ranked = sorted(
        (t for t in latest if has_checkpoint(end.store.trial_dir(t))
         and math.isfinite(latest[t][1])
         and (end.allowed is None or model_of.get(t) in end.allowed)),
        key=lambda t: -latest[t][1],
    )
    return ranked, {t: e for t, (e, _s) in latest.items()}


def final_epochs(end: RunEnd, chosen: str) -> None:
    """Train the chosen trial ``final_epochs`` more epochs (up to ``max_epochs``)."""
    from hubtune.finetune.checkpoint import read_state
    from hubtune.space.config import Config
    from hubtune.tuner.export import CHECKPOINT_ERRORS

    settings = end.settings
    try:
        state = read_state(end.store.trial_dir(chosen))
    except CHECKPOINT_ERRORS:
        return  # the export reports the broken checkpoint and falls back
    target = min(int(state["epoch"]) + settings.final_epochs, settings.max_epochs)
    if target <= int(state["epoch"]):
        return
    end.on_event("final", {"trial_id": chosen, "to_epoch": target})
    res = end.loop.advance_outside_search(
        Step(chosen, Config.from_dict(state["config"]), target, {"why": "final epochs"}))
    end.note("final_epochs", trial_id=chosen, to_epoch=target,
             status=res.status if res else "worker lost")


def _checkpoint_epoch(end: RunEnd, trial_id: str) -> int | None:
    from hubtune.finetune.checkpoint import read_state
    from hubtune.tuner.export import CHECKPOINT_ERRORS

    try:
        return int(read_state(end.store.trial_dir(trial_id))["epoch"])
    except CHECKPOINT_ERRORS:
        return None


def _export_key(end: RunEnd, ranked: list[str], latest: dict[str, int]) -> dict[str, Any]:
    """What decides the export: the best trial and its checkpoint's epoch, the ensemble
    size and (with an ensemble) every candidate trial and its latest epoch."""
    key: dict[str, Any] = {"trial_id": ranked[0], "epoch": _checkpoint_epoch(end, ranked[0]),
                           "ensemble": end.settings.ensemble}
    if end.settings.ensemble > 0:
        key["candidates"] = [[t, latest[t]] for t in ranked]
    return key


def _still_exported(end: RunEnd, ranked: list[str],
                    latest: dict[str, int]) -> dict[str, Any] | None:
    """The metrics of ``best/`` when it already is the export this run would write now
    (same trial, epoch and ensemble size, files unchanged since); else ``None``."""
    from hubtune.tuner.bestdir import fingerprint

    if not ranked or not end.loop.durable:
        return None
    notes = [n for n in end.loop.journal.events("note") if n.get("what") == "exported"]
    last = notes[-1] if notes else {}
    wanted = _export_key(end, ranked, latest)
    if any(last.get(k) != v for k, v in wanted.items()) or last.get("fingerprint") is None:
        return None
    if fingerprint(end.out / "best") != last["fingerprint"]:
        return None
    try:
        return json.loads((end.out / "best" / "metrics.json").read_text())
    except (OSError, ValueError):
        return None


def _amend(end: RunEnd) -> Callable[[dict[str, Any]], None]:
    """What is added to an export's metrics before ``best/`` is published."""

    def amend(metrics: dict[str, Any]) -> None:
        if metrics.get("model") in end.latency:
            metrics["latency"] = {**end.latency_cond.to_dict(),
                                  "ms": end.latency[metrics["model"]]["ms"]}
        add_chance_fields(metrics, end.ds)

    return amend


def _search_facts(end: RunEnd) -> dict[str, Any]:
    """The search, as the model card describes it."""
    s, results = end.settings, end.loop.results
    return {"data": s.data, "optimizer": s.optimizer, "budget_seconds": s.budget,
            "elapsed_seconds": end.outcome.elapsed, "steps": len(results),
            "trials": len({r.trial_id for r in results}), "max_epochs": s.max_epochs,
            "seed": s.seed}


def export(end: RunEnd, ranked: list[str]) -> tuple[str | None, dict[str, Any]]:
    """Export the first loadable of ``ranked`` to ``best/`` (with the ensemble when asked);
    returns (exported trial id or None, its metrics)."""
    from hubtune.tuner.export import export_first_loadable

    settings = end.settings

    def broken(trial_id: str, reason: str) -> None:
        end.note("broken_checkpoint", trial_id=trial_id, reason=reason)
        end.on_event("notice", {"message": f"the checkpoint of trial {trial_id} cannot be "
                                f"exported ({reason}); trying the next-best trial"})

    chosen, metrics = export_first_loadable(
        [end.store.trial_dir(t) for t in ranked], end.ds, end.out / "best",
        device=settings.device,
        extra_metrics={"metric": settings.metric,
                       "search_elapsed_seconds": end.outcome.elapsed,
                       "budget_seconds": settings.budget},
        search=_search_facts(end), on_broken=broken, amend_metrics=_amend(end))
    if chosen is not None and settings.ensemble > 0:
        ensemble(end, [end.store.trial_dir(t) for t in ranked], metrics)
    if ranked and chosen is None:
        end.on_event("notice", {"message": "no trial checkpoint could be exported (see the "
                                "broken_checkpoint notes in journal.jsonl); best/ was not updated"})
    return chosen, metrics


def export_plan(settings: RunSettings, ds: Any) -> Any:
    """What the end of the run will evaluate (split sizes, ``--ensemble K``): the
    :class:`~hubtune.search.budget.ExportPlan` whose allowance the search keeps back."""
    from hubtune.search.budget import ExportPlan
    from hubtune.tuner.ensemble import MAX_CANDIDATES
    from hubtune.tuner.ensemble_cache import split_size

    return ExportPlan(n_val=split_size(ds, "val"), n_test=split_size(ds, "test"),
                      ensemble=settings.ensemble, budget=settings.budget,
                      max_candidates=MAX_CANDIDATES)


def ensemble(end: RunEnd, trial_dirs: list[Path], metrics: dict[str, Any]) -> None:
    """Add the greedy ensemble of the trained trials to ``best/`` (``metrics["ensemble"]``).

    The members' evaluation is bounded by the budget left, less what writing the
    members, measuring their latency and the report are expected to take
    (:meth:`~hubtune.search.budget.ExportPlan.tail_seconds`): fewer candidates, fewer
    members, or no ensemble (the single model) rather than an overrun.
    """
    from hubtune.search.budget import eval_seconds_per_image, load_seconds
    from hubtune.tuner.ensemble import build_ensemble
    from hubtune.tuner.export import CHECKPOINT_ERRORS  # includes ExportError

    broken_ids: list[str] = []

    def broken(trial_id: str, reason: str) -> None:
        broken_ids.append(trial_id)
        end.note("broken_checkpoint", trial_id=trial_id, reason=reason)

    s = end.settings
    plan = export_plan(s, end.ds)
    per_image = eval_seconds_per_image(end.loop.results, plan.n_val)
    load = load_seconds(end.loop.results)
    if load is not None:
        plan = replace(plan, load_seconds=load)
    tail = plan.tail_seconds(per_image or 0.0, min(s.ensemble, len(trial_dirs)))
    started = end.loop.elapsed()

    def time_left() -> float:
        return s.budget - end.loop.elapsed() - tail

    try:
        summary = build_ensemble(end.out, end.ds, trial_dirs, rounds=s.ensemble,
                                 metric=s.metric, device=s.device, on_broken=broken,
                                 time_left=time_left, per_image=per_image,
                                 load_seconds=plan.load_seconds)
    except CHECKPOINT_ERRORS as exc:
        summary = None
        end.on_event("notice", {"message": f"the ensemble was not exported: {exc}"})
    else:
        if summary is None:
            why = (f"no candidate's checkpoint could be loaded ({len(broken_ids)} broken)"
                   if broken_ids and time_left() > 0
                   else "the budget left no time to evaluate its candidates")
            end.on_event("notice", {"message": f"no ensemble: {why}; best/ holds the single model"})
    seconds = round(end.loop.elapsed() - started, 3)
    if summary is None:
        end.note("ensemble", members=0, seconds=seconds, time_left=round(time_left(), 3))
        return
    metrics["ensemble"] = summary
    end.note("ensemble", members=len(summary["members"]), computed=summary["cache"]["computed"],
             test_computed=len(summary["cache"]["test_computed_trials"]),
             cut_by_budget=summary["cut_by_budget"],
             dropped_by_budget=summary["dropped_by_budget"], seconds=seconds)
    if summary["cut_by_budget"] or summary["dropped_by_budget"]:
        end.on_event("notice", {"message": (
            f"the budget cut the ensemble: {summary['cut_by_budget']} candidate(s) not "
            f"evaluated, {summary['dropped_by_budget']} member(s) left out; "
            f"{len(summary['members'])} member(s) exported")})


def _result(end: RunEnd, best_dir: Path | None, metrics: dict[str, Any],
            no_model: str | None, used: float) -> SearchResult:
    s, results = end.settings, end.loop.results
    meta = json.loads((best_dir / "hubtune.json").read_text()) if best_dir else {}
    return SearchResult(
        out=end.out, best_dir=best_dir,
        model=metrics.get("model"),
        config=meta.get("config") if best_dir else None,
        val_score=(metrics.get("val") or {}).get(s.metric),
        test_score=(metrics.get("test") or {}).get(s.metric),
        elapsed=used, budget=s.budget, steps=len(results),
        trials=len({r.trial_id for r in results}), why=end.outcome.why, metrics=metrics,
        no_model_reason=no_model, near_chance=bool(metrics.get("near_chance")),
        metric=s.metric,
    )


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch CPU threads (``None``: as they are), restored afterwards."""
    import torch

    old = torch.get_num_threads()
    try:
        if n is not None:
            torch.set_num_threads(int(n))
        yield
    finally:
        torch.set_num_threads(old)


def finish_run(end: RunEnd) -> SearchResult:
    """Export the best trial with a loadable checkpoint to ``best/``; write ``result.json``.

    The trials are tried best-first: one whose checkpoint cannot be loaded is
    journalled (``broken_checkpoint``) and announced, and the next is exported.
    Everything runs with the run's ``--threads``, as the trials' epochs did: on a
    busy machine more threads than asked for made the evaluations here several
    times slower than the search's own.
    """
    with torch_threads(end.settings.num_threads):
        return _finish_run(end)


def _finish_run(end: RunEnd) -> SearchResult:
    from hubtune.tuner.bestdir import fingerprint, recover_best
    from hubtune.tuner.report import build_report

    for done in [*end.recovered_best, *recover_best(end.out)]:
        end.note("best_recovered", detail=done)
    ranked, latest = ranked_trials(end)
    if ranked and end.settings.final_epochs > 0:
        final_epochs(end, ranked[0])
    kept = _still_exported(end, ranked, latest)
    if kept is not None:
        chosen, metrics = ranked[0], kept
    else:
        chosen, metrics = export(end, ranked)
    best_dir = end.out / "best" if chosen else None
    no_model = None
    if best_dir is None:
        no_model = ("no trial's checkpoint could be loaded for export (see the "
                    "broken_checkpoint notes in journal.jsonl)") if ranked else \
            no_model_reason(end.loop.results, end.outcome.why, end.settings.budget,
                            end.settings.pretrained)
        end.note("no_model", reason=no_model)
    build_report(end.out)
    used = end.loop.elapsed()
    # Journaled, so that a resumed run charges this session's export and report too;
    # what was exported, so that running the finished run again need not export it again.
    exported = {} if best_dir is None else {
        **_export_key(end, ranked, latest), "trial_id": chosen, "epoch": metrics.get("epoch"),
        # an ensemble that could not be added is tried again next time
        "ensemble": end.settings.ensemble if "ensemble" in metrics else 0,
        "fingerprint": fingerprint(best_dir), "kept": kept is not None}
    end.note("exported", elapsed=used, **exported)
    result = _result(end, best_dir, metrics, no_model, used)
    (end.out / "result.json").write_text(json.dumps({
        k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()
    }, indent=2, default=str))
    end.loggers.log_final(metrics, best_dir, end.loop.results)
    return result
