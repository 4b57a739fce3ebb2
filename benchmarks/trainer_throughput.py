"""Trainer throughput: ``advance`` vs a minimal plain-PyTorch loop, and pause/resume cost.

Both train the same model (ImageNet-pretrained MobileNetV2 by default) on the
same in-memory images at the same resolution, batch size and optimizer
(AdamW, constant rate), both in channels-last memory format: the plain loop only shuffles, normalises, runs
forward/backward/step. ``advance`` does everything it does in a search
(per-epoch reseeding, flip augmentation, OOM snapshot, schedule, loss checks).
Runs alternate (plain, advance, plain, advance, ...) and the medians are
compared, so drifting load on a shared machine hits both alike.

Pause/resume cost = restore (model build + pretrained weights + checkpoint
load) + save, from the records of a step that resumes a paused trial,
as a fraction of one training epoch.

Prints figures (targets: throughput ratio >= 0.95, pause/resume < 10% of an
epoch); it does not pass or fail.

Usage: python benchmarks/trainer_throughput.py [--images 1000] [--size 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def plain_epoch(model, opt, images, labels, mean, std, batch_size, generator) -> float:
    """One epoch of the minimal loop; returns seconds."""
    model.train()
    scale = (1.0 / (255.0 * std)).view(1, 3, 1, 1)
    shift = (-mean / std).view(1, 3, 1, 1)
    t0 = time.perf_counter()
    perm = torch.randperm(images.shape[0], generator=generator)
    for i in range(images.shape[0] // batch_size):
        idx = perm[i * batch_size : (i + 1) * batch_size]
        x = (images[idx].float() * scale + shift).contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="mobilenetv2_100")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--images", type=int, default=1000, help="training images")
    ap.add_argument("--size", type=int, default=64, help="image side")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="epochs of each contender")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = ap.parse_args(argv)

    from hubtune.data import load_dataset
    from hubtune.finetune import advance
    from hubtune.hub import create_model
    from hubtune.space import Config

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    ds = load_dataset(args.data, image_size=args.size, subset=args.images, seed=0)
    n = len(ds.train)
    print(f"{ds.summary()}; model {args.model}; batch {args.batch_size}; {threads} threads")

    cfg = Config(model=args.model, batch_size=args.batch_size, opt="adamw", lr=1e-3,
                 weight_decay=1e-4, sched="step", decay_epochs=1000, decay_rate=0.1)  # fmt: skip
    hm = create_model(args.model, num_classes=ds.num_classes)
    model = hm.model.to(memory_format=torch.channels_last)  # as advance() does
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    mean = torch.tensor(hm.data_config["mean"], dtype=torch.float32)
    std = torch.tensor(hm.data_config["std"], dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    plain_epoch(model, opt, ds.train.images, ds.train.labels, mean, std, args.batch_size, gen)  # warm-up

    plain, ours, resume_costs = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up of the trainer path (imports, allocator)
        advance(cfg, 1, data=ds, workdir=Path(tmp) / "warm", max_epochs=args.repeats + 1,
                num_threads=threads)  # fmt: skip
        work = Path(tmp) / "trial"
        for epoch in range(1, args.repeats + 1):
            plain.append(plain_epoch(model, opt, ds.train.images, ds.train.labels, mean, std,
                                     args.batch_size, gen))  # fmt: skip
            res = advance(cfg, epoch, data=ds, workdir=work, max_epochs=args.repeats + 1,
                          num_threads=threads)  # fmt: skip
            (rec,) = res.records
            ours.append(rec.train_seconds)
            if epoch > 1:  # this step restored a paused trial and saved it again
                resume_costs.append(rec.checkpoint_seconds)
            print(f"  epoch {epoch}: plain {plain[-1]:.2f}s  advance train {rec.train_seconds:.2f}s "
                  f"(+ eval {rec.eval_seconds:.2f}s, restore+save {rec.checkpoint_seconds:.2f}s)")  # fmt: skip

    p, o = statistics.median(plain), statistics.median(ours)
    used = (n // args.batch_size) * args.batch_size
    print(f"plain loop : {used / p:8.1f} images/s (median of {len(plain)} epochs)")
    print(f"advance    : {used / o:8.1f} images/s (training time of each epoch)")
    print(f"throughput ratio advance/plain: {p / o:.3f} (target >= 0.95)")
    if resume_costs:
        r = statistics.median(resume_costs)
        print(f"pause/resume (restore + save): {r:.3f}s = {100 * r / o:.1f}% of one epoch (target < 10%)")

    # Data path alone (same thread): how much of an epoch goes to making batches.
    from hubtune.finetune.batches import BatchPipeline

    for aug in ("none", "trivial_augment", "random_augment", "auto_augment"):
        pipe = BatchPipeline(cfg.replace(data_augmentation=aug), tuple(mean.tolist()),
                             tuple(std.tolist()), ds.num_classes, args.size, torch.device("cpu"),
                             channels_last=True)  # fmt: skip
        t0 = time.perf_counter()
        for _ in pipe.train_batches(ds.train.images, ds.train.labels, torch.Generator().manual_seed(0)):
            pass
        d = time.perf_counter() - t0
        print(f"data path, augmentation {aug:15s}: {d:.3f}s per epoch = {100 * d / o:.1f}% of a training epoch")


if __name__ == "__main__":
    main()
