"""Tiny image folders and finished runs shared by the run, export, ensemble and predict tests."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from hubtune.cli import app

COLORS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}


def make_folder(root: Path, per_class: int = 40, size: int = 24, seed: int = 0) -> Path:
    """Class = dominant colour of a noisy image with a random rectangle (learnable, not trivial)."""
    rng = np.random.default_rng(seed)
    for name, rgb in COLORS.items():
        d = root / name
        d.mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 120, size=(size, size, 3)).astype(np.uint8)
            x0, y0 = rng.integers(0, size // 2, size=2)
            img[y0:y0 + size // 2, x0:x0 + size // 2] = np.clip(
                np.array(rgb) + rng.integers(-30, 30, size=3), 0, 255)
            Image.fromarray(img).save(d / f"{i}.png")
    return root


def tiny_run_args(data: Path, out: Path, *extra: str, budget: str = "20") -> list[str]:
    """A tiny real search: one timm test model, random init, 32 px, two epochs."""
    return ["run", str(data), "--out", str(out), "--budget", budget, "--hub", "test",
            "--models", "test_resnet", "--max-epochs", "2", "--image-size", "32",
            "--optimizer", "random", "--no-pretrained", "--threads", "1", "--log", "quiet",
            "--device", "cpu", *extra]


def quicktune_run_args(data: Path, out: Path, budget: str = "30") -> list[str]:
    """A tiny real Quick-Tune search over two test models (3 epochs, 24 px): a journal of predictions."""
    return ["run", str(data), "--out", str(out), "--budget", budget, "--hub", "test",
            "--models", "test_resnet,test_efficientnet", "--max-epochs", "3", "--image-size", "24",
            "--optimizer", "quicktune", "--no-pretrained", "--threads", "1", "--log", "plain"]


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


def copy_of_run(finished: tuple[Path, Path], root: Path) -> tuple[Path, Path]:
    """(data folder, a copy under ``root`` of the run folder in ``finished``): a test may change it."""
    data, out = finished
    copy = root / "run"
    shutil.copytree(out, copy)
    return data, copy
