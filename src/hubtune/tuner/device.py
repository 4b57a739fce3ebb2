"""``--device auto|cpu|cuda|mps``: resolve and check the torch device a run or prediction uses."""

from __future__ import annotations

import re

from hubtune.core.errors import RunError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
_CUDA_INDEX = re.compile(r"^cuda:\d+$")


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: str, *, check_available: bool = True) -> str:
    """The concrete device for ``device``: ``auto`` becomes ``cuda`` if a CUDA GPU is
    available, else ``mps`` if Apple's Metal backend is, else ``cpu``.

    ``cuda:N`` is accepted too. Raises :class:`RunError` (one line) for an unknown
    name or, with ``check_available``, a device this machine does not have.
    """
    import torch

    name = str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if _mps_available() else "cpu"
    if name not in DEVICE_CHOICES and not _CUDA_INDEX.match(name):
        raise RunError(f"--device must be auto, cpu, cuda (or cuda:N) or mps, got {device!r}")
    if check_available and name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RunError(f"--device {name} was asked for, but no CUDA GPU is available")
        if ":" in name and int(name.split(":")[1]) >= torch.cuda.device_count():
            raise RunError(f"--device {name} was asked for, but this machine has "
                           f"{torch.cuda.device_count()} CUDA GPU(s)")
    if check_available and name == "mps" and not _mps_available():
        raise RunError("--device mps was asked for, but the MPS (Apple GPU) backend is not "
                       "available")
    return name
