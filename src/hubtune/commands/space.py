"""``hubtune space``: show or sample the search space."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``space`` command to ``app``."""

    @app.command("space")
    def space(
        models: str = typer.Option(..., help="Comma-separated hub model names."),
        space_file: Path | None = typer.Option(None, "--space", help="Search-space JSON file."),
        sample: int = typer.Option(0, help="Print this many sampled configs as JSON lines."),
        seed: int = typer.Option(0, help="Sampling seed."),
        max_epochs: int | None = typer.Option(
            None, "--max-epochs", min=1,
            help="Scale the warm-up/decay/patience epochs to this schedule length, as `hubtune run"
                 " --max-epochs` does (default: the meta-dataset's 50-epoch grid)."),
    ) -> None:
        """Print the (restricted) search space, or sample configurations from it."""
        from hubtune.space import ConfigError, SearchSpace

        names = [m for m in models.split(",") if m]
        try:
            sp = SearchSpace.from_file(space_file, models=names, schedule_epochs=max_epochs) if space_file \
                else SearchSpace(names, schedule_epochs=max_epochs)
        except ConfigError as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(2) from None
        if sample:
            for cfg in sp.sample(sample, seed=seed):
                typer.echo(cfg.to_json())
        else:
            typer.echo(json.dumps(sp.to_dict(), indent=2))
