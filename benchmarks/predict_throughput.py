"""Prediction throughput: ``hubtune predict``'s batches vs the old everything-in-one-batch path.

Writes ``--images`` PNG files into one directory and an exported ``best/`` folder
(the documented format: a timm model, random weights, labels and preprocessing
JSON), then classifies the directory with :func:`hubtune.tuner.predict.predict_stream`
at ``--batch-size`` and with one batch holding every image (what ``predict`` did
before batching: all images decoded, then one forward pass). Runs alternate
(batched, one batch, batched, ...) and the medians are compared, so drifting
load on a shared machine hits both alike. On CUDA the peak GPU memory of each
is printed as well.

Prints seconds per image for both and their ratio; it does not pass or fail.

Usage: python benchmarks/predict_throughput.py [--images 1000] [--size 64] [--model test_resnet]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file


def write_images(folder: Path, n: int, size: int, seed: int = 0) -> None:
    """``n`` noisy PNG images of side ``size * 3 // 2`` (so decoding also resizes)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    side = size * 3 // 2
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(
            folder / f"{i:05d}.png")


def write_best(best: Path, model_name: str, size: int, num_classes: int) -> None:
    """An exported model folder in ``best/``'s documented format (random weights)."""
    from hubtune.hub import create_model

    best.mkdir(parents=True)
    hm = create_model(model_name, num_classes=num_classes, pretrained=False)
    save_file({k: v.contiguous() for k, v in hm.model.state_dict().items()},
              str(best / "model.safetensors"))
    (best / "labels.json").write_text(json.dumps([f"class{i}" for i in range(num_classes)]))
    (best / "config.json").write_text(json.dumps({"model": model_name}))
    (best / "preprocessing.json").write_text(json.dumps({
        "model": model_name, "architecture": model_name, "num_classes": num_classes,
        "image_size": size, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
        "resize": "short side", "channels": "RGB"}))


def timed(predictor, files: list[Path], batch_size: int) -> tuple[float, float | None]:
    """Seconds to classify ``files`` and the peak CUDA memory in MiB (None on CPU)."""
    from hubtune.tuner.predict import predict_stream

    cuda = str(predictor.device).startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    n = sum(1 for _ in predict_stream(predictor, files, batch_size=batch_size, top_k=1))
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    assert n == len(files)
    return seconds, (torch.cuda.max_memory_allocated() / 2**20 if cuda else None)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--size", type=int, default=64, help="model input side")
    ap.add_argument("--model", default="test_resnet", help="hub model name")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each contender")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from hubtune.tuner.device import resolve_device
    from hubtune.tuner.export import Predictor
    from hubtune.tuner.predict import collect_images

    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_images(root / "images", args.images, args.size)
        write_best(root / "best", args.model, args.size, num_classes=10)
        predictor = Predictor(root / "best", device=device)
        files, _ = collect_images([root / "images"])
        timed(predictor, files[: args.batch_size], args.batch_size)  # warm-up
        batched, single = [], []
        for _ in range(args.repeats):
            batched.append(timed(predictor, files, args.batch_size))
            single.append(timed(predictor, files, len(files)))
    b = statistics.median(s for s, _ in batched) / len(files)
    o = statistics.median(s for s, _ in single) / len(files)
    print(f"{len(files)} images, {args.model} at {args.size} px on {device}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"batched (batch {args.batch_size}): {1000 * b:.3f} ms/image")
    print(f"one batch of {len(files)} (old path): {1000 * o:.3f} ms/image")
    print(f"ratio one-batch / batched time per image: {o / b:.2f}")
    if batched[0][1] is not None:
        print(f"peak CUDA memory: batched {max(m for _, m in batched):.0f} MiB, "
              f"one batch {max(m for _, m in single):.0f} MiB")


if __name__ == "__main__":
    main()
