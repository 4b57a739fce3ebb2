"""How much room the demo task leaves above default hyperparameters.

Trains each model's default config and single-hyperparameter variants of it
straight to the end of the schedule on the demo's data (a Fashion-MNIST
subset, 64 px, seed 0), and scores every final checkpoint on its validation
split and on all 10,000 official Fashion-MNIST test images. It prints, per
model, each variant's 10k-test top-1 and its difference to the default config
measured in the same run (the reference).

    python benchmarks/demo_landscape.py --models mobilenetv2_100 --out /tmp/landscape
    python benchmarks/demo_landscape.py --data fashion-mnist:1000 --variants default,bs16 --out /tmp/l1k

Finished variants are kept in ``--out`` (one trial folder each) and not retrained.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

VARIANTS: dict[str, dict] = {
    "default": {},
    "lr1e-4": {"lr": 1e-4},
    "lr5e-4": {"lr": 5e-4},
    "lr5e-3": {"lr": 5e-3},
    "smoothing0.1": {"smoothing": 0.1},
    "trivial_augment": {"data_augmentation": "trivial_augment"},
    "random_augment": {"data_augmentation": "random_augment"},
    "bs8": {"batch_size": 8},
    "bs16": {"batch_size": 16},
    "bs64": {"batch_size": 64},
    "wd1e-2": {"weight_decay": 1e-2},
    "mixup0.2": {"mixup": 0.2, "mixup_prob": 0.5},
    "cutmix1": {"cutmix": 1.0, "mixup_prob": 0.5},
    "drop0.2": {"drop": 0.2},
    "momentum_lr1e-2": {"opt": "momentum", "lr": 1e-2},
    "freeze0.6": {"pct_to_freeze": 0.6},
    "linear_probing": {"linear_probing": True},
}


def main() -> None:
    from hubtune.data import load_dataset
    from hubtune.finetune import advance, read_records
    from hubtune.finetune.engine import Trial
    from hubtune.space.config import Config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="fashion-mnist:2000")
    ap.add_argument("--models", default="mobilenetv2_100,tf_efficientnet_lite0")
    ap.add_argument("--variants", default="default,lr1e-4,lr5e-4,lr5e-3,smoothing0.1,"
                    "trivial_augment,bs16,bs64,wd1e-2")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("bench-landscape"))
    args = ap.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    if "default" not in variants:
        variants.insert(0, "default")  # the reference
    if args.threads:
        torch.set_num_threads(args.threads)
    cache = Path.home() / ".cache" / "hubtune" / "bench-data"
    ds = load_dataset(args.data, image_size=args.image_size, seed=args.seed, cache_dir=cache)
    full = load_dataset("fashion-mnist", image_size=args.image_size, seed=0, cache_dir=cache)
    print(f"{args.data}: {len(ds.train.labels)} train / {len(ds.val.labels)} val images; "
          f"test: {len(full.test.labels)} official test images", flush=True)

    rows = []
    for model in args.models.split(","):
        for var in variants:
            cfg = Config(model=model).replace(**VARIANTS[var])
            workdir = args.out / f"{model}__{var}"
            done = workdir / "landscape.json"
            if not done.exists():
                t0 = time.perf_counter()
                advance(cfg, args.epochs, data=ds, workdir=workdir, max_epochs=args.epochs,
                        seed=args.seed, num_threads=args.threads)
                with torch.random.fork_rng(devices=[]):
                    trial = Trial(cfg, ds, args.epochs, seed=args.seed, pretrained=True,
                                  regularizers=False, load_weights=False)
                    trial.load(workdir, model_only=True)
                    test = trial.evaluate(full.test)["top1"]
                val = read_records(workdir)[-1].score
                done.write_text(json.dumps({"model": model, "variant": var, "val": val,
                                            "test10k": test,
                                            "seconds": time.perf_counter() - t0}))
            row = json.loads(done.read_text())
            rows.append(row)
            print(f"{model:<24} {var:<18} val {100 * row['val']:6.2f}  "
                  f"test(10k) {100 * row['test10k']:6.2f}", flush=True)

    print(f"\n{'model':<24} {'variant':<18} {'test(10k)':>9} {'- default':>10}")
    for model in args.models.split(","):
        ref = next(r for r in rows if r["model"] == model and r["variant"] == "default")
        for r in (r for r in rows if r["model"] == model):
            print(f"{model:<24} {r['variant']:<18} {100 * r['test10k']:>9.2f} "
                  f"{100 * (r['test10k'] - ref['test10k']):>+10.2f}")
    best_default = max(r["test10k"] for r in rows if r["variant"] == "default")
    best = max(rows, key=lambda r: r["test10k"])
    print(f"\nbest default model {100 * best_default:.2f}; best of all "
          f"{100 * best['test10k']:.2f} ({best['model']} {best['variant']}): room above the "
          f"best default {100 * (best['test10k'] - best_default):+.2f} points")


if __name__ == "__main__":
    main()
