"""``hubtune push``: upload a run's exported model to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add ``push`` to ``app``."""

    @app.command("push")
    def push_command(
        run_dir: Path = typer.Argument(..., help="A run folder (uploads its best/) or a best/ folder."),
        repo: str = typer.Argument(..., help="Hub repository OWNER/NAME (created if missing)."),
        private: bool = typer.Option(False, "--private", help="Create the repository private."),
        revision: str | None = typer.Option(None, "--revision", help="Branch to commit to "
                                            "(default: main)."),
        message: str | None = typer.Option(None, "--message", help="Commit message."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Check everything and list what "
                                     "would be uploaded; send nothing."),
    ) -> None:
        """Upload best/ to the Hugging Face Hub (safetensors, timm config.json, model card, ensemble).

        Authentication is huggingface_hub's own: HF_TOKEN or `huggingface-cli login`.
        Pickle-based files (*.pt, *.pth, *.bin, *.pkl) are never uploaded. See docs/export.md.
        """
        from hubtune.tuner.push import PushError, plan_push, push

        try:
            if dry_run:
                plan = plan_push(run_dir, repo)
                typer.echo(f"would upload {len(plan.files)} files of {plan.best} to {repo}:")
                for f in plan.files:
                    typer.echo(f"  {f}")
                for f in plan.skipped:
                    typer.echo(f"  (not uploaded: {f})")
                return
            url = push(run_dir, repo, private=private, revision=revision, commit_message=message)
        except PushError as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(2 if "failed:" not in str(exc) else 1) from None
        typer.echo(url)
