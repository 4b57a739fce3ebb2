"""``hubtune metatrain``: meta-train the Quick-Tune surrogate on meta-datasets of learning curves."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def _describe(name: str):
    """Hub descriptor of ``name``, or ``None`` when the hub does not know it."""
    try:
        from hubtune.hub import get_descriptor  # type: ignore[attr-defined]

        return get_descriptor(name)
    except Exception:
        return None


def register(app: typer.Typer) -> None:
    """Add the ``metatrain`` command to ``app``."""

    @app.command("metatrain")
    def metatrain_cmd(
        metadata: list[Path] = typer.Option(..., "--metadata", help="Meta-dataset directory (repeatable)."),
        out: Path = typer.Option(..., "--out", help="Directory to write surrogate.safetensors + surrogate.json."),
        exclude_datasets: str = typer.Option("", "--exclude-datasets", help="Comma-separated datasets to leave out."),
        seed: int = typer.Option(0, help="Meta-training seed."),
        steps: int = typer.Option(1200, help="Meta-training steps (episodes)."),
        model_encoding: str = typer.Option("descriptor", help="'descriptor' (hub features) or 'onehot'."),
    ) -> None:
        """Meta-train the performance surrogate and cost model; save them as safetensors + JSON."""
        from hubtune.metadata import MetadataError, load_metadata
        from hubtune.surrogate.metatrain import MetaTrainError, MetaTrainSettings, metatrain

        try:
            loaded = [load_metadata(p) for p in metadata]
        except (MetadataError, OSError) as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(2) from None
        from hubtune.metadata import MetaDataset

        try:
            md = loaded[0] if len(loaded) == 1 else MetaDataset.merge(*loaded)
        except (MetadataError, ValueError) as exc:
            typer.secho(f"error: cannot combine the meta-datasets: {exc}", fg="red", err=True)
            raise typer.Exit(2) from None
        excluded = [d for d in exclude_datasets.split(",") if d]
        unknown = [d for d in excluded if d not in md.datasets]
        if unknown:
            typer.secho(f"error: --exclude-datasets names unknown dataset(s): {', '.join(unknown)}",
                        fg="red", err=True)
            raise typer.Exit(2)
        if excluded:
            md = md.without(excluded)
        if model_encoding not in ("descriptor", "onehot"):
            typer.secho("error: --model-encoding must be 'descriptor' or 'onehot'", fg="red", err=True)
            raise typer.Exit(2)
        settings = MetaTrainSettings(steps=steps, model_encoding=model_encoding)
        try:
            sur = metatrain(md, _describe, seed=seed, settings=settings, log=typer.echo)
        except MetaTrainError as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(2) from None
        sur.record["command"] = (
            "hubtune metatrain "
            + " ".join(f"--metadata {p}" for p in metadata)
            + f" --out {out} --seed {seed} --steps {steps} --model-encoding {model_encoding}"
            + (f" --exclude-datasets {','.join(excluded)}" if excluded else "")
        )
        sur.record["unknown_models"] = [m for m in sur.record.get("models", []) if _describe(m) is None]
        sur.save(out)
        typer.echo(json.dumps({"out": str(out), "datasets": len(md.datasets),
                               "best_step": sur.record["best_step"],
                               "seconds": sur.record["seconds"]}))

