"""Wall time of one Quick-Tune decision (ask + tell) as the number of observed epochs grows.

Replays real learning curves of one dataset of the shared meta-dataset: trials
are advanced (in a fixed random order, a few epochs each) until the optimizer
has been told about N observed epochs, then ``ask`` + ``tell`` are timed over
several decisions. Prints one line per N.

    python benchmarks/optimizer_overhead.py [--dataset PLT_VIL] [--epochs 100,500,1000,2000]
        [--baseline '{"calibrate_new": null, "calibrate_continue": null}']
        [--variant '{"calibrate_new": 5, "calibrate_continue": 5}' ...] [--budget-left 36000]

``--variant`` (QuickTuneSettings overrides as JSON, repeatable) times each
variant on the same replay right after the baseline (``--baseline``, default:
the default settings), one line each, with its mean CPU time per decision as a
ratio to the baseline's. ``--budget-left`` passes a remaining budget to every
``ask`` (as ``hubtune run`` and the benchmark do), so the budget rules are timed too. The warm-up
steps carry no prediction (they are not asked), so a calibrating variant fits
on the residuals of the timed decisions only; the last line times
``fit_calibration`` itself on as many residuals as observed epochs (its cost
grows linearly with the residuals).
"""

from __future__ import annotations

import argparse
import json
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
    ap.add_argument("--variant", action="append", default=[],
                    help="QuickTuneSettings overrides as JSON, timed against the baseline (repeatable)")
    ap.add_argument("--baseline", default="{}", help="QuickTuneSettings overrides of the reference (JSON)")
    ap.add_argument("--budget-left", type=float, default=None, help="budget left passed to every ask (seconds)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hubtune.bench.simulator import SimulatedEvaluator
    from hubtune.metadata import load_metadata
    from hubtune.optim.quicktune import QuickTune, QuickTuneSettings
    from hubtune.optim.quicktune.calibration import fit_calibration
    from hubtune.protocol.steps import Step
    from hubtune.surrogate.cache import load_default_surrogate

    runs = load_metadata(args.metadata)[args.dataset]
    sur = load_default_surrogate(args.surrogate)
    print(f"dataset {args.dataset}: {len(runs.run_ids)} candidates, torch threads {args.threads}")
    variants = [("baseline " + args.baseline, json.loads(args.baseline))] + [(v, json.loads(v)) for v in args.variant]
    print(f"{'observed epochs':>16} {'GP points':>10} {'mean wall s':>12} {'max wall s':>11} {'mean CPU s':>11}"
          f"{'  settings (CPU ratio to baseline)' if args.variant else ''}")
    for target in [int(x) for x in args.epochs.split(",")]:
        base_cpu = None
        for label, overrides in variants:
            told, times, cpu, n_gp = _time_decisions(runs, sur, target, args.decisions,
                                                     QuickTuneSettings(**overrides), QuickTune, SimulatedEvaluator,
                                                     Step, args.budget_left)
            mean_cpu = statistics.mean(cpu)
            base_cpu = mean_cpu if base_cpu is None else base_cpu
            extra = f"  {label} ({mean_cpu / base_cpu:.2f}x)" if args.variant else ""
            print(f"{told:>16} {n_gp:>10} {statistics.mean(times):>12.3f} {max(times):>11.3f} "
                  f"{mean_cpu:>11.3f}{extra}")
    if args.variant:
        n = max(int(x) for x in args.epochs.split(","))
        z = list(np.random.default_rng(0).normal(size=n))
        t0 = time.perf_counter()
        for _ in range(100):
            fit_calibration(z, 5.0)
        print(f"fit_calibration on {n} residuals: {(time.perf_counter() - t0) / 100 * 1e3:.3f} ms")


def _time_decisions(runs, sur, target, decisions, settings, QuickTune, SimulatedEvaluator, Step,  # noqa: N803
                    budget_left=None):
    """Replay ``target`` observed epochs, then time ``decisions`` ask + tell pairs."""
    qt = QuickTune(sur, 50, candidates=list(zip(runs.run_ids, runs.configs, strict=True)),
                   meta_features=runs.meta_features, seed=0, settings=settings)
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
    for _ in range(decisions):
        t0, c0 = time.perf_counter(), time.process_time()
        step = qt.ask(budget_left=budget_left)
        if step is None:
            break
        res = ev.advance(step)
        qt.tell(res)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return told, times, cpu, min(told, qt.settings.max_observations)


if __name__ == "__main__":
    main()
