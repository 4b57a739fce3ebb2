"""``hubtune metadata``: inspect meta-datasets (a sub-app, so later commands can join it)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import typer

from hubtune.metadata import MetadataError, load_metadata
from hubtune.metadata.loader import detect_layout

metadata_app = typer.Typer(
    name="metadata",
    help="Inspect and convert meta-datasets of recorded finetuning runs.",
    no_args_is_help=True,
)


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg="red", err=True)
    return typer.Exit(2)


@metadata_app.command("info")
def info(
    directory: Path = typer.Argument(..., help="Meta-dataset directory (any supported layout)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary instead of text."),
    show_unmapped: int = typer.Option(5, help="Print up to this many unmapped runs with their reason."),
) -> None:
    """Print the datasets, runs, epochs, models and unmapped runs of a meta-dataset."""
    try:
        layout = detect_layout(directory) if directory.is_dir() else "?"
        meta = load_metadata(directory)
    except MetadataError as exc:
        raise _fail(str(exc)) from None
    rows = []
    for name in meta.datasets:
        runs = meta[name]
        mf = runs.meta_features
        rows.append(
            {
                "dataset": name,
                "runs": len(runs),
                "mean_epochs": float(np.mean(runs.lengths)),
                "full_length_runs": int((runs.lengths == meta.max_epochs).sum()),
                "best": runs.best,
                "worst": runs.worst,
                "hours": float(np.nansum(runs.seconds)) / 3600.0,
                "meta_features": None if mf is None else mf.to_dict(),
            }
        )
    models = Counter(c.model for name in meta.datasets for c in meta[name].configs)
    summary = {
        "path": str(directory),
        "layout": layout,
        "datasets": len(meta),
        "runs": meta.n_runs,
        "max_epochs": meta.max_epochs,
        "models": dict(sorted(models.items())),
        "unmapped": len(meta.unmapped),
        "unmapped_examples": [u.to_dict() for u in meta.unmapped[:show_unmapped]],
        "per_dataset": rows,
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(
        f"{directory} ({layout} layout): {len(meta)} datasets, {meta.n_runs} runs, "
        f"up to {meta.max_epochs} epochs, {len(models)} models, {len(meta.unmapped)} unmapped runs"
    )
    typer.echo(f"{'dataset':<24} {'runs':>6} {'mean ep':>8} {'full':>6} {'best':>7} {'worst':>7} {'GPU h':>8}  meta-features")
    for r in rows:
        mf = r["meta_features"]
        mf_text = (
            "missing" if mf is None
            else f"{mf['n_images']} images, {mf['n_classes']} classes, {mf['mean_resolution']:g} px, {mf['channels']} ch"
        )
        typer.echo(
            f"{r['dataset']:<24} {r['runs']:>6} {r['mean_epochs']:>8.1f} {r['full_length_runs']:>6} "
            f"{r['best']:>7.4f} {r['worst']:>7.4f} {r['hours']:>8.1f}  {mf_text}"
        )
    typer.echo("models: " + ", ".join(f"{m} ({n})" for m, n in sorted(models.items())))
    for u in meta.unmapped[:show_unmapped]:
        typer.echo(f"unmapped: {u.dataset or '-'} / {u.run_id}: {u.reason}")
    if len(meta.unmapped) > show_unmapped:
        typer.echo(f"... and {len(meta.unmapped) - show_unmapped} more unmapped runs")


@metadata_app.command("convert")
def convert(
    source: Path = typer.Argument(..., help="Meta-dataset directory (any supported layout)."),
    target: Path = typer.Argument(..., help="Directory to write hubtune's own format into."),
) -> None:
    """Convert a meta-dataset into hubtune's own format (safetensors + JSON)."""
    try:
        meta = load_metadata(source)
        meta.save(target)
    except (MetadataError, OSError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"wrote {meta.n_runs} runs of {len(meta)} datasets to {target}")


def register(app: typer.Typer) -> None:
    """Add the ``metadata`` command group to ``app``."""
    app.add_typer(metadata_app, name="metadata")
