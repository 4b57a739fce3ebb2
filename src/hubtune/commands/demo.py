"""``hubtune demo``: pretrained vs from-scratch finetuning on a small real dataset.

Finetunes the offline ImageNet-pretrained MobileNetV2 on a Fashion-MNIST
subset for a few epochs, then trains the same architecture from random
weights with the same budget and configuration, prints both per-epoch tables
and one line comparing their test accuracy. A few minutes on 2 CPU cores.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer
from rich.console import Console

DEMO_MODEL = "mobilenetv2_100"
DEMO_DATA = "fashion-mnist"
DEMO_CONFIG = {"opt": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 32, "sched": "cosine"}


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to ``app``."""

    @app.command("demo")
    def demo(
        data: str = typer.Option(DEMO_DATA, "--data", help="Dataset to finetune on."),
        model: str = typer.Option(DEMO_MODEL, "--model", help="Hub model (needs offline pretrained weights)."),
        subset: int = typer.Option(1000, "--subset", help="Training images."),
        image_size: int = typer.Option(64, "--image-size", help="Image side in pixels."),
        epochs: int = typer.Option(3, "--epochs", help="Epochs for each of the two runs."),
        seed: int = typer.Option(0, "--seed", help="Seed (same for both runs)."),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
        threads: int = typer.Option(
            1, "--threads",
            help="torch CPU threads (1 by default: small 64 px convolutions gain little from "
            "more, and lose much when other processes share the cores).",
        ),
        out: Path | None = typer.Option(None, "--out", help="Keep the two trial directories here."),
    ) -> None:
        """Finetune pretrained MobileNetV2 vs the same model from scratch; compare test accuracy."""
        import json

        from hubtune.commands.finetune import fail, run_finetune
        from hubtune.finetune import CheckpointError

        console = Console()
        tmp = None
        if out is None:
            tmp = tempfile.TemporaryDirectory(prefix="hubtune-demo-")
            out = Path(tmp.name)
        out.mkdir(parents=True, exist_ok=True)
        config_path = out / "demo-config.json"
        config_path.write_text(json.dumps(DEMO_CONFIG))
        results = {}
        try:
            for label, pretrained in (("pretrained", True), ("from scratch", False)):
                console.rule(f"{model} {label}")
                results[label] = run_finetune(
                    data, model=model, config_path=config_path, epochs=epochs, max_epochs=epochs,
                    image_size=image_size, subset=subset, seed=seed,
                    out=out / ("pretrained" if pretrained else "scratch"), resume_from=None,
                    device=device, pretrained=pretrained, threads=threads, console=console,
                )
        except (ValueError, CheckpointError, OSError) as exc:
            raise fail(str(exc)) from None
        finally:
            if tmp is not None:
                tmp.cleanup()
        pre, scratch = results["pretrained"], results["from scratch"]
        if pre["test"] is None or scratch["test"] is None:
            raise fail("a demo run did not finish; see the messages above")
        a, b = 100 * pre["test"]["top1"], 100 * scratch["test"]["top1"]
        secs = pre["seconds"] + scratch["seconds"]
        console.print(
            f"[bold]test top-1 after {epochs} epoch{'s' if epochs != 1 else ''}: pretrained {a:.2f}% vs from scratch "
            f"{b:.2f}% ({a - b:+.2f} points; {secs:.0f}s of training in total)[/bold]"
        )
