"""``hubtune finetune``: finetune one hub model with one configuration.

Trains to ``--epochs`` (schedules defined over ``--max-epochs``), printing a
per-epoch table, and leaves a trial directory (checkpoint + records.jsonl +
run.json) that ``--resume-from`` continues later.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from hubtune.core.records import EpochRecord

RUN_FILE = "run.json"
"""What the CLI needs to rebuild a trial's data and settings on --resume-from."""


class CommandError(ValueError):
    """Bad command-line input; printed as one line, exit status 2."""


def epoch_table(title: str, records: list[EpochRecord]) -> Table:
    """A rich table of per-epoch records (accuracies in %, times in seconds)."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    cols = ["epoch", "top-1", "top-5", "loss", "val loss", "lr", "train s", "eval s", "ckpt s"]
    notes = any(r.note for r in records)
    for col in cols + (["note"] if notes else []):
        table.add_column(col, justify="left" if col == "note" else "right")
    for r in records:
        row = [
            str(r.epoch),
            f"{100 * r.score:.2f}",
            "-" if r.top5 is None else f"{100 * r.top5:.2f}",
            "-" if r.train_loss is None else f"{r.train_loss:.3f}",
            "-" if r.val_loss is None else f"{r.val_loss:.3f}",
            "-" if r.lr is None else f"{r.lr:.1e}",
            f"{r.train_seconds:.1f}",
            f"{r.eval_seconds:.1f}",
            f"{r.checkpoint_seconds:.2f}",
        ]
        table.add_row(*row, *([r.note or ""] if notes else []))
    return table


def print_row_printer(console: Console) -> Callable[[EpochRecord], None]:
    """A callback printing one line per finished epoch (live progress)."""

    def show(r: EpochRecord) -> None:
        console.print(
            f"  epoch {r.epoch}: val top-1 {100 * r.score:.2f}%  train loss "
            f"{r.train_loss:.4f}  ({r.train_seconds:.1f}s train, {r.eval_seconds:.1f}s eval)"
        )

    return show


def fail(message: str) -> typer.Exit:
    """Print a one-line error and return the exit (status 2) to raise."""
    typer.secho(f"error: {message}", fg="red", err=True)
    return typer.Exit(2)


def load_config(model: str | None, config_path: Path | None) -> Any:
    """The Config from ``--config`` and/or ``--model`` (they must agree)."""
    from hubtune.space import Config

    data: dict[str, Any] = {}
    if config_path is not None:
        try:
            text = Path(config_path).read_text()
        except OSError as exc:
            raise CommandError(f"cannot read config file {config_path}: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(f"config file {config_path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise CommandError(f"config file {config_path} must hold a JSON object")
    if model:
        if data.get("model") not in (None, model):
            raise CommandError(
                f"--model {model} disagrees with model {data['model']!r} in {config_path}"
            )
        data["model"] = model
    if "model" not in data:
        raise CommandError("name a model with --model (or in the --config file)")
    return Config.from_dict(data)


def _default_image_size(model: str) -> int:
    from hubtune.hub import get_descriptor

    return int(get_descriptor(model).input_size)


def run_finetune(
    data_source: str,
    *,
    model: str | None,
    config_path: Path | None,
    epochs: int,
    max_epochs: int | None,
    image_size: int | None,
    subset: int | None,
    seed: int,
    out: Path | None,
    resume_from: Path | None,
    device: str,
    pretrained: bool,
    threads: int | None,
    console: Console,
) -> dict[str, Any]:
    """Shared body of ``finetune`` (and ``demo``); returns a summary dict."""
    from hubtune.data import load_dataset
    from hubtune.finetune import advance, read_records
    from hubtune.finetune.engine import evaluate_checkpoint

    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise CommandError(f"--device must be cpu or cuda, got {device!r}")
    if epochs < 1:
        raise CommandError(f"--epochs must be >= 1, got {epochs}")
    plan = _plan(data_source, model, config_path, epochs, max_epochs, image_size, subset, seed,
                 out, resume_from, pretrained)
    config, workdir, pretrained = plan.config, plan.workdir, plan.pretrained
    if epochs > plan.max_epochs:
        raise CommandError(f"--epochs {epochs} exceeds --max-epochs {plan.max_epochs}")

    _check_cuda(device)
    ds = load_dataset(plan.data, image_size=int(plan.image_size), subset=plan.subset, seed=plan.seed)
    console.print(f"[bold]{ds.summary()}[/bold]")
    console.print(f"model {config.model} ({'pretrained' if pretrained else 'random init'}), "
                  f"training to epoch {epochs} of {plan.max_epochs} on {device}, trial dir {workdir}")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / RUN_FILE).write_text(plan.run_file())
    t0 = time.perf_counter()
    result = advance(
        config, epochs, data=ds, workdir=workdir, max_epochs=plan.max_epochs, seed=plan.seed,
        device=device, num_threads=threads, pretrained=pretrained,
        on_epoch=print_row_printer(console),
    )
    summary = _summary(result, read_records(workdir), workdir, time.perf_counter() - t0)
    console.print(epoch_table(f"{config.model} — {'pretrained' if pretrained else 'from scratch'} "
                              f"(accuracy in %)", summary["records"]))
    if result.status != "ok":
        console.print(f"[red]trial {result.status}: {result.reason}[/red]")
    elif ds.test is not None and len(ds.test):
        summary["test"] = t = evaluate_checkpoint(workdir, ds, split="test", device=device)
        console.print(f"test top-1 {100 * t['top1']:.2f}%  top-5 {100 * t['top5']:.2f}%  loss {t['loss']:.4f}")
    return summary


@dataclass
class _Plan:
    """The trial ``finetune`` trains: its config, folder, data and training settings."""

    config: Any
    workdir: Path
    data: str
    image_size: int
    subset: int | None
    seed: int
    pretrained: bool
    max_epochs: int

    def run_file(self) -> str:
        """The trial folder's ``run.json`` (what ``--resume-from`` reads back)."""
        return json.dumps({
            "data": self.data, "image_size": int(self.image_size), "subset": self.subset,
            "seed": self.seed, "pretrained": self.pretrained, "max_epochs": self.max_epochs,
            "config": self.config.to_dict(),
        }, indent=1)


def _plan(data_source: str, model: str | None, config_path: Path | None, epochs: int,
          max_epochs: int | None, image_size: int | None, subset: int | None, seed: int,
          out: Path | None, resume_from: Path | None, pretrained: bool) -> _Plan:
    """With ``--resume-from`` the stored trial's settings, else those of the options."""
    if resume_from is not None:
        config, stored = _resumed_trial(Path(resume_from), model, max_epochs)
        return _Plan(config, Path(resume_from), stored["data"], stored["image_size"],
                     stored["subset"], stored["seed"], stored["pretrained"], stored["max_epochs"])
    config = load_config(model, config_path)
    workdir = Path(out) if out is not None else Path("hubtune-runs") / f"{config.model}-{config.key()}"
    return _Plan(config, workdir, data_source,
                 _default_image_size(config.model) if image_size is None else image_size,
                 subset, seed, pretrained, epochs if max_epochs is None else max_epochs)


def _check_cuda(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise CommandError("--device cuda asked for, but no CUDA GPU is available")


def _summary(result: Any, records: list[Any], workdir: Path, seconds: float) -> dict[str, Any]:
    return {"status": result.status, "reason": result.reason, "epoch": result.epoch,
            "records": records, "workdir": str(workdir), "seconds": seconds, "test": None}


def _resumed_trial(workdir: Path, model: str | None,
                   max_epochs: int | None) -> tuple[Any, dict[str, Any]]:
    """The config and stored settings of the trial folder ``workdir`` (``--resume-from``);
    ``--model`` and ``--max-epochs`` must agree with them."""
    from hubtune.space import Config

    run_path = workdir / RUN_FILE
    if not run_path.exists():
        raise CommandError(f"{workdir} is not a hubtune finetune directory (no {RUN_FILE})")
    run = json.loads(run_path.read_text())
    config = Config.from_dict(run["config"])
    if model and model != config.model:
        raise CommandError(f"--model {model} disagrees with {config.model!r} in {workdir}")
    if max_epochs is not None and max_epochs != run["max_epochs"]:
        raise CommandError(
            f"--max-epochs {max_epochs} differs from the trial's {run['max_epochs']}: "
            f"schedules are defined over max_epochs, so it cannot change"
        )
    return config, run


def register(app: typer.Typer) -> None:
    """Add the ``finetune`` command to ``app``."""

    @app.command("finetune")
    def finetune(
        data: str = typer.Argument(..., help="Dataset: a folder, or fashion-mnist / animal-mnist / digits[:N]."),
        model: str | None = typer.Option(None, "--model", help="Hub model name (timm name)."),
        config: Path | None = typer.Option(None, "--config", help="Config JSON (hyperparameters)."),
        epochs: int = typer.Option(3, "--epochs", help="Train until this epoch."),
        max_epochs: int | None = typer.Option(None, "--max-epochs", help="Epochs schedules are defined over (default: --epochs)."),
        image_size: int | None = typer.Option(None, "--image-size", help="Image side in pixels (default: the model's)."),
        subset: int | None = typer.Option(None, "--subset", help="Use this many training images."),
        seed: int = typer.Option(0, "--seed", help="Seed of data split, init, order and augmentation."),
        out: Path | None = typer.Option(None, "--out", help="Trial directory to write."),
        resume_from: Path | None = typer.Option(None, "--resume-from", help="Continue the trial in this directory."),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
        no_pretrained: bool = typer.Option(False, "--no-pretrained", help="Start from random weights."),
        threads: int | None = typer.Option(None, "--threads", help="torch CPU threads."),
    ) -> None:
        """Finetune one model with one configuration, printing per-epoch metrics."""
        from hubtune.finetune import CheckpointError

        try:
            summary = run_finetune(
                data, model=model, config_path=config, epochs=epochs, max_epochs=max_epochs,
                image_size=image_size, subset=subset, seed=seed, out=out, resume_from=resume_from,
                device=device, pretrained=not no_pretrained, threads=threads, console=Console(),
            )
        except (ValueError, CheckpointError, OSError) as exc:
            raise fail(str(exc)) from None
        if summary["status"] != "ok":
            raise typer.Exit(1)
