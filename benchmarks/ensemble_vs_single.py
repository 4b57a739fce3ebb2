"""Ensemble vs single model of the same run, scored on a large held-back test set.

For each finished ``hubtune run ... --ensemble K`` folder, the exported
ensemble (``best/ensemble.json``) and the exported single model (``best/``)
are both evaluated on the *whole* test partition of the run's built-in
dataset, not only the subset's few hundred test images: for Fashion-MNIST the
10,000 official test images; for animal-mnist and digits the test partition
that the run's seed carves from the full dataset (the subset's training and
validation images come from the other partitions, so none of these images was
trained on or used to choose the ensemble's weights).

    python benchmarks/ensemble_vs_single.py runs/ens-*      # prints a table and paired differences

Per task and overall it prints the paired test top-1 difference (ensemble -
single) with its mean, standard deviation and range over the runs, and the
ensemble's latency ratio (``best/metrics.json``, batch 1, measured by the run on
its device). Per run it also prints the budget used (``result.json``'s
``elapsed``, charged from the process start to the end of the report, over the
budget); a run past the budget + 2% is flagged ``OVER``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch


@torch.no_grad()
def top1_on(pred: object, images: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
    """Top-1 of a :class:`~hubtune.tuner.export.Predictor`'s model on uint8 ``images``."""
    correct = 0
    for i in range(0, len(labels), batch):
        x = images[i:i + batch].float() / 255
        x = (x - pred.mean) / pred.std  # type: ignore[attr-defined]
        correct += int((pred.model(x).argmax(-1) == labels[i:i + batch]).sum())  # type: ignore[attr-defined]
    return correct / len(labels)


def held_back_test(settings: dict, image_size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The full test partition of the run's built-in dataset (same seed, no subset)."""
    from hubtune.data import load_dataset

    name = str(settings["data"]).split(":")[0]
    ds = load_dataset(name, image_size=image_size, seed=int(settings["seed"]),
                      cache_dir=Path.home() / ".cache" / "hubtune" / "bench-data")
    if ds.test is None:
        raise SystemExit(f"{name}: no test split")
    return ds.test.images, ds.test.labels, list(ds.classes)


def describe(run_dir: Path) -> dict:
    """Single and ensemble test top-1 of one run folder on its large test set."""
    from hubtune.tuner.export import Predictor

    settings = json.loads((run_dir / "run.json").read_text())
    metrics = json.loads((run_dir / "best" / "metrics.json").read_text())
    single = Predictor(run_dir / "best", single=True)
    ensemble = Predictor(run_dir / "best")
    if ensemble.ensemble is None:
        raise SystemExit(f"{run_dir}: best/ holds no ensemble (run with --ensemble K)")
    images, labels, classes = held_back_test(settings, int(single.pre["image_size"]))
    if classes != single.labels:
        raise SystemExit(f"{run_dir}: the exported label map differs from the dataset's")
    ens = metrics.get("ensemble", {})
    result = json.loads((run_dir / "result.json").read_text())
    return {
        "run": run_dir.name, "task": str(settings["data"]).split(":")[0], "seed": settings["seed"],
        "n_test": len(labels), "members": len(ensemble.ensemble),
        "candidates": ens.get("candidates"), "cut_by_budget": ens.get("cut_by_budget"),
        "dropped_by_budget": ens.get("dropped_by_budget"),
        "single": top1_on(single, images, labels), "ensemble": top1_on(ensemble, images, labels),
        "latency_ratio": ens.get("latency_ratio"),
        "search_s": metrics.get("search_elapsed_seconds"),
        "elapsed_s": result.get("elapsed"), "budget_s": result.get("budget"),
    }


def spread(values: list[float]) -> str:
    """``mean, sd, [min, max]`` of ``values`` (sd needs two)."""
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return (f"mean {statistics.mean(values):+.2f}, sd {sd:.2f}, "
            f"range [{min(values):+.2f}, {max(values):+.2f}], n {len(values)}")


def print_table(rows: list[dict]) -> None:
    """One line per run: test top-1 of both, their difference, latency ratio, budget used."""
    print(f"{'run':<26} {'n_test':>6} {'cand':>4} {'mem':>3} {'single':>7} {'ensemble':>8} "
          f"{'diff':>6} {'lat x':>6} {'used/budget':>14}")
    for r in rows:
        lat = f"{r['latency_ratio']:.2f}" if r["latency_ratio"] else "-"
        used = r["elapsed_s"] / r["budget_s"]
        flag = " OVER" if used > 1.02 else ""
        print(f"{r['run']:<26} {r['n_test']:>6} {r['candidates'] or 0:>4} {r['members']:>3} "
              f"{100 * r['single']:>7.2f} {100 * r['ensemble']:>8.2f} "
              f"{100 * (r['ensemble'] - r['single']):>+6.2f} {lat:>6} "
              f"{r['elapsed_s']:>5.0f}/{r['budget_s']:.0f} s{flag}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="finished run folders made with --ensemble K")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()
    rows = [describe(d) for d in args.runs]
    print_table(rows)
    tasks: dict[str, list[dict]] = {}
    for r in rows:
        tasks.setdefault(r["task"], []).append(r)
    print("\npaired test top-1 difference, ensemble - single (points):")
    for task, rs in [*tasks.items(), ("overall", rows)]:
        diffs = [100 * (r["ensemble"] - r["single"]) for r in rs]
        lats = [r["latency_ratio"] for r in rs if r["latency_ratio"]]
        lat = f"; latency ratio median {statistics.median(lats):.2f}" if lats else ""
        used = max(r["elapsed_s"] / r["budget_s"] for r in rs)
        print(f"  {task:<14} {spread(diffs)}{lat}; budget used at most {100 * used:.1f}%")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
