"""What a run's journal and ``best/`` say, gathered for the report: trials, the decision
log, the headline facts, the time breakdown and the leaderboard order.

Everything is read from files (``journal.jsonl``, ``run.json``, ``best/hubtune.json``,
``best/metrics.json``), so a report can be rebuilt at any time, also for a run
that crashed or exported nothing.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubtune.protocol.steps import step_prediction
from hubtune.search.journal import Journal, replay

LEADERBOARD_KEYS = (
    "opt", "lr", "batch_size", "weight_decay", "sched", "pct_to_freeze",
    "linear_probing", "data_augmentation", "mixup", "cutmix", "smoothing", "drop",
)


@dataclass
class TrialSummary:
    """Everything the journal says about one trial."""

    trial_id: str
    config: dict[str, Any]
    epochs: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    seconds: float = 0.0
    status: str = "ok"
    reason: str | None = None
    steps: int = 0
    default: bool = False
    """Whether an optimizer proposed it as a model's default config (its step's ``why``)."""

    @property
    def best(self) -> float:
        """Best validation score over its epochs (NaN when none scored)."""
        finite = [s for s in self.scores if math.isfinite(s)]
        return max(finite) if finite else float("nan")

    @property
    def best_epoch(self) -> int | None:
        """The epoch of :attr:`best` (None when none scored)."""
        finite = [(s, e) for e, s in zip(self.epochs, self.scores, strict=True) if math.isfinite(s)]
        return max(finite, key=lambda se: se[0])[1] if finite else None

    @property
    def last(self) -> float:
        """Score of its latest epoch: what its checkpoint holds, what export ranks by."""
        return self.scores[-1] if self.scores else float("nan")

    @property
    def last_epoch(self) -> int:
        """Its latest epoch (0 when it never finished one)."""
        return self.epochs[-1] if self.epochs else 0


def is_default_step(info: dict[str, Any] | None) -> bool:
    """Whether a step's ``info`` says it starts a model's default config."""
    info = info or {}
    return bool(info.get("default")) or "default config" in str(info.get("why") or "")


def result_times(journal: Journal) -> list[float]:
    """Budget-clock time of each ``result`` event: seconds since the run's first
    start, the sessions before a resume counted to their last event (as the
    budget counts them). For a parallel run this is wall clock, not the sum of
    the workers' step seconds."""
    times: list[float] = []
    done, start, last = 0.0, None, None
    for e in journal:
        t = float(e.get("t", 0.0))
        kind = e.get("event")
        if kind == "start":
            if start is not None and last is not None:
                done += last - start
            start = t
        elif kind == "result":
            times.append(done + (t - start if start is not None else 0.0))
        last = t
    return times


def _log_entry(res: Any, time: float, incumbent: float) -> dict[str, Any]:
    observed = [r.score for r in res.records if math.isfinite(r.score)]
    return {
        "time": time,
        "trial_id": res.trial_id,
        "model": res.step.config.model,
        "to_epoch": res.step.to_epoch,
        "status": res.status,
        "reason": res.reason,
        "observed": observed[-1] if observed else float("nan"),
        "predicted_mean": step_prediction(res.step, "mean"),
        "predicted_std": step_prediction(res.step, "std"),
        "predicted_seconds": step_prediction(res.step, "seconds"),
        "acquisition": step_prediction(res.step, "acquisition"),
        "why": (res.step.info or {}).get("why"),
        "seconds": res.seconds,
        "incumbent": incumbent,
    }


def summarize(journal_path: Path) -> tuple[dict[str, TrialSummary], list[dict[str, Any]]]:
    """Per-trial summaries and the chronological decision log from a journal.

    Each log entry's ``time`` is the budget clock when the result arrived
    (:func:`result_times`)."""
    journal = Journal(journal_path)
    history = replay(journal)
    times = result_times(journal)
    trials: dict[str, TrialSummary] = {}
    log: list[dict[str, Any]] = []
    best = -math.inf
    for i, res in enumerate(history.results):
        t = trials.setdefault(
            res.trial_id, TrialSummary(res.trial_id, res.step.config.to_dict())
        )
        t.steps += 1
        t.seconds += res.seconds
        t.status = res.status
        t.reason = res.reason
        t.default = t.default or is_default_step(res.step.info)
        for rec in res.records:
            t.epochs.append(rec.epoch)
            t.scores.append(rec.score)
            if math.isfinite(rec.score):
                best = max(best, rec.score)
        log.append(_log_entry(res, times[i], best if math.isfinite(best) else float("nan")))
    return trials, log


def export_order(trials: dict[str, TrialSummary]) -> list[TrialSummary]:
    """Trials in the order the export tries them: best latest-epoch score first (what a
    trial's checkpoint holds); trials without a score last. Ties keep journal order,
    as in :meth:`HubTuner._finish`."""
    scored = [t for t in trials.values() if math.isfinite(t.last)]
    rest = [t for t in trials.values() if not math.isfinite(t.last)]
    return sorted(scored, key=lambda t: -t.last) + rest


def per_model_best(trials: dict[str, TrialSummary]) -> dict[str, float]:
    """Best validation score reached by each model (for summaries)."""
    best: dict[str, float] = defaultdict(lambda: -math.inf)
    for t in trials.values():
        m = t.config.get("model", "?")
        if math.isfinite(t.best):
            best[m] = max(best[m], t.best)
    return dict(best)


def binomial_se(p: float | None, n: int | None) -> float | None:
    """Standard error of a proportion ``p`` measured on ``n`` samples (None if unknown)."""
    if p is None or not n or not math.isfinite(p):
        return None
    return math.sqrt(max(p * (1.0 - p), 0.0) / n)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass
class RunFacts:
    """The headline of a run: settings, outcome and the exported model (if any)."""

    settings: dict[str, Any]
    metrics: dict[str, Any]
    meta: dict[str, Any]
    why: str | None
    no_model: str | None
    elapsed: float
    steps: int
    notes: list[dict[str, Any]]
    times: dict[str, float]

    @property
    def exported_trial(self) -> str | None:
        """Trial id of the model in ``best/`` (None when nothing was exported)."""
        return self.meta.get("trial_id") or self.metrics.get("trial_id")


def time_breakdown(events: list[dict[str, Any]], results: list[Any]) -> dict[str, float]:
    """Where the budget went, in seconds (see docs/report.md).

    ``optimizer`` is the time between a result (or a session's start) and the next
    ``ask`` event: telling the optimizer, snapshotting it and asking it for the next
    step. It is only attributed for runs with one worker (with several, other steps
    run meanwhile)."""
    recs = [rec for r in results for rec in r.records]
    out = {
        "setup": sum(float(e.get("setup") or 0.0) for e in events if e.get("event") == "start"),
        "train": sum(r.train_seconds for r in recs),
        "eval": sum(r.eval_seconds for r in recs),
        "checkpoint": sum(r.checkpoint_seconds for r in recs),
    }
    out["step_overhead"] = max(0.0, sum(r.seconds for r in results)
                               - out["train"] - out["eval"] - out["checkpoint"])
    parallel = any(int(e.get("workers") or 1) > 1 for e in events if e.get("event") == "start")
    if not parallel:
        optim, last = 0.0, None
        for e in events:
            kind = e.get("event")
            if kind in ("start", "result"):
                last = float(e.get("t", 0.0))
            elif kind == "ask" and last is not None:
                optim += max(0.0, float(e.get("t", 0.0)) - last)
                last = None
        out["optimizer"] = optim
    ends = [float(e.get("elapsed") or 0.0) for e in events if e.get("event") == "end"]
    exported = [float(e.get("elapsed") or 0.0) for e in events
                if e.get("event") == "note" and e.get("what") == "exported"]
    if ends and exported and exported[-1] >= ends[-1]:
        out["export_and_report"] = exported[-1] - ends[-1]
    return out


def gather(run: Path) -> tuple[dict[str, TrialSummary], list[dict[str, Any]], RunFacts]:
    """Trials, decision log and :class:`RunFacts` of the run folder ``run``."""
    journal = Journal(run / "journal.jsonl")
    events = journal.events()
    history = replay(journal)
    trials, log = summarize(journal.path)
    settings = _read_json(run / "run.json") or dict(history.settings or {})
    best = run / "best"
    metrics = _read_json(best / "metrics.json") if (best / "model.safetensors").exists() else {}
    meta = _read_json(best / "hubtune.json") if metrics else {}
    ends = [e for e in events if e.get("event") == "end"]
    notes = [e for e in events if e.get("event") == "note"]
    no_model = [n.get("reason") for n in notes if n.get("what") == "no_model"]
    exported = [float(n.get("elapsed") or 0.0) for n in notes if n.get("what") == "exported"]
    facts = RunFacts(
        settings=settings, metrics=metrics, meta=meta,
        why=ends[-1].get("why") if ends else None,
        no_model=None if metrics else (no_model[-1] if no_model else None),
        elapsed=max([history.elapsed, *exported]), steps=len(history.results), notes=notes,
        times=time_breakdown(events, history.results),
    )
    return trials, log, facts
