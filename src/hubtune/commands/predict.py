"""``hubtune predict``: classify image files and folders with a run's exported model.

Exit codes: 0 every input classified; 1 some inputs unreadable (listed on
stderr, the others still printed); 2 bad usage or no usable model.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import typer

FORMATS = ("table", "json", "csv")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(2)


def _table_line(p: Any) -> str:
    extra = ", ".join(f"{lbl} {prob:.3f}" for lbl, prob in p.top[1:])
    return f"{p.path}\t{p.label}\t{p.probability:.3f}" + (f"\t({extra})" if extra else "")


def _csv_header(top: int) -> list[str]:
    cols = ["path", "label", "probability"]
    for i in range(2, top + 1):
        cols += [f"label_{i}", f"probability_{i}"]
    return cols


def _csv_row(p: Any) -> list[str]:
    row = [p.path, p.label, f"{p.probability:.6f}"]
    for lbl, prob in p.top[1:]:
        row += [lbl, f"{prob:.6f}"]
    return row


def _as_json(p: Any) -> dict[str, Any]:
    return {"path": p.path, "label": p.label, "probability": p.probability,
            "top": [{"label": lbl, "probability": prob} for lbl, prob in p.top]}


def _best_dir(run_dir: Path) -> Path:
    return run_dir / "best" if (run_dir / "best").is_dir() else run_dir


def register(app: typer.Typer) -> None:
    """Add ``predict`` to ``app``."""
    app.command("predict")(predict_command)


def predict_command(
    run_dir: Path = typer.Argument(..., help="A run folder (uses its best/) or a best/ folder."),
    paths: list[Path] = typer.Argument(..., help="Image files and/or folders (searched "
                                       "recursively for image files, in sorted order)."),
    top: int = typer.Option(1, help="Show the K most likely classes (1 to the number "
                            "of classes)."),
    batch_size: int = typer.Option(64, help="Images per forward pass (bounds memory)."),
    output_format: str = typer.Option("table", "--format", help="table (tab-separated), "
                                      "json (a list of {path, label, probability, top}) "
                                      "or csv."),
    device: str = typer.Option("auto", help="auto (cuda, else mps, else cpu), cpu, cuda "
                               "or mps."),
    single: bool = typer.Option(False, "--single", help="Use the single best model even "
                                "when best/ holds an ensemble (hubtune run --ensemble K)."),
) -> None:
    """Classify images with a run's exported model.

    Exit code 0: all inputs classified; 1: some inputs unreadable (listed on
    stderr, the rest still printed); 2: bad usage or no usable model.
    """
    if output_format not in FORMATS:
        _fail(f"--format must be table, json or csv, got {output_format!r}")
    if batch_size < 1:
        _fail(f"--batch-size must be >= 1, got {batch_size}")
    predictor = _load_predictor(run_dir, device, single, top)
    from hubtune.tuner.predict import collect_images

    files, bad = collect_images(paths)
    if not files and not bad:
        _fail(f"no image files in {', '.join(map(str, paths))}")
    total = len(files) + len(bad)
    bad += _print_predictions(predictor, files, top, batch_size, output_format)
    for u in bad:
        typer.secho(f"error: cannot read {u.path}: {u.reason}", fg="red", err=True)
    if bad:
        typer.secho(f"{len(bad)} of {total} inputs unreadable", fg="red", err=True)
        raise typer.Exit(1)


def _load_predictor(run_dir: Path, device: str, single: bool, top: int) -> Any:
    """The exported model of ``run_dir`` on ``device`` (one-line errors for a bad one)."""
    from hubtune.core.errors import RunError
    from hubtune.hub import HubError
    from hubtune.tuner.device import resolve_device
    from hubtune.tuner.export import ExportError, Predictor
    from hubtune.tuner.predict import check_top_k

    try:
        resolved = resolve_device(device)
        predictor = Predictor(_best_dir(run_dir), device=resolved, single=single)
        check_top_k(top, len(predictor.labels))
    except (ExportError, HubError, RunError, ValueError) as exc:
        _fail(str(exc))
    return predictor


def _print_predictions(predictor: Any, files: list[Path], top: int, batch_size: int,
                       output_format: str) -> list[Any]:
    """Print each prediction as it comes (a table line, a CSV row, or one JSON list at the
    end); returns the inputs that could not be read."""
    from hubtune.tuner.predict import Unreadable, predict_stream

    bad: list[Any] = []
    as_json: list[dict[str, Any]] = []
    writer = csv.writer(sys.stdout, lineterminator="\n") if output_format == "csv" else None
    if writer is not None:
        writer.writerow(_csv_header(top))
    for item in predict_stream(predictor, files, batch_size=batch_size, top_k=top):
        if isinstance(item, Unreadable):
            bad.append(item)
        elif output_format == "json":
            as_json.append(_as_json(item))
        elif writer is not None:
            writer.writerow(_csv_row(item))
        else:
            typer.echo(_table_line(item))
    if output_format == "json":
        typer.echo(json.dumps(as_json, indent=2))
    sys.stdout.flush()
    return bad
