"""Wall time of one Quick-Tune decision (ask + tell) as the number of observed epochs grows.

Replays real learning curves of one dataset of the shared meta-dataset: trials
are advanced (in a fixed random order, a few epochs each) until the optimizer
has been told about N observed epochs, then ``ask`` + ``tell`` are timed over
several decisions. Prints one line per N.

    python benchmarks/optimizer_overhead.py [--dataset PLT_VIL] [--epochs 100,500,1000,2000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "metadata" / "quicktune-extended"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--metadata", default=str(SHARED))
    ap.add_argument("--dataset", default="PLT_VIL")
    ap.add_argument("--epochs", default="100,500,1000,2000")
    ap.add_argument("--decisions", type=int, default=20)
    ap.add_argument("--surrogate", default=None, help="surrogate directory (default: the shipped one)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hubtune.bench.simulator import SimulatedEvaluator
    from hubtune.metadata import load_metadata
    from hubtune.optim.quicktune import QuickTune
    from hubtune.protocol.steps import Step
    from hubtune.surrogate.cache import load_default_surrogate

    runs = load_metadata(args.metadata)[args.dataset]
    sur = load_default_surrogate(args.surrogate)
    print(f"dataset {args.dataset}: {len(runs.run_ids)} candidates, torch threads {args.threads}")
    print(f"{'observed epochs':>16} {'GP points':>10} {'mean wall s':>12} {'max wall s':>11} {'mean CPU s':>11}")
    for target in [int(x) for x in args.epochs.split(",")]:
        qt = QuickTune(sur, 50, candidates=list(zip(runs.run_ids, runs.configs, strict=True)),
                       meta_features=runs.meta_features, seed=0)
        ev = SimulatedEvaluator(runs)
        rng = np.random.default_rng(0)
        told = 0
        order = list(rng.permutation(len(runs.run_ids)))
        pos = {}
        while told < target:
            progressed = False
            for i in order:
                rid = runs.run_ids[i]
                now = pos.get(rid, 0)
                if now >= runs.lengths[i] or told >= target:
                    continue
                to = min(int(runs.lengths[i]), now + 5, now + target - told)
                res = ev.advance(Step(rid, runs.configs[i], to))
                qt.tell(res)
                pos[rid] = to
                told += len(res.records)
                progressed = True
            if not progressed:
                break
        times, cpu = [], []
        for _ in range(args.decisions):
            t0, c0 = time.perf_counter(), time.process_time()
            step = qt.ask()
            if step is None:
                break
            res = ev.advance(step)
            qt.tell(res)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        n_gp = min(told, qt.settings.max_observations)
        print(f"{told:>16} {n_gp:>10} {statistics.mean(times):>12.3f} {max(times):>11.3f} "
              f"{statistics.mean(cpu):>11.3f}")


if __name__ == "__main__":
    main()
