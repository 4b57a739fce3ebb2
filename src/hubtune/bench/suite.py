"""Run a whole benchmark grid (methods x datasets x seeds), in parallel, with a per-cell cache.

Every finished cell is written to ``out/cells/<method>__<dataset>__<seed>.json``
together with the settings that produced it; running again with the same
``out`` and settings reuses those cells, so a long benchmark can be resumed
or extended (more seeds, datasets or methods). A cell computed under other
settings is recomputed and overwritten.

Cells run in a :class:`concurrent.futures.ProcessPoolExecutor` (``jobs``
processes, one torch/OpenMP thread each); each process loads the
meta-dataset once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hubtune.bench.runner import Trajectory, fold_train_metadata, run_one

CELL_FORMAT = 2  # 2: run_one goes through SearchLoop and its budget rules


@dataclass(frozen=True)
class BenchSettings:
    """What, besides (method, dataset, seed), determines a cell's result."""

    metadata: str
    budget: float
    train_metadata: str | None = None
    folds: int | None = None
    resume_overhead: float = 0.0
    start_overhead: float = 0.0
    workers: int = 1
    overhead_clock: str = "process"
    max_epochs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Cell:
    """One (method, dataset, seed) run."""

    method: str
    dataset: str
    seed: int

    @property
    def filename(self) -> str:
        return f"{self.method}__{self.dataset}__{self.seed}.json"


@dataclass
class CellFailure:
    """A cell whose method raised; the benchmark goes on and reports it."""

    cell: Cell
    error: str


# ------------------------------------------------------------ per process
_LOADED: dict[str, Any] = {}


def _load(path: str):
    if path not in _LOADED:
        from hubtune.metadata import load_metadata

        _LOADED[path] = load_metadata(path)
    return _LOADED[path]


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def run_cell(settings: BenchSettings, cell: Cell) -> Trajectory:
    """Run one cell (loads the meta-datasets once per process).

    Folds (``settings.folds``) are formed over all datasets of ``settings.metadata``.
    """
    from hubtune.optim.registry import get_method

    meta = _load(settings.metadata)
    spec = get_method(cell.method)
    train = None
    if spec.needs_metadata:
        source = _load(settings.train_metadata) if settings.train_metadata else meta
        train = fold_train_metadata(source, cell.dataset, meta.datasets, settings.folds)
    return run_one(
        spec,
        meta[cell.dataset],
        seed=cell.seed,
        budget_seconds=settings.budget,
        train_metadata=train,
        max_epochs=settings.max_epochs,
        resume_overhead=settings.resume_overhead,
        start_overhead=settings.start_overhead,
        workers=settings.workers,
        overhead_clock=settings.overhead_clock,  # type: ignore[arg-type]
    )


def _run_cell_safe(settings: BenchSettings, cell: Cell):
    try:
        return cell, run_cell(settings, cell).to_dict(), None
    except Exception as exc:  # reported per cell; the grid goes on
        return cell, None, f"{type(exc).__name__}: {exc}"


# ------------------------------------------------------------ cache
def read_cell(out: Path, settings: BenchSettings, cell: Cell) -> Trajectory | None:
    """The cached trajectory of ``cell`` if it was computed under ``settings``."""
    path = out / "cells" / cell.filename
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if data.get("format") != CELL_FORMAT or data.get("settings") != settings.to_dict():
        return None
    return Trajectory.from_dict(data["trajectory"])


def write_cell(out: Path, settings: BenchSettings, cell: Cell, traj: dict[str, Any]) -> None:
    """Store a finished cell (atomically)."""
    folder = out / "cells"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (cell.filename + ".tmp")
    tmp.write_text(json.dumps(
        {"format": CELL_FORMAT, "settings": settings.to_dict(), "trajectory": traj}
    ))
    tmp.replace(folder / cell.filename)


# ------------------------------------------------------------ grid
def run_grid(
    settings: BenchSettings,
    methods: Sequence[str],
    datasets: Sequence[str],
    seeds: Sequence[int],
    out: Path,
    jobs: int = 1,
    progress: Callable[[int, int, Cell, bool], None] | None = None,
    rerun: Sequence[str] = (),
) -> tuple[list[Trajectory], list[CellFailure], int]:
    """Run (or reuse) every cell; returns ``(trajectories, failures, reused count)``.

    Cached cells of the methods in ``rerun`` are recomputed (e.g. after the
    method's code changed: the cache key is the settings, not the code).
    ``progress(done, total, cell, ok)`` is called after every computed cell.
    """
    out = Path(out)
    cells = [Cell(m, d, s) for m in methods for d in datasets for s in seeds]
    results: dict[Cell, Trajectory] = {}
    todo: list[Cell] = []
    for cell in cells:
        cached = None if cell.method in rerun else read_cell(out, settings, cell)
        if cached is not None:
            results[cell] = cached
        else:
            todo.append(cell)
    reused = len(results)
    failures: list[CellFailure] = []
    done = 0

    def finish(cell: Cell, traj: dict | None, error: str | None) -> None:
        nonlocal done
        done += 1
        if traj is not None:
            write_cell(out, settings, cell, traj)
            results[cell] = Trajectory.from_dict(traj)
        else:
            failures.append(CellFailure(cell, error or "unknown error"))
        if progress is not None:
            progress(done, len(todo), cell, traj is not None)

    if jobs <= 1 or len(todo) <= 1:
        _init_worker()
        for cell in todo:
            finish(*_run_cell_safe(settings, cell))
    else:
        with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker) as pool:
            futures = [pool.submit(_run_cell_safe, settings, c) for c in todo]
            for fut in as_completed(futures):
                finish(*fut.result())
    ordered = [results[c] for c in cells if c in results]
    return ordered, failures, reused
