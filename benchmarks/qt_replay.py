"""Leave-one-out replay of Quick-Tune settings variants against a reference, paired over datasets.

Registers each variant (a JSON object of :class:`~hubtune.optim.quicktune.QuickTuneSettings`
overrides) as a bench method ``qtv_<name>``, runs the grid (20 datasets of the meta-dataset x
seeds, one budget, leave-one-dataset-out surrogates, process clock) with the cell cache of
:func:`hubtune.bench.suite.run_grid`, and prints per horizon (points of the same run) the mean
regret of every variant, its paired difference to the reference (the first variant) with a 95%
bootstrap CI over datasets (seeds averaged per dataset first), datasets better / worse, and the
datasets whose regret at the second horizon equals the first while above 0.01 (plateaus).

``--surrogate-seeds 0,1,2`` runs every variant with fold surrogates meta-trained with each seed
(methods ``qtv_<name>-s<k>``): on a fixed table the bench seeds give near-identical runs, and a
slightly different meta-trained surrogate is the larger source of variation, so a setting is
only trusted if it helps across them.

Example (the issue #13 protocol: today's quicktune as ``main``)::

    python benchmarks/qt_replay.py --out /tmp/qtr --budget 16h --seeds 0 \
        --variant 'main={"calibrate_new": null, "calibrate_continue": null}' --variant 'new={}'

``--json F`` also writes every figure (and per-dataset regrets) to ``F``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

METHOD_PREFIX = "qtv_"
DEFAULT_HORIZONS = (3600.0, 14400.0, 57600.0)
FACTORY_OPTIONS = ("variant", "ensemble", "surrogate_seed", "metatrain_overrides")
"""Variant keys that go to :func:`~hubtune.optim.qt_factory.make_quicktune`, not to the settings."""


def parse_variant(text: str) -> tuple[str, dict]:
    """``NAME=JSON`` -> (name, overrides); a clear ``ValueError`` otherwise."""
    name, sep, body = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"--variant must be NAME=JSON, got {text!r}")
    try:
        overrides = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--variant {name}: not JSON ({exc})") from None
    if not isinstance(overrides, dict):
        raise ValueError(f"--variant {name}: expected a JSON object")
    return name.strip(), overrides


def parse_seconds(text: str) -> float:
    """``16h`` / ``90m`` / ``3600`` -> seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    t = text.strip().lower()
    if t and t[-1] in units:
        return float(t[:-1]) * units[t[-1]]
    return float(t)


def method_name(variant: str, surrogate_seed: int) -> str:
    """The bench method of a variant with the fold surrogates of one meta-training seed."""
    return METHOD_PREFIX + variant + (f"-s{surrogate_seed}" if surrogate_seed else "")


def register_variants(variants: list[tuple[str, dict]], surrogate_seeds: list[int] = (0,)) -> list[str]:
    """Register each (variant, surrogate seed) as a bench method; returns the method names."""
    from hubtune.optim.quicktune import QuickTuneSettings
    from hubtune.optim.registry import register_method

    names = []
    for name, overrides in variants:
        opts = {"variant": "full", **overrides}
        if "horizons" in opts:
            opts["horizons"] = tuple(opts["horizons"])
        QuickTuneSettings(**{k: v for k, v in opts.items() if k not in FACTORY_OPTIONS})
        for ss in surrogate_seeds:
            register_method(method_name(name, ss), "hubtune.optim.qt_factory:make_quicktune",
                            needs_metadata=True, supports_async=True, replace=True,
                            options={**opts, **({"surrogate_seed": ss} if ss else {})},
                            prepare="hubtune.optim.qt_factory:prepare_quicktune",
                            description=f"Quick-Tune settings variant {json.dumps(overrides, sort_keys=True)}")
            names.append(method_name(name, ss))
    return names


def paired_ci(diff: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of per-dataset differences and its 95% percentile-bootstrap CI."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(n_boot, len(diff)))
    boots = diff[idx].mean(axis=1)
    return float(diff.mean()), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def regret_table(trajs, variants: list[str], surrogate_seeds: list[int], datasets: list[str],
                 horizons: list[float]) -> np.ndarray:
    """Regret ``[variant, dataset, surrogate seed, horizon]`` averaged over bench seeds."""
    shape = (len(variants), len(datasets), len(surrogate_seeds))
    out = np.zeros(shape + (len(horizons),))
    count = np.zeros(shape)
    mi = {method_name(v, ss): (i, k) for i, v in enumerate(variants) for k, ss in enumerate(surrogate_seeds)}
    di = {d: i for i, d in enumerate(datasets)}
    for t in trajs:
        (i, k), j = mi[t.method], di[t.dataset]
        out[i, j, k] += [t.regret_at(h) for h in horizons]
        count[i, j, k] += 1
    if (count == 0).any():
        raise RuntimeError("some (method, dataset) pairs have no finished cell")
    return out / count[..., None]


def plateaus(reg: np.ndarray, datasets: list[str], first: int, second: int, floor: float = 0.01) -> list[str]:
    """Datasets whose regret at horizon ``second`` equals that at ``first`` while above ``floor``."""
    return [d for d, r in zip(datasets, reg, strict=True) if r[second] >= r[first] - 1e-12 and r[second] > floor]


def summarise(full: np.ndarray, names: list[str], datasets: list[str], horizons: list[float]) -> dict:
    """Means, paired differences to the first variant (per dataset, surrogate seeds averaged),
    better/worse counts and plateaus (in the first surrogate seed's runs)."""
    out: dict = {"horizons_s": horizons, "datasets": datasets, "variants": {}}
    reg = full.mean(axis=2)
    for i, name in enumerate(names):
        v = {"mean": reg[i].mean(axis=0).tolist(), "per_dataset": reg[i].tolist(),
             "per_surrogate_seed": full[i].mean(axis=0).tolist()}
        if i > 0:
            v["paired"] = []
            for h in range(len(horizons)):
                diff = reg[i, :, h] - reg[0, :, h]
                m, lo, hi = paired_ci(diff)
                v["paired"].append({"diff": m, "ci": [lo, hi], "better": int((diff < -1e-9).sum()),
                                    "worse": int((diff > 1e-9).sum())})
        if len(horizons) >= 2:
            v["plateaus"] = [plateaus(full[i, :, k], datasets, 0, 1) for k in range(full.shape[2])]
        out["variants"][name] = v
    return out


def print_summary(s: dict) -> None:
    hs = [f"{h / 3600:g} h" for h in s["horizons_s"]]
    print("variant | " + " | ".join(hs) + " | plateaus (h1 = h2 > 0.01)")
    for name, v in s["variants"].items():
        cells = []
        for h in range(len(hs)):
            c = f"{v['mean'][h]:.4f}"
            if "paired" in v:
                p = v["paired"][h]
                c += f" ({p['diff']:+.4f} [{p['ci'][0]:+.4f}, {p['ci'][1]:+.4f}] {p['better']}/{p['worse']})"
            cells.append(c)
        plat = "; ".join(",".join(p) or "-" for p in v.get("plateaus", []))
        print(f"{name} | " + " | ".join(cells) + " | " + plat)
        if len(v["per_surrogate_seed"]) > 1:
            print("    per surrogate seed: " + "; ".join(" / ".join(f"{x:.4f}" for x in row)
                                                      for row in v["per_surrogate_seed"]))


def speedups(parallel, sequential, variants: list[str], surrogate_seeds: list[int], budget: float) -> dict:
    """Per variant: its 1-worker mean regret at the budget (the target), the first time its
    parallel mean regret curve (over all its cells) is at or below it, and budget / that time."""
    from hubtune.bench.parallel_stats import time_to_mean_regret

    out = {}
    for v in variants:
        names = {method_name(v, ss) for ss in surrogate_seeds}
        par = [t for t in parallel if t.method in names]
        seq = [t for t in sequential if t.method in names]
        target = float(np.mean([t.regret_at(budget) for t in seq]))
        t_hit = time_to_mean_regret(par, target)
        out[v] = {"target": target, "time_s": t_hit, "speedup": budget / t_hit if t_hit > 0 else float("inf"),
                  "final": float(np.mean([t.regret_at(budget) for t in par]))}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--metadata", default="../shared/metadata/quicktune-extended")
    ap.add_argument("--out", required=True, help="cell cache folder (reused across calls; N > 1 workers: OUT/wN)")
    ap.add_argument("--budget", default="16h")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--datasets", default=None, help="comma-separated subset (default: all)")
    ap.add_argument("--horizons", default=None, help="comma-separated report times (default 1h,4h,16h within budget)")
    ap.add_argument("--variant", action="append", required=True, help="NAME=JSON settings overrides; first = reference")
    ap.add_argument("--surrogate-seeds", default="0", help="comma-separated meta-training seeds of the fold surrogates")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--speedup", action="store_true",
                    help="with --workers N > 1: also run (or reuse) the 1-worker grid and print when each "
                         "variant's N-worker mean regret curve first reaches its own 1-worker final mean")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--rerun", default="", help="comma-separated variant names to recompute")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    try:
        variants = [parse_variant(v) for v in args.variant]
        budget = parse_seconds(args.budget)
        sseeds = [int(x) for x in args.surrogate_seeds.split(",")]
        methods = register_variants(variants, sseeds)
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from hubtune.bench.suite import BenchSettings, _load, run_grid

    meta = _load(args.metadata)
    datasets = args.datasets.split(",") if args.datasets else sorted(meta.datasets)
    seeds = [int(s) for s in args.seeds.split(",")]
    horizons = ([parse_seconds(h) for h in args.horizons.split(",")] if args.horizons
                else [h for h in DEFAULT_HORIZONS if h <= budget] or [budget])
    settings = BenchSettings(metadata=args.metadata, budget=budget, workers=args.workers)
    rerun = [method_name(r, ss) for r in args.rerun.split(",") if r for ss in sseeds]

    def progress(done: int, total: int, cell, ok: bool) -> None:
        if done % 20 == 0 or done == total:
            print(f"  {done}/{total} cells", file=sys.stderr, flush=True)

    # cells of N > 1 workers live in their own folder (a cell file is per method, dataset and seed)
    out = Path(args.out) / f"w{args.workers}" if args.workers > 1 else Path(args.out)
    trajs, failures, reused = run_grid(settings, methods, datasets, seeds, out, jobs=args.jobs,
                                       progress=progress, rerun=rerun)
    for f in failures:
        print(f"FAILED {f.cell}: {f.error}", file=sys.stderr)
    if failures:
        return 1
    names = [n for n, _ in variants]
    reg = regret_table(trajs, names, sseeds, datasets, horizons)
    summary = summarise(reg, names, datasets, horizons)
    summary.update({"budget_s": budget, "seeds": seeds, "surrogate_seeds": sseeds, "workers": args.workers,
                    "overrides": dict(variants), "reused_cells": reused})
    print_summary(summary)
    if args.speedup and args.workers > 1:
        one = BenchSettings(metadata=args.metadata, budget=budget, workers=1)
        base, failures, _ = run_grid(one, methods, datasets, seeds, Path(args.out), jobs=args.jobs, progress=progress)
        if failures:
            return 1
        summary["speedup"] = speedups(trajs, base, [n for n, _ in variants], sseeds, budget)
        for name, sp in summary["speedup"].items():
            print(f"{name}: 1-worker final mean {sp['target']:.4f}; {args.workers} workers reach it at "
                  f"{sp['time_s']:.0f} s = {sp['speedup']:.2f}x sooner ({args.workers}-worker final {sp['final']:.4f})")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
