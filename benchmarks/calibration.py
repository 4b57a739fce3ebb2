"""How well the optimizer's predictions matched what a real run observed (issue #13).

    python benchmarks/calibration.py RUN_DIR [RUN_DIR ...] [--json OUT.json]

Reads each ``hubtune run`` folder's ``journal.jsonl``. Every step an optimizer
proposes carries its prediction of the score at the step's target epoch
(``info["mean"]``, ``info["std"]``, fractions; Quick-Tune also records
``noise_std``, the observation noise it assumes there, including the validation
split's sampling noise). For each finished step that reached its target epoch
with a finite score the script compares that prediction with the observed
score, separately for

- **new configs**: a trial's first step (a config never trained before);
- **continuations**: later steps of a trial.

It prints, per run folder and pooled over all given folders: the number of
predictions, the fraction of observed scores inside the predicted mean +- 1 std
(the GP's std of the score; ``+-1 sd+noise`` also counts the observation noise,
where recorded), the mean signed error ``observed - predicted`` and the mean
absolute error (points), and, for new configs, the mean signed error of those
asked after the run had observed at least 5 epochs. Steps without a recorded
prediction (an optimizer that records none, older journals' default-config
anchors) are counted as ``no prediction``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

WARM_OBSERVATIONS = 5
"""New-config predictions made after this many observed epochs form the "after warm-up" row."""


@dataclass
class Point:
    """One prediction and what was observed at its step's target epoch."""

    kind: str  # "new" or "continuation"
    mean: float
    std: float
    noise_std: float | None
    observed: float
    observed_before: int
    """Epochs the run had observed when the step was asked."""


@dataclass
class Summary:
    """Calibration figures of a group of predictions."""

    n: int = 0
    inside_1std: float | None = None
    inside_1sd_noise: float | None = None
    mean_signed_error_points: float | None = None
    mean_abs_error_points: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def read_points(journal: Path) -> tuple[list[Point], int]:
    """(predictions with their observed scores, steps that have no prediction) of one journal.

    Events are read in order; a step counts once, at its ``result`` event, with the
    number of epochs observed when it was (last) asked.
    """
    seen_trials: set[str] = set()
    observed_epochs = 0
    asked_at: dict[tuple[str, int], int] = {}
    points: list[Point] = []
    missing = 0
    with open(journal, encoding="utf-8") as fh:
        for line in fh:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn line
            step = event.get("step") or {}
            key = (str(step.get("trial_id")), int(step.get("to_epoch") or 0))
            if event.get("event") == "ask":
                asked_at[key] = observed_epochs
                continue
            if event.get("event") != "result":
                continue
            trial = key[0]
            records = event.get("records") or []
            kind = "continuation" if trial in seen_trials else "new"
            if records:
                seen_trials.add(trial)
            observed_epochs += sum(1 for r in records if _number(r.get("score")) is not None)
            at_target = [_number(r.get("score")) for r in records if int(r.get("epoch", -1)) == key[1]]
            observed = at_target[-1] if at_target else None
            if observed is None:
                continue  # did not reach its target epoch (ended, crashed, out of budget)
            info = step.get("info") or {}
            mean = _number(info.get("predicted_mean", info.get("mean")))
            std = _number(info.get("predicted_std", info.get("std")))
            if mean is None or std is None:
                missing += 1
                continue
            points.append(Point(kind, mean, std, _number(info.get("noise_std")), observed,
                                asked_at.get(key, observed_epochs)))
    return points, missing


def summarize(points: Sequence[Point]) -> Summary:
    """Coverage and errors of ``points`` (``None`` figures where there are none)."""
    s = Summary(n=len(points))
    if not points:
        return s
    inside = [abs(p.observed - p.mean) <= p.std for p in points]
    s.inside_1std = sum(inside) / len(points)
    with_noise = [p for p in points if p.noise_std is not None]
    if with_noise:
        s.inside_1sd_noise = sum(abs(p.observed - p.mean) <= math.hypot(p.std, p.noise_std)  # type: ignore[arg-type]
                                 for p in with_noise) / len(with_noise)
    s.mean_signed_error_points = 100.0 * sum(p.observed - p.mean for p in points) / len(points)
    s.mean_abs_error_points = 100.0 * sum(abs(p.observed - p.mean) for p in points) / len(points)
    return s


def report(points: Sequence[Point], missing: int) -> dict[str, Any]:
    """Figures for new configs, continuations and all predictions (JSON-compatible)."""
    new = [p for p in points if p.kind == "new"]
    warm = [p for p in new if p.observed_before >= WARM_OBSERVATIONS]
    out = {
        "new": asdict(summarize(new)),
        "continuation": asdict(summarize([p for p in points if p.kind == "continuation"])),
        "all": asdict(summarize(points)),
        f"new_after_{WARM_OBSERVATIONS}_observations": asdict(summarize(warm)),
        "no_prediction": missing,
    }
    return out


def fmt_figure(v: float | None, pct: bool = False) -> str:
    """A figure of :func:`summarize` as printed: a percentage, or signed points; ``-`` if none."""
    if v is None:
        return "-"
    return f"{100 * v:.0f}%" if pct else f"{v:+.1f}"


def format_table(title: str, rep: dict[str, Any]) -> str:
    """A plain-text table of :func:`report`'s figures."""
    rows = [f"{title}", f"  {'predictions':<24} {'n':>4} {'in +-1 std':>11} {'in +-1 sd+noise':>16} "
            f"{'signed err (pt)':>16} {'abs err (pt)':>13}"]
    for name in ("new", f"new_after_{WARM_OBSERVATIONS}_observations", "continuation", "all"):
        s = rep[name]
        label = name.replace("_", " ")
        rows.append(f"  {label:<24} {s['n']:>4} {fmt_figure(s['inside_1std'], True):>11} "
                    f"{fmt_figure(s['inside_1sd_noise'], True):>16} {fmt_figure(s['mean_signed_error_points']):>16} "
                    f"{fmt_figure(s['mean_abs_error_points']).lstrip('+'):>13}")
    rows.append(f"  steps without a prediction: {rep['no_prediction']}")
    return "\n".join(rows)


def main(argv: Iterable[str] | None = None) -> dict[str, Any]:
    """Print the calibration tables of the given run folders; returns the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="hubtune run folders (with journal.jsonl)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(list(argv) if argv is not None else None)
    out: dict[str, Any] = {"runs": {}}
    pooled: list[Point] = []
    pooled_missing = 0
    for run in args.runs:
        journal = run / "journal.jsonl"
        if not journal.is_file():
            ap.error(f"{run} has no journal.jsonl (not a hubtune run folder)")
        points, missing = read_points(journal)
        pooled += points
        pooled_missing += missing
        out["runs"][str(run)] = rep = report(points, missing)
        print(format_table(str(run), rep))
    if len(args.runs) > 1:
        out["pooled"] = rep = report(pooled, pooled_missing)
        print(format_table(f"pooled over {len(args.runs)} runs", rep))
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
