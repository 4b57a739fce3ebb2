"""The settings of a ``hubtune run`` (stored as ``run.json``) and their resolution.

:class:`RunSettings` is the one schema the CLI and the Python API both build
(through :class:`~hubtune.tuner.hubtuner.HubTuner`); ``tuner/options.py`` checks
each option before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hubtune.core.errors import RunError

DEFAULT_CPU_IMAGE_SIZE = 64


@dataclass
class RunSettings:
    """Everything that defines a search run (stored as ``run.json``)."""

    data: str
    budget: float
    models: list[str]
    space: dict[str, Any] | None = None
    max_epochs: int = 10
    seed: int = 0
    device: str = "cpu"
    image_size: int = DEFAULT_CPU_IMAGE_SIZE
    subset: int | None = None
    optimizer: str = "quicktune"
    quota: str = "10GB"
    final_epochs: int = 0
    num_threads: int | None = None
    pretrained: bool = True
    surrogate: str | None = None
    workers: int = 1
    gpus: list[int] | None = None
    gpus_per_trial: float | None = None
    ray_address: str | None = None
    metric: str = "top1"
    max_latency_ms: float | None = None
    max_params: float | None = None
    max_gflops: float | None = None
    latency_batch: int = 32
    ensemble: int = 0

    # Settings that may change when resuming (budget can be extended; more workers added).
    RESUMABLE_CHANGES = ("budget", "quota", "final_epochs", "num_threads", "device",
                         "workers", "gpus", "gpus_per_trial", "ray_address", "ensemble")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSettings:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def resume_settings(fresh: RunSettings, stored_path: Path) -> RunSettings:
    """``fresh`` for a new run; for a run folder whose settings are stored at ``stored_path``
    the stored settings with the resumable ones (``RESUMABLE_CHANGES``) taken from ``fresh``.

    Raises :class:`RunError` naming every other setting that differs.
    """
    if not stored_path.exists():
        return fresh
    stored = RunSettings.from_dict(json.loads(stored_path.read_text()))
    diffs = [
        f"{k}: {getattr(stored, k)!r} (run) vs {getattr(fresh, k)!r} (now)"
        for k in fresh.to_dict()
        if k not in RunSettings.RESUMABLE_CHANGES and getattr(stored, k) != getattr(fresh, k)
    ]
    if diffs:
        raise RunError(
            f"{stored_path.parent} holds a run with other settings ({'; '.join(diffs)}); "
            f"use a new --out, or the same settings to resume it"
        )
    for k in RunSettings.RESUMABLE_CHANGES:
        setattr(stored, k, getattr(fresh, k))
    return stored


def resolve_models(models: Sequence[str] | None, hub: str | None) -> list[str]:
    """Model names from an explicit list or a named hub/pattern (offline by default)."""
    from hubtune.hub import get_descriptor, list_models

    if models is not None:
        names = list(dict.fromkeys(models))
        for n in names:
            get_descriptor(n)  # raises HubError naming close matches
        return names
    names = list_models(hub or "offline")
    if not names:
        raise RunError(f"hub {hub!r} has no models available here")
    return names


def _check_parallel(
    workers: int, gpus: str | Sequence[int] | None, gpus_per_trial: float | None,
    ray_address: str | None, device: str,
) -> list[int] | None:
    """Validate the parallel-run options; returns the GPU indices (or None)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise RunError(f"--workers must be a whole number >= 1, got {workers!r}")
    gpu_list = None
    if gpus is not None:
        from hubtune.search.raypool import parse_gpus

        gpu_list = parse_gpus(gpus)
    if gpus_per_trial is not None and not 0 < gpus_per_trial <= 1:
        raise RunError(f"--gpus-per-trial must be in (0, 1] (a worker trains on one GPU), "
                       f"got {gpus_per_trial}")
    if workers == 1:
        used = [name for name, v in (("--gpus", gpu_list), ("--gpus-per-trial", gpus_per_trial),
                                     ("--ray-address", ray_address)) if v]
        if used:
            raise RunError(f"{', '.join(used)} apply to Ray workers: add --workers 2 or more "
                           f"(one worker runs in this process; pick its GPU with --device cuda:N)")
        return None
    if (gpu_list or gpus_per_trial) and not device.startswith("cuda"):
        raise RunError("--gpus / --gpus-per-trial train on GPUs: add --device cuda")
    if device.startswith("cuda:"):
        raise RunError(f"with --workers use --device cuda, not {device}: Ray gives each worker "
                       f"its GPU (choose which with --gpus)")
    if gpu_list and ray_address:
        raise RunError("--gpus picks GPUs of this machine; on a cluster (--ray-address) Ray "
                       "assigns GPUs: use --gpus-per-trial")
    return gpu_list
