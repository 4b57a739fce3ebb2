"""``hubtune export``: a run's exported model as ONNX or TorchScript."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add ``export`` to ``app``."""

    @app.command("export")
    def export(
        run_dir: Path = typer.Argument(..., help="A run folder (uses its best/) or a best/ folder."),
        fmt: str = typer.Option(..., "--format", help="onnx (needs pip install onnx onnxruntime, "
                                "or hubtune[export]) or torchscript."),
        out: Path | None = typer.Option(None, "--out", help="Output file (default: "
                                        "best/model.onnx or best/model.torchscript.pt)."),
    ) -> None:
        """Convert the exported model to ONNX or TorchScript (input: normalised images, output: logits)."""
        from hubtune.tuner.formats import ExportError, check_format, export_model

        best = run_dir / "best" if (run_dir / "best").is_dir() else run_dir
        try:
            check_format(fmt)
            path = export_model(best, fmt, out)
        except ExportError as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(2) from None
        typer.echo(str(path))
