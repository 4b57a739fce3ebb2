"""Leave-one-out replay of a meta-dataset built only from ``hubtune run`` folders: specialised vs shipped.

Converts the given run folders (docs/from-runs.md; folders of the same data merge
into one dataset), saves the meta-dataset in hubtune's own format under
``OUT/meta``, and replays it with ``hubtune.bench.suite.run_grid`` as ``hubtune
bench`` does: on every dataset, ``qt_shipped`` (the shipped surrogate as is)
and ``qt_specialised`` (the shipped surrogate meta-trained further on the
*other* datasets' runs, i.e. what ``hubtune metatrain --from-runs`` on the other
folders gives), each on the simulated clock. Prints the mean normalized regret
of both at three horizons (fractions of the budget), the paired difference
(specialised - shipped, with a bootstrap 95% interval over the cells) and the
number of cells, as markdown and JSON.

    python benchmarks/from_runs_replay.py runs/a runs/b runs/c --budget 5m --seeds 0,1,2 --out /tmp/frr

Needs at least two sources of data among the folders. Runs of the same images
with other seeds or subsets are other datasets but the same source
(``provenance[...]["sources"]``, e.g. ``builtin:digits``); as ``hubtune run
--surrogate`` refuses to search a source the surrogate was trained on, a
dataset's fold holds out every dataset of its source, not only itself. The
replay can only offer each dataset's recorded trials, so it measures how fast
the surrogate picks the best of them, not a search over the whole space.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hubtune.bench.metrics import regret_curve
from hubtune.bench.suite import BenchSettings, run_grid
from hubtune.core.units import parse_duration
from hubtune.metadata import MetaDataset, save_metadata
from hubtune.metagen.runfolder import load_run_folders

METHODS = ("qt_shipped", "qt_specialised")


def _ci(diff: np.ndarray, seed: int = 0, n: int = 2000) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = [float(np.mean(rng.choice(diff, size=len(diff)))) for _ in range(n)]
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def source_groups(meta: MetaDataset) -> list[list[str]]:
    """The datasets of ``meta`` grouped by the data they come from (their provenance's
    sources; a dataset without provenance is its own group)."""
    groups: list[tuple[set[str], list[str]]] = []
    for d in meta.datasets:
        src = set((meta.provenance.get(d) or {}).get("sources") or [f"dataset:{d}"])
        for known, names in groups:
            if known & src:
                known |= src
                names.append(d)
                break
        else:
            groups.append((src, [d]))
    return [names for _, names in groups]


def _grid(meta: MetaDataset, groups: list[list[str]], budget: float, seeds: list[int],
          out: Path) -> tuple[list, list]:
    """Every group's datasets replayed with the other groups as meta-training data."""
    trajs, failures = [], []
    for i, group in enumerate(groups):
        test_dir, train_dir = out / "meta" / f"group{i}", out / "meta" / f"group{i}-train"
        save_metadata(meta.only(group), test_dir)
        save_metadata(meta.without(group), train_dir)
        settings = BenchSettings(metadata=str(test_dir), train_metadata=str(train_dir),
                                 budget=budget)
        t, f, _ = run_grid(settings, METHODS, group, seeds, out / "cells" / f"group{i}")
        trajs += t
        failures += f
    return trajs, failures


def replay(run_dirs: list[str], budget: float, seeds: list[int], out: Path,
           horizons: tuple[float, ...] = (0.1, 0.3, 1.0)) -> dict:
    """Build the meta-dataset, run the grid, and summarise regret at ``horizons`` x budget."""
    meta = load_run_folders(run_dirs)
    groups = source_groups(meta)
    if len(groups) < 2:
        raise SystemExit(f"need run folders of at least 2 different sources of data, got {groups}")
    trajs, failures = _grid(meta, groups, budget, seeds, out)
    for f in failures:
        print(f"failed cell: {f}")
    grid = np.array([h * budget for h in horizons])
    by = {(t.method, t.dataset, t.seed): regret_curve(t, grid) for t in trajs}
    cells = sorted({(d, s) for (_, d, s) in by if all((m, d, s) in by for m in METHODS)})
    rows = []
    for i, h in enumerate(horizons):
        shipped = np.array([by[("qt_shipped", d, s)][i] for d, s in cells])
        spec = np.array([by[("qt_specialised", d, s)][i] for d, s in cells])
        diff = spec - shipped
        lo, hi = _ci(diff) if len(diff) else (float("nan"), float("nan"))
        rows.append({"horizon_s": float(h * budget), "qt_shipped": float(shipped.mean()),
                     "qt_specialised": float(spec.mean()), "diff": float(diff.mean()),
                     "diff_ci95": [lo, hi], "better": int((diff < 0).sum()), "worse": int((diff > 0).sum())})
    return {"datasets": meta.datasets, "groups": groups,
            "runs": {d: len(meta[d]) for d in meta.datasets},
            "unmapped": len(meta.unmapped), "cells": len(cells), "budget_s": budget, "horizons": rows}


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dirs", nargs="+", help="hubtune run folders")
    ap.add_argument("--budget", default="5m", help="simulated budget per cell (default 5m)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    ap.add_argument("--horizons", default="0.1,0.3,1.0", help="fractions of the budget (default 0.1,0.3,1.0)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the meta-dataset and cells")
    args = ap.parse_args()
    res = replay(args.run_dirs, parse_duration(args.budget), [int(s) for s in args.seeds.split(",")],
                 args.out, tuple(float(h) for h in args.horizons.split(",")))
    print(f"datasets: {', '.join(f'{d} ({n} runs)' for d, n in res['runs'].items())}; "
          f"{res['unmapped']} unmapped; {res['cells']} cells; held out together: "
          + "; ".join(", ".join(g) for g in res["groups"]))
    print("| horizon | qt_shipped | qt_specialised | specialised - shipped [95% CI] | better/worse cells |")
    print("|---|---|---|---|---|")
    for r in res["horizons"]:
        lo, hi = r["diff_ci95"]
        print(f"| {r['horizon_s']:.0f} s | {r['qt_shipped']:.3f} | {r['qt_specialised']:.3f} | "
              f"{r['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}] | {r['better']}/{r['worse']} |")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
