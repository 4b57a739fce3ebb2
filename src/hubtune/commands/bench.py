"""``hubtune bench``: compare search methods on a replayed meta-dataset (simulated clock)."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import typer


class BenchUsageError(ValueError):
    """Bad ``hubtune bench`` input (shown as a one-line error)."""


def _split(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def _code_version() -> str:
    """hubtune's version, plus the git commit of its source tree when there is one."""
    import subprocess

    from hubtune import __version__

    src = Path(__file__).resolve().parents[1]  # the hubtune package
    try:
        commit = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    if not commit:
        return f"hubtune {__version__}"
    return f"hubtune {__version__} (git {commit}{', uncommitted changes' if dirty else ''})"


def _resolve_methods(requested: list[str]) -> list[str]:
    from hubtune.optim.registry import get_method, list_methods

    if requested:
        for name in requested:
            spec = get_method(name)  # UnknownMethodError lists the known names
            spec.load()  # fail now, not in every cell, when its package is missing
        return requested
    usable = []
    for spec in list_methods():
        try:
            spec.load()
        except ImportError as exc:
            typer.secho(f"skipping method {spec.name!r}: {exc}", fg="yellow", err=True)
            continue
        usable.append(spec.name)
    return usable


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command to ``app``."""

    @app.command("bench")
    def bench(
        metadata: Path = typer.Option(None, "--metadata", help="Meta-dataset to replay (test datasets)."),
        out: Path = typer.Option(None, "--out", help="Output folder (results.json, summary.md, plots, cells/)."),
        train_metadata: Path | None = typer.Option(
            None, "--train-metadata",
            help="Meta-training data for meta-learning methods (default: --metadata); "
            "the test dataset (its fold) is always held out."),
        datasets: str | None = typer.Option(None, help="Comma-separated test datasets (default: all)."),
        methods: str | None = typer.Option(None, help="Comma-separated methods (default: all usable)."),
        budget: str = typer.Option("16h", help="Simulated budget per run: '3600', '30m', '4h', '16h'."),
        seeds: int = typer.Option(10, help="Seeds 0..N-1 per (method, dataset)."),
        folds: int | None = typer.Option(
            None, help="k-fold meta-training split over datasets (default: leave-one-dataset-out)."),
        workers: int = typer.Option(1, help="Simulated concurrent workers (asynchronous methods)."),
        jobs: int = typer.Option(1, help="Processes running cells in parallel."),
        resume_overhead: float = typer.Option(0.0, help="Seconds charged per thaw (continued step)."),
        start_overhead: float = typer.Option(0.0, help="Seconds charged per trial's first step."),
        overhead_clock: str = typer.Option(
            "process", help="Optimizer time charged to the clock: process | wall | none."),
        max_epochs: int | None = typer.Option(None, help="Highest fidelity (default: the table's)."),
        rerun: str | None = typer.Option(
            None, help="Comma-separated methods whose cached cells are recomputed ('all': every one)."),
        list_methods_: bool = typer.Option(False, "--list-methods", help="List methods and exit."),
    ) -> None:
        """Replay a meta-dataset and compare search methods on a simulated clock.

        Writes results.json, summary.md (regret at 1/4/16 h, IQM, ranks, time to
        5%/1% regret, overhead) and regret.png / rank.png. Finished cells are
        cached in OUT/cells and reused when run again with the same settings.
        """
        from hubtune.optim.registry import list_methods

        if list_methods_:
            for spec in list_methods():
                flags = [f for f, on in (("meta", spec.needs_metadata),
                                         ("async", spec.supports_async),
                                         ("subprocess", spec.subprocess)) if on]
                typer.echo(f"{spec.name:24s} [{','.join(flags)}] {spec.description}")
            return
        try:
            _run(metadata, out, train_metadata, datasets, methods, budget, seeds, folds,
                 workers, jobs, resume_overhead, start_overhead, overhead_clock, max_epochs,
                 rerun)
        except typer.Exit:
            raise
        except (ValueError, KeyError, ImportError, OSError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            typer.secho(f"error: {msg}", fg="red", err=True)
            raise typer.Exit(2) from None


def _run(metadata, out, train_metadata, datasets, methods, budget, seeds, folds, workers, jobs,
         resume_overhead, start_overhead, overhead_clock, max_epochs, rerun=None) -> None:
    import hubtune.metagen.runfolder  # noqa: F401  (lets load_metadata read 'hubtune run' folders)
    from hubtune.bench.suite import BenchSettings, run_grid
    from hubtune.core.units import format_duration, parse_duration

    _check_numbers(metadata, out, seeds, jobs, workers, overhead_clock, resume_overhead,
                   start_overhead)
    budget_s = parse_duration(budget)
    chosen, method_names = _datasets_and_methods(metadata, train_metadata, datasets, methods,
                                                 workers)
    settings = BenchSettings(
        metadata=str(Path(metadata).resolve()),
        budget=budget_s,
        train_metadata=str(Path(train_metadata).resolve()) if train_metadata else None,
        folds=folds,
        resume_overhead=resume_overhead,
        start_overhead=start_overhead,
        workers=workers,
        overhead_clock=overhead_clock,
        max_epochs=max_epochs,
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    total = len(method_names) * len(chosen) * seeds
    typer.echo(f"{len(method_names)} methods x {len(chosen)} datasets x {seeds} seeds = {total} "
               f"cells, budget {format_duration(budget_s)}, {jobs} job(s)")
    t0 = time.perf_counter()

    def progress(done: int, todo: int, cell, ok: bool) -> None:
        if not ok or done == todo or done % max(1, todo // 20) == 0:
            state = "ok" if ok else "FAILED"
            typer.echo(f"  [{done}/{todo}] {cell.method} {cell.dataset} seed {cell.seed}: {state}",
                       err=True)

    rerun_names = method_names if (rerun or "").strip() == "all" else _split(rerun)
    trajs, failures, reused = run_grid(settings, method_names, chosen, list(range(seeds)), out,
                                       jobs=jobs, progress=progress, rerun=rerun_names)
    elapsed = time.perf_counter() - t0
    _write_outputs(out, settings, trajs, failures, reused, elapsed)
    typer.echo(f"done in {elapsed:.1f} s ({reused} cells reused); wrote {out}/results.json, "
               f"summary.md, regret.png, rank.png")
    if failures:
        for f in failures[:10]:
            typer.secho(f"failed: {f.cell.method} {f.cell.dataset} seed {f.cell.seed}: {f.error}",
                        fg="red", err=True)
        raise typer.Exit(1)


def _check_numbers(metadata, out, seeds: int, jobs: int, workers: int, overhead_clock: str,
                   resume_overhead: float, start_overhead: float) -> None:
    """Refuse missing folders and out-of-range numbers (one-line usage errors)."""
    if metadata is None:
        raise BenchUsageError("--metadata DIR is required")
    if out is None:
        raise BenchUsageError("--out DIR is required")
    if seeds < 1:
        raise BenchUsageError(f"--seeds must be >= 1, got {seeds}")
    if jobs < 1 or workers < 1:
        raise BenchUsageError("--jobs and --workers must be >= 1")
    if overhead_clock not in ("process", "wall", "none"):
        raise BenchUsageError(f"--overhead-clock must be process, wall or none, got {overhead_clock!r}")
    for name, v in (("--resume-overhead", resume_overhead), ("--start-overhead", start_overhead)):
        if v < 0:
            raise BenchUsageError(f"{name} must be >= 0 seconds, got {v}")


def _datasets_and_methods(metadata, train_metadata, datasets, methods,
                          workers: int) -> tuple[list[str], list[str]]:
    """The datasets (all of ``metadata`` by default) and usable methods of the benchmark."""
    from hubtune.metadata import load_metadata
    from hubtune.optim.registry import get_method

    meta = load_metadata(metadata)
    if train_metadata is not None:
        load_metadata(train_metadata)  # fail early on a bad path
    chosen = _split(datasets) or list(meta.datasets)
    missing = [d for d in chosen if d not in meta.datasets]
    if missing:
        raise BenchUsageError(
            f"unknown dataset(s) {', '.join(missing)}; {metadata} has: {', '.join(meta.datasets)}")
    method_names = _resolve_methods(_split(methods))
    if not method_names:
        raise BenchUsageError("no usable method")
    if workers > 1:
        serial = [m for m in method_names if not get_method(m).supports_async]
        if serial:
            raise BenchUsageError(
                f"--workers {workers}: method(s) {', '.join(serial)} cannot run asynchronously")
    return chosen, method_names


def _write_outputs(out: Path, settings, trajs, failures, reused: int, elapsed: float) -> None:
    """``results.json`` and, when any cell ran, ``summary.json``, ``summary.md`` and the plots."""
    from hubtune.bench.report import (
        plot_summary,
        render_summary_md,
        results_document,
        summarize,
    )

    command = "hubtune " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    fail_docs = [{"method": f.cell.method, "dataset": f.cell.dataset, "seed": f.cell.seed,
                  "error": f.error} for f in failures]
    doc = results_document(trajs, settings.to_dict(), command, fail_docs)
    doc["code_version"] = _code_version()
    (out / "results.json").write_text(json.dumps(doc))
    if not trajs:
        return
    summary = summarize(trajs, settings.budget)
    (out / "summary.json").write_text(json.dumps(summary))
    folds = settings.folds
    preamble = [
        f"Command: `{command}`",
        "",
        f"Code: {doc['code_version']}.",
        "",
        f"Settings: resume overhead {settings.resume_overhead:g} s, start overhead "
        f"{settings.start_overhead:g} s, "
        f"{settings.workers} simulated worker(s), meta-training "
        f"{'k-fold (k=' + str(folds) + ')' if folds else 'leave-one-dataset-out'} on "
        f"{settings.train_metadata or settings.metadata}; optimizer time charged "
        f"({settings.overhead_clock} clock). Wall time of this benchmark run: {elapsed:.1f} s "
        f"({reused} cells reused from cache).",
    ]
    if failures:
        preamble += ["", f"**{len(failures)} cell(s) failed** (see results.json): "
                     + "; ".join(f"{f.cell.method}/{f.cell.dataset}/{f.cell.seed}"
                                 for f in failures[:10])]
    (out / "summary.md").write_text(render_summary_md(summary, preamble=preamble))
    plot_summary(summary, out)
