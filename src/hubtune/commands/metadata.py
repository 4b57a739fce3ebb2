"""``hubtune metadata``: inspect meta-datasets (a sub-app, so later commands can join it)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import typer

import hubtune.metagen.runfolder  # noqa: F401  (lets load_metadata read 'hubtune run' folders)
from hubtune.metadata import MetadataError, load_metadata, save_metadata
from hubtune.metadata.loader import detect_layout

metadata_app = typer.Typer(
    name="metadata",
    help="Inspect, convert and generate meta-datasets of recorded finetuning runs.",
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
    summary = _info_summary(meta, directory, layout, show_unmapped)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    _print_info(meta, summary, show_unmapped)


def _info_summary(meta: Any, directory: Path, layout: str, show_unmapped: int) -> dict[str, Any]:
    """``hubtune metadata info --json``'s document: totals, models, unmapped runs, per dataset."""
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
    return {
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


def _print_info(meta: Any, summary: dict[str, Any], show_unmapped: int) -> None:
    """The text form of :func:`_info_summary`: a header line, a table, models and unmapped runs."""
    models = summary["models"]
    typer.echo(
        f"{summary['path']} ({summary['layout']} layout): {len(meta)} datasets, {meta.n_runs} runs, "
        f"up to {meta.max_epochs} epochs, {len(models)} models, {len(meta.unmapped)} unmapped runs"
    )
    typer.echo(f"{'dataset':<24} {'runs':>6} {'mean ep':>8} {'full':>6} {'best':>7} {'worst':>7} {'GPU h':>8}  meta-features")
    for r in summary["per_dataset"]:
        mf = r["meta_features"]
        mf_text = (
            "missing" if mf is None
            else f"{mf['n_images']} images, {mf['n_classes']} classes, {mf['mean_resolution']:g} px, {mf['channels']} ch"
        )
        typer.echo(
            f"{r['dataset']:<24} {r['runs']:>6} {r['mean_epochs']:>8.1f} {r['full_length_runs']:>6} "
            f"{r['best']:>7.4f} {r['worst']:>7.4f} {r['hours']:>8.1f}  {mf_text}"
        )
    typer.echo("models: " + ", ".join(f"{m} ({n})" for m, n in models.items()))
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
        save_metadata(meta, target)
    except (MetadataError, OSError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"wrote {meta.n_runs} runs of {len(meta)} datasets to {target}")


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise _fail(f"{what} file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise _fail(f"{what} file {path} is not valid JSON: {exc}") from None


# Long by design: most of the signature is the command's option declarations (typer reads them).
@metadata_app.command("generate")
def generate(
    datasets: str = typer.Option(..., "--datasets", help="Comma-separated built-in names "
                                 "(fashion-mnist, animal-mnist, digits; ':K' for a K-image subset, "
                                 "'@S' for another split seed) or ImageFolder paths."),
    out: Path = typer.Option(..., "--out", help="Output folder (the meta-dataset; resumed when it exists)."),
    configs: int = typer.Option(16, "--configs", help="Configurations per dataset, the models' "
                                "default configs (portfolio) included."),
    max_epochs: int = typer.Option(4, "--max-epochs", help="Epochs every run trains (schedules span them)."),
    hub: str = typer.Option("offline", help="Model hub when --models is not given: offline, quicktune, "
                            "test, or a timm name pattern."),
    models: str | None = typer.Option(None, help="Comma-separated hub model names."),
    space: Path | None = typer.Option(None, help="Search-space JSON (fixed values, choices)."),
    add_configs: Path | None = typer.Option(None, "--add-configs", help="JSON list of extra configs "
                                            "trained on every dataset (counted in --configs)."),
    portfolio: bool = typer.Option(True, help="Include each model's default config."),
    image_size: int = typer.Option(32, help="Training resolution."),
    subset: int | None = typer.Option(None, help="Training-subset size for datasets without ':K'."),
    seed: int = typer.Option(0, help="Seed of the design, the data splits and every run."),
    workers: int = typer.Option(1, help="Concurrent runs; more than 1 runs them as Ray tasks."),
    ray_address: str | None = typer.Option(None, help="Join this Ray cluster (auto or HOST:PORT) "
                                           "instead of starting a local one."),
    threads: int = typer.Option(1, help="torch CPU threads per run."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    pretrained: bool = typer.Option(True, help="Start from pretrained weights (--no-pretrained: "
                                    "random init, e.g. timm test models)."),
    retry_failed: bool = typer.Option(False, help="Redo runs recorded as failed or diverged."),
    keep_checkpoints: bool = typer.Option(False, help="Keep each finished run's last checkpoint."),
) -> None:
    """Finetune sampled configurations on datasets and record every epoch as a meta-dataset."""
    from hubtune.data import DataError
    from hubtune.hub import HubError
    from hubtune.metagen.design import DesignError
    from hubtune.metagen.generate import (
        GenerateError,
        GenerateSettings,
        MetadataGenerator,
        parse_datasets,
    )
    from hubtune.space import ConfigError
    from hubtune.tuner.hubtuner import RunError, resolve_models

    space_dict = _read_json(space, "search-space") if space is not None else None
    extra = _read_json(add_configs, "--add-configs") if add_configs is not None else []
    if not isinstance(extra, list) or not all(isinstance(c, dict) for c in extra):
        raise _fail(f"--add-configs {add_configs} must hold a JSON list of config objects")
    if threads < 1:
        raise _fail(f"--threads must be >= 1, got {threads}")
    try:
        names = resolve_models([m for m in models.split(",") if m] if models else None, hub)
        specs = parse_datasets(datasets, seed=seed, subset=subset)
        settings = GenerateSettings(
            models=names, max_epochs=max_epochs, image_size=image_size, seed=seed, space=space_dict,
            portfolio=portfolio, extra_configs=extra, pretrained=pretrained, device=device,
            num_threads=threads, keep_checkpoints=keep_checkpoints,
        )
        gen = MetadataGenerator(settings, out, workers=workers, ray_address=ray_address,
                                retry_failed=retry_failed, log=typer.echo)
        summary = gen.run(specs, configs)
    except (GenerateError, DesignError, DataError, HubError, ConfigError, RunError, MetadataError) as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        typer.secho(f"interrupted; run the same command again to resume into {out}", fg="yellow", err=True)
        raise typer.Exit(130) from None
    typer.echo(summary.table())
    typer.echo(f"meta-dataset: {out} ({summary.finished} of {summary.planned} runs recorded; "
               f"'hubtune metadata info {out}')")


def register(app: typer.Typer) -> None:
    """Add the ``metadata`` command group to ``app``."""
    app.add_typer(metadata_app, name="metadata")
