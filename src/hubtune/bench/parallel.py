"""Parallel benchmark: the same methods with 1, 4, 8, ... simulated asynchronous workers.

Runs (or reuses) one benchmark grid per worker count (``cells/w<N>/cells``,
the cache of :func:`hubtune.bench.suite.run_grid`) and compares them:

- mean normalized regret at 1 h / 4 h / 16 h (bootstrap 95% CIs);
- time to 5% / 1% regret (median over cells, fraction reached);
- **time to the 1-worker target**: the first simulated time at which the mean
  regret over all cells of (method, N workers) is at most the same method's
  1-worker mean regret at the end of the budget; the **speed-up** is the
  budget divided by that time (CI: bootstrap over the (dataset, seed) cells,
  paired across worker counts). Also per cell: the median over cells of the
  time to reach that cell's own 1-worker final regret;
- for a reference method (hubtune's ``quicktune``) against every other
  method with the same workers: the paired difference of mean regret at each
  horizon (CI over cells) and the share of the time grid where the
  reference's mean regret is lower.

Where it lives: the statistics in :mod:`hubtune.bench.parallel_stats`, the
Markdown tables and the plot in :mod:`hubtune.bench.parallel_render`; this
module runs the grids and is the command line.

Command (writes ``summary.json``, ``summary.md``, ``regret_parallel.png`` and
``results.json`` into ``--out``)::

    python -m hubtune.bench.parallel --metadata ../shared/metadata/quicktune-extended \\
        --methods quicktune,asha,random --workers 1,4,8 --budget 16h \\
        --seeds 10 --seeds-for quicktune=5 \\
        --jobs 2 --cells bench-parallel --out docs/benchmarks/parallel
"""


from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hubtune.bench.parallel_render import (  # noqa: F401  (re-exported: their home was here)
    plot_parallel,
    render_parallel_md,
)
from hubtune.bench.parallel_stats import (  # noqa: F401  (re-exported: their home was here)
    Cells,
    ParallelBenchError,
    mean_regret_steps,
    paired_difference,
    parallel_summary,
    per_cell_time_to_base,
    speedup_ci,
    time_to_mean_regret,
)
from hubtune.bench.report import results_document
from hubtune.bench.runner import Trajectory
from hubtune.core.units import parse_duration


# ------------------------------------------------------------------ driver
def run_parallel(
    metadata: Path,
    methods: Sequence[str],
    workers: Sequence[int],
    budget: float,
    seeds: int,
    cells_dir: Path,
    datasets: Sequence[str] | None = None,
    jobs: int = 1,
    rerun: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
    seeds_for: dict[str, int] | None = None,
) -> tuple[dict[int, list[Trajectory]], dict[int, dict[str, Any]]]:
    """Run (or reuse) the grid for every worker count; returns trajectories and settings per count.

    Cells live in ``cells_dir / f"w{N}" / "cells"`` (the :mod:`hubtune.bench.suite` cache).
    ``seeds_for`` gives some methods another number of seeds than ``seeds``.
    """
    from hubtune.bench.suite import BenchSettings, run_grid
    from hubtune.metadata import load_metadata

    meta = load_metadata(metadata)
    chosen = list(datasets) if datasets else list(meta.datasets)
    missing = [d for d in chosen if d not in meta.datasets]
    if missing:
        raise ParallelBenchError(f"unknown dataset(s) {', '.join(missing)} in {metadata}")
    runs: dict[int, list[Trajectory]] = {}
    settings_by_w: dict[int, dict[str, Any]] = {}
    for w in workers:
        settings = BenchSettings(metadata=str(Path(metadata).resolve()), budget=budget, workers=w)
        t0 = time.time()
        trajs, failures, reused = [], [], 0
        groups: dict[int, list[str]] = {}
        for m in methods:
            groups.setdefault((seeds_for or {}).get(m, seeds), []).append(m)
        for n_seeds, group in groups.items():
            t, f, r = run_grid(settings, group, chosen, range(n_seeds), Path(cells_dir) / f"w{w}",
                               jobs=jobs, rerun=rerun)
            trajs, failures, reused = trajs + t, failures + f, reused + r
        if failures:
            first = failures[0]
            raise ParallelBenchError(
                f"{len(failures)} cell(s) failed with {w} workers, e.g. {first.cell}: {first.error}")
        if progress is not None:
            progress(f"{w} worker(s): {len(trajs)} cells ({reused} reused) in "
                     f"{time.time() - t0:.0f} s")
        runs[w] = trajs
        settings_by_w[w] = settings.to_dict()
    return runs, settings_by_w


def _parse_workers(text: str) -> list[int]:
    try:
        ws = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise ParallelBenchError(f"--workers must be a comma-separated list of integers, got {text!r}") from None
    if not ws or ws[0] < 1:
        raise ParallelBenchError(f"--workers must list integers >= 1, got {text!r}")
    return ws


def _parse_seeds_for(text: str) -> dict[str, int]:
    out = {}
    for item in (x.strip() for x in text.split(",") if x.strip()):
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            raise ParallelBenchError(
                f"--seeds-for takes METHOD=N pairs separated by commas, got {item!r}") from None
        if out[name.strip()] < 1:
            raise ParallelBenchError(f"--seeds-for: seeds must be >= 1, got {item!r}")
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hubtune.bench.parallel",
                                description="Compare methods with several simulated workers.")
    p.add_argument("--metadata", type=Path, required=True, help="meta-dataset to replay")
    p.add_argument("--methods", default="quicktune,asha,random",
                   help="comma-separated methods (need supports_async for workers > 1)")
    p.add_argument("--workers", default="1,4,8", help="comma-separated worker counts")
    p.add_argument("--datasets", default="", help="comma-separated datasets (default: all)")
    p.add_argument("--budget", default="16h", help="simulated budget per run")
    p.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1")
    p.add_argument("--seeds-for", default="",
                   help="other seed counts for some methods, e.g. 'quicktune=5'")
    p.add_argument("--jobs", type=int, default=1, help="processes running cells")
    p.add_argument("--cells", type=Path, required=True,
                   help="cache folder for the per-cell results (one subfolder per worker count)")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    p.add_argument("--reference", default="quicktune", help="method compared with the others")
    p.add_argument("--rerun", default="", help="methods whose cached cells are recomputed")
    return p


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _checked_methods(text: str, workers: list[int], seeds: int, jobs: int) -> list[str]:
    """The ``--methods`` list, each able to run with the largest worker count."""
    from hubtune.optim.registry import get_method

    methods = _names(text)
    if not methods:
        raise ParallelBenchError("--methods is empty")
    if seeds < 1 or jobs < 1:
        raise ParallelBenchError("--seeds and --jobs must be >= 1")
    for m in methods:
        if workers[-1] > 1 and not get_method(m).supports_async:
            raise ParallelBenchError(f"method {m!r} does not support several workers")
    return methods


def _write_report(out: Path, summary: dict[str, Any], runs: dict[int, list[Trajectory]],
                  settings: dict[int, dict[str, Any]], command: str) -> None:
    """``summary.json``, ``summary.md``, ``results.json`` and the plot, into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.md").write_text(render_parallel_md(
        summary, preamble=[f"Command: `{command}`"]))
    (out / "results.json").write_text(json.dumps(
        {str(w): results_document(runs[w], settings[w], command) for w in runs}) + "\n")
    plot_parallel(summary, out)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module docstring."""
    args = _parser().parse_args(argv)
    try:
        workers = _parse_workers(args.workers)
        methods = _checked_methods(args.methods, workers, args.seeds, args.jobs)
        seeds_for = _parse_seeds_for(args.seeds_for)
        budget = parse_duration(args.budget)
        t0 = time.time()
        runs, settings = run_parallel(
            args.metadata, methods, workers, budget, args.seeds, args.cells,
            datasets=_names(args.datasets) or None, jobs=args.jobs, rerun=_names(args.rerun),
            progress=lambda msg: print(msg, flush=True), seeds_for=seeds_for)
        elapsed = time.time() - t0
        summary = parallel_summary(runs, budget, reference=args.reference)
        command = "python -m hubtune.bench.parallel " + " ".join(
            shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
        summary["command"] = command
        summary["settings"] = {str(w): s for w, s in settings.items()}
        summary["wall_seconds"] = elapsed
        out = Path(args.out)
        _write_report(out, summary, runs, settings, command)
    except (ValueError, KeyError, ImportError, OSError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {msg}", file=sys.stderr)
        return 2
    print(f"wrote {out}/summary.md, summary.json, results.json, regret_parallel.png "
          f"({elapsed:.0f} s of benchmark)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
