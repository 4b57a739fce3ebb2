"""Search vs default hyperparameters on the demo task, scored on the full official test set.

The demo (`make demo`) searches a Fashion-MNIST subset whose own test split
has a few hundred images (+-1.8 points of sampling error alone at 392). This
script runs the same `hubtune run` with `--optimizer quicktune` and with the
practitioner's baselines, each model's default config with the same budget:
`defaults` (round robin, an equal share per model) and `defaults_sequential`
(one model at a time to the end of its schedule, cheapest first). Or it takes
existing run folders. Every exported `best/` model is then evaluated on all
10,000 official Fashion-MNIST test images (none of them seen in training or
validation), so results compare with +-0.4 points of test noise.

    python benchmarks/demo_vs_defaults.py --seeds 0,1,2 --out bench-demo       # runs all, in turn
    python benchmarks/demo_vs_defaults.py --evaluate runs/a runs/b             # only evaluate
    python benchmarks/demo_vs_defaults.py --surrogate my-sur --out bench-demo  # search with it

It prints one row per run, then per seed the search's 10k-test top-1 minus
that of each baseline and minus the better of the baselines (the reference).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch


def run(out: Path, optimizer: str, seed: int, args: argparse.Namespace) -> None:
    cmd = [sys.executable, "-m", "hubtune.cli", "run", args.data, "--hub", "offline",
           "--budget", args.budget, "--max-epochs", str(args.max_epochs), "--seed", str(seed),
           "--optimizer", optimizer, "--log", "quiet", "--out", str(out)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.surrogate and optimizer == args.search:
        cmd += ["--surrogate", str(args.surrogate)]
    subprocess.run(cmd, check=True)


@torch.no_grad()
def full_test_top1(best_dir: Path, batch: int = 500) -> float:
    """Top-1 of an exported model on the 10,000 official Fashion-MNIST test images."""
    from hubtune.data import load_dataset
    from hubtune.tuner.export import Predictor

    pred = Predictor(best_dir)
    size = int(pred.pre["image_size"])
    ds = load_dataset("fashion-mnist", image_size=size, seed=0,
                      cache_dir=Path.home() / ".cache" / "hubtune" / "bench-data")
    labels = [ds.classes[i] for i in range(len(ds.classes))]
    if labels != pred.labels:
        raise SystemExit(f"{best_dir}: label map differs from Fashion-MNIST's")
    x_all, y_all = ds.test.images, ds.test.labels
    correct = 0
    for i in range(0, len(y_all), batch):
        x = x_all[i:i + batch].float() / 255
        x = (x - pred.mean) / pred.std
        correct += int((pred.model(x).argmax(-1) == y_all[i:i + batch]).sum())
    return correct / len(y_all)


def describe(run_dir: Path) -> dict:
    result = json.loads((run_dir / "result.json").read_text())
    settings = json.loads((run_dir / "run.json").read_text())
    label = settings["optimizer"]
    if settings.get("surrogate"):
        label += "+" + Path(settings["surrogate"]).name
    return {
        "run": str(run_dir), "optimizer": label, "seed": settings["seed"],
        "model": result["model"], "steps": result.get("steps"),
        "val": result["metrics"]["val"]["top1"],
        "subset_test": result["metrics"].get("test", {}).get("top1"),
        "full_test": full_test_top1(run_dir / "best"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evaluate", nargs="*", type=Path, help="existing run folders to evaluate")
    ap.add_argument("--out", type=Path, default=Path("bench-demo"))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--data", default="fashion-mnist:2000")
    ap.add_argument("--budget", default="8m")
    ap.add_argument("--max-epochs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--optimizers", default="quicktune,defaults,defaults_sequential",
                    help="methods to run per seed (the first is the search)")
    ap.add_argument("--surrogate", type=Path, default=None,
                    help="surrogate folder for the search (hubtune run --surrogate)")
    args = ap.parse_args()
    args.search = args.optimizers.split(",")[0]
    search_label = args.search + (f"+{args.surrogate.name}" if args.surrogate else "")
    torch.set_num_threads(args.threads or torch.get_num_threads())
    dirs = list(args.evaluate or [])
    optimizers = args.optimizers.split(",")
    if not dirs:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for opt in optimizers:
                tag = search_label if opt == args.search else opt  # as describe() labels it
                d = args.out / f"{tag}-seed{seed}"
                if not (d / "result.json").exists():
                    run(d, opt, seed, args)
                dirs.append(d)
    rows = [describe(d) for d in dirs]
    print(f"{'optimizer':<20} {'seed':>4} {'model':<24} {'steps':>5} {'val':>7} {'test(sub)':>9} {'test(10k)':>9}")
    for r in rows:
        sub = f"{100 * r['subset_test']:.2f}" if r["subset_test"] is not None else "-"
        print(f"{r['optimizer']:<20} {r['seed']:>4} {r['model']:<24} {r['steps']!s:>5} "
              f"{100 * r['val']:>7.2f} {sub:>9} {100 * r['full_test']:>9.2f}")
    by_seed: dict[int, dict[str, float]] = {}
    for r in rows:
        by_seed.setdefault(r["seed"], {})[r["optimizer"]] = r["full_test"]
    search = search_label
    diffs: dict[str, list[float]] = {}
    for seed, scores in sorted(by_seed.items()):
        if search not in scores:
            continue
        base = {k: v for k, v in scores.items() if k != search}
        if not base:
            continue
        parts = []
        for name, v in sorted(base.items()):
            diffs.setdefault(name, []).append(scores[search] - v)
            parts.append(f"- {name} {100 * (scores[search] - v):+.2f}")
        best = max(base.values())
        diffs.setdefault("best baseline", []).append(scores[search] - best)
        print(f"seed {seed}: {search} {', '.join(parts)}; - best baseline "
              f"{100 * (scores[search] - best):+.2f} points (10k test)")
    for name, d in diffs.items():
        print(f"mean {search} - {name}: {100 * sum(d) / len(d):+.2f} points over {len(d)} seed(s)")


if __name__ == "__main__":
    main()
