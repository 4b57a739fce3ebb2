"""Tiny finished runs shared by the export, ensemble and predict test modules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from hubtune.cli import app
from test_run_e2e import make_folder


def one_model_defaults_args(data: Path, out: Path) -> list[str]:
    """One test model's default config for one epoch at 24 px: the quickest run that exports."""
    return ["run", str(data), "--out", str(out), "--budget", "120", "--hub", "test",
            "--models", "test_resnet", "--max-epochs", "1", "--image-size", "24",
            "--optimizer", "defaults", "--no-pretrained", "--threads", "1", "--log", "plain"]


def finished_run(root: Path, args_for: Callable[[Path, Path], list[str]], per_class: int,
                 size: int) -> tuple[Path, Path]:
    """(data folder, run folder) of a finished ``hubtune run`` made under ``root``."""
    data = make_folder(root / "data", per_class=per_class, size=size)
    out = root / "run"
    res = CliRunner().invoke(app, args_for(data, out))
    assert res.exit_code == 0, res.output
    return data, out
