"""Search vs default hyperparameters on the demo task, scored on the full official test set.

The demo (`make demo`) searches a 2,000-image Fashion-MNIST subset whose own
test split has ~390 images (+-1.8 points of sampling error alone). This script
runs the same `hubtune run` with `--optimizer quicktune` and with
`--optimizer defaults` (each model's default config, round robin: what a
practitioner without a search would do with the same time), or takes existing
run folders, and evaluates each exported `best/` model on all 10,000 official
Fashion-MNIST test images (none of them seen in training or validation), so the
two results are compared with +-0.4 points of test noise instead of +-1.8.

    python benchmarks/demo_vs_defaults.py --seeds 0,1 --out bench-demo            # runs both, in turn
    python benchmarks/demo_vs_defaults.py --evaluate runs/a runs/b                # only evaluate

It prints one row per run and the mean difference (search - defaults) per seed.
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
    return {
        "run": str(run_dir), "optimizer": settings["optimizer"], "seed": settings["seed"],
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
    args = ap.parse_args()
    torch.set_num_threads(args.threads or torch.get_num_threads())
    dirs = list(args.evaluate or [])
    if not dirs:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for opt in ("quicktune", "defaults"):
                d = args.out / f"{opt}-seed{seed}"
                run(d, opt, seed, args)
                dirs.append(d)
    rows = [describe(d) for d in dirs]
    print(f"{'optimizer':<10} {'seed':>4} {'model':<24} {'steps':>5} {'val':>7} {'test(sub)':>9} {'test(10k)':>9}")
    for r in rows:
        sub = f"{100 * r['subset_test']:.2f}" if r["subset_test"] is not None else "-"
        print(f"{r['optimizer']:<10} {r['seed']:>4} {r['model']:<24} {r['steps']!s:>5} "
              f"{100 * r['val']:>7.2f} {sub:>9} {100 * r['full_test']:>9.2f}")
    # pairs: consecutive (quicktune, defaults) rows, as run (or as given to --evaluate)
    diffs = [a["full_test"] - b["full_test"] for a, b in zip(rows[::2], rows[1::2], strict=False)
             if (a["optimizer"], b["optimizer"]) == ("quicktune", "defaults")]
    if diffs:
        print(f"search - defaults on the 10k test set, per pair: "
              f"{', '.join(f'{100 * d:+.2f}' for d in diffs)} points; mean {100 * sum(diffs) / len(diffs):+.2f}")


if __name__ == "__main__":
    main()
