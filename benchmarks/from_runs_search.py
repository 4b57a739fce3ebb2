"""Searches of one task with and without a surrogate learnt from past runs: time-to-best, test top-1.

For each finished ``hubtune run`` folder (all of one built-in task, typically the
same command with and without ``--surrogate DIR``, for several seeds), prints

- the surrogate it used (``run.json``; "default" when none was given),
- time-to-best: the budget seconds (from the process start, as the run charges them)
  at which the model it exported was first observed (its trial's exported epoch
  told by the search), from ``journal.jsonl``,
- the exported model's validation top-1 and its top-1 on the run's own test split
  and on the large held-back test set of ``benchmarks/ensemble_vs_single.py`` (for
  Fashion-MNIST the 10,000 official test images),

and, per surrogate, the mean over seeds and the paired difference to the first
surrogate listed (same seed) with its spread.

    python benchmarks/from_runs_search.py runs/fr/fashion-*-s0 runs/fr/fashion-*-s1 ...
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ensemble_vs_single import held_back_test, spread, top1_on  # noqa: E402


def time_to_best(run_dir: Path, trial_id: str, epoch: int) -> float | None:
    """Budget seconds at which ``trial_id``'s ``epoch`` was told (one session's journal)."""
    events = [json.loads(x) for x in (run_dir / "journal.jsonl").read_text().splitlines() if x]
    start = next(e for e in events if e["event"] == "start")
    for e in events:
        if e["event"] != "result" or e["step"]["trial_id"] != trial_id:
            continue
        if any(int(r["epoch"]) == epoch for r in e.get("records", [])):
            return float(e["t"] - start["t"] + (start.get("setup") or 0.0))
    return None


def describe(run_dir: Path) -> dict:
    """One run folder: its surrogate, time-to-best and test top-1 of the exported model."""
    from hubtune.tuner.export import Predictor

    settings = json.loads((run_dir / "run.json").read_text())
    metrics = json.loads((run_dir / "best" / "metrics.json").read_text())
    result = json.loads((run_dir / "result.json").read_text())
    single = Predictor(run_dir / "best", single=True)
    images, labels, _classes = held_back_test(settings, int(single.pre["image_size"]))
    return {
        "run": run_dir.name, "seed": int(settings["seed"]),
        "surrogate": Path(settings["surrogate"]).name if settings.get("surrogate") else "default",
        "model": metrics["model"], "trial": metrics["trial_id"], "epoch": metrics["epoch"],
        "time_to_best_s": time_to_best(run_dir, metrics["trial_id"], int(metrics["epoch"])),
        "val": metrics["val"]["top1"], "test_run": (metrics.get("test") or {}).get("top1"),
        "n_test": len(labels), "test_large": top1_on(single, images, labels),
        "elapsed_s": result["elapsed"], "budget_s": result["budget"], "steps": result["steps"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="finished run folders of one task")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()
    rows = [describe(d) for d in args.runs]
    print(f"{'run':<28} {'surrogate':<18} {'model':<22} {'ep':>2} {'to best':>7} {'val':>6} "
          f"{'test':>6} {'large test':>10} {'used':>9}")
    for r in rows:
        ttb = f"{r['time_to_best_s']:.0f} s" if r["time_to_best_s"] is not None else "-"
        print(f"{r['run']:<28} {r['surrogate']:<18} {r['model']:<22} {r['epoch']:>2} {ttb:>7} "
              f"{100 * r['val']:>6.2f} {100 * (r['test_run'] or 0):>6.2f} "
              f"{100 * r['test_large']:>10.2f} {r['elapsed_s']:>4.0f}/{r['budget_s']:.0f}")
    surrogates = list(dict.fromkeys(r["surrogate"] for r in rows))
    by = {(r["surrogate"], r["seed"]): r for r in rows}
    base = surrogates[0]
    print(f"\nper surrogate (mean over seeds); paired differences to {base!r}, same seed:")
    for s in surrogates:
        rs = [r for r in rows if r["surrogate"] == s]
        ttbs = [r["time_to_best_s"] for r in rs if r["time_to_best_s"] is not None]
        line = (f"  {s:<18} time-to-best {statistics.mean(ttbs):.0f} s, large-test top-1 "
                f"{100 * statistics.mean(r['test_large'] for r in rs):.2f}% (n {len(rs)})")
        pairs = [(by[(s, r['seed'])], by[(base, r['seed'])]) for r in rs
                 if s != base and (base, r["seed"]) in by]
        if pairs:
            line += ("\n      test top-1 diff " + spread([100 * (a["test_large"] - b["test_large"])
                                                       for a, b in pairs])
                     + "\n      time-to-best diff (s) " + spread(
                         [a["time_to_best_s"] - b["time_to_best_s"] for a, b in pairs
                          if a["time_to_best_s"] is not None and b["time_to_best_s"] is not None]))
        print(line)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
