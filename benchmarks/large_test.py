"""Score an exported ``best/`` model on a large test set the run never saw.

- ``fashion-mnist[:N]``: all 10,000 official Fashion-MNIST test images.
- ``animal-mnist[:N]`` and ``digits[:N]`` (no official test split): every image
  of the full dataset that the run used neither for training nor for
  validation, i.e. the full dataset's test split plus the training and
  validation images its ``N``-image subset left out. The run's split is rebuilt
  exactly as ``hubtune run`` builds it (same seed, fractions and subset rule),
  so none of these images influenced training or model selection.

    python benchmarks/large_test.py RUN_DIR [RUN_DIR ...]

The score is cached in ``RUN_DIR/large-test.json`` (keyed by the size and
modification time of ``best/model.safetensors``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

VAL_FRACTION = 0.15
TEST_FRACTION = 0.15
"""``hubtune run``'s split fractions (``load_dataset``'s defaults)."""
CACHE_FILE = "large-test.json"


def heldback_rows(data: str, seed: int) -> tuple[np.ndarray, np.ndarray, list[str], object]:
    """``(row indices, labels, class names, plan)`` of the large test set of a built-in ``data``."""
    from hubtune.data.builtin import parse_builtin_name, plan_builtin

    parsed = parse_builtin_name(data)
    if parsed is None:
        raise SystemExit(f"{data!r} is not a built-in dataset: no large test set is defined for it")
    name, subset = parsed
    full = plan_builtin(name, seed=seed, val_fraction=VAL_FRACTION, test_fraction=TEST_FRACTION)
    if name == "fashion-mnist":  # the official test split: independent of seed and subset
        test = full.splits["test"]
        return np.asarray(test.items), np.asarray(test.labels), full.classes, full
    run_plan = full.with_subset(subset, seed) if subset else full
    used = np.concatenate([np.asarray(run_plan.splits[s].items) for s in ("train", "val")])
    rows = np.concatenate([np.asarray(p.items) for p in full.splits.values()])
    labels = np.concatenate([np.asarray(p.labels) for p in full.splits.values()])
    keep = ~np.isin(rows, used)
    return rows[keep], labels[keep], full.classes, full


@torch.no_grad()
def large_test_top1(run_dir: Path, batch: int = 500) -> tuple[float, int]:
    """``(top-1, number of images)`` of ``run_dir/best`` on its task's large test set."""
    from hubtune.data.images import resize_array_batch
    from hubtune.tuner.export import Predictor

    settings = json.loads((run_dir / "run.json").read_text())
    model_file = run_dir / "best" / "model.safetensors"
    stat = model_file.stat()
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    cache = run_dir / CACHE_FILE
    if cache.is_file():
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            return float(stored["top1"]), int(stored["n"])
    data = settings["data"] if settings.get("subset") is None else f"{settings['data']}:{settings['subset']}"
    rows, labels, classes, plan = heldback_rows(data, int(settings["seed"]))
    pred = Predictor(run_dir / "best")
    if list(classes) != list(pred.labels):
        raise SystemExit(f"{run_dir}: the exported label map differs from the dataset's classes")
    size = int(pred.pre["image_size"])
    all_rows = plan.load_rows()
    y_all = torch.from_numpy(labels.astype(np.int64))
    correct = 0
    for i in range(0, len(rows), batch):
        x = resize_array_batch(all_rows[rows[i:i + batch]], size).float() / 255
        x = (x - pred.mean) / pred.std
        correct += int((pred.model(x).argmax(-1) == y_all[i:i + batch]).sum())
    top1 = correct / len(rows)
    cache.write_text(json.dumps({"key": key, "top1": top1, "n": int(len(rows)), "data": data}))
    return top1, int(len(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args()
    for run in args.runs:
        top1, n = large_test_top1(run)
        print(f"{run}: top-1 {100 * top1:.2f}% on {n} held-back images")


if __name__ == "__main__":
    main()
