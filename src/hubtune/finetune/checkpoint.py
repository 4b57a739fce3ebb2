"""Atomic trial checkpoints: one safetensors file of tensors plus one JSON file.

Layout of a trial directory::

    checkpoint.json                  # the commit point: state + name of the tensor file
    tensors-<epoch>-<token>.safetensors
    records.jsonl                    # one EpochRecord per line (maintained by the engine)

Saving writes the tensors under a *new* file name (temp file, fsync,
``os.replace``), then writes ``checkpoint.json`` the same way; only that last
``os.replace`` makes the new checkpoint current, and the previous tensor file
is deleted after it. A crash at any point therefore leaves either the old or
the new checkpoint complete and usable. Loading never executes code (no
pickle): tensors come from safetensors, everything else from JSON.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

CHECKPOINT_JSON = "checkpoint.json"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing pieces or was written by an incompatible version."""


def _fsync_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _writable(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, storage-unshared copies as safetensors requires."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, t in tensors.items():
        t = t.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr() if t.numel() else -1
        if ptr in seen:
            t = t.clone()
        elif ptr != -1:
            seen.add(ptr)
        out[k] = t
    return out


def save_checkpoint(workdir: Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> float:
    """Atomically make (``tensors``, ``state``) the current checkpoint of ``workdir``.

    Returns the seconds it took. ``state`` must be JSON-serialisable.
    """
    start = time.perf_counter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    name = f"tensors-{int(state.get('epoch', 0)):04d}-{uuid.uuid4().hex[:8]}.safetensors"
    data = _writable(tensors)
    _fsync_write(workdir / name, lambda p: save_file(data, str(p)))
    payload = dict(state, format_version=FORMAT_VERSION, tensors=name)
    text = json.dumps(payload, indent=1, sort_keys=True)
    _fsync_write(workdir / CHECKPOINT_JSON, lambda p: p.write_text(text))
    _remove_stale(workdir, keep=name)
    return time.perf_counter() - start


def _remove_stale(workdir: Path, keep: str) -> None:
    """Delete tensor files other than ``keep`` and leftover temp files."""
    for p in workdir.glob("tensors-*.safetensors*"):
        if p.name != keep:
            p.unlink(missing_ok=True)
    for p in workdir.glob("*.tmp"):
        p.unlink(missing_ok=True)


def has_checkpoint(workdir: Path) -> bool:
    """Whether ``workdir`` holds a committed checkpoint."""
    return (Path(workdir) / CHECKPOINT_JSON).exists()


def read_state(workdir: Path) -> dict[str, Any]:
    """The JSON state of the current checkpoint (without loading tensors)."""
    path = Path(workdir) / CHECKPOINT_JSON
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint in {workdir}") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {state.get('format_version')!r}, "
            f"this hubtune reads version {FORMAT_VERSION}"
        )
    return state


def load_checkpoint(workdir: Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, state) of the current checkpoint of ``workdir``."""
    workdir = Path(workdir)
    state = read_state(workdir)
    tensor_path = workdir / state["tensors"]
    if not tensor_path.exists():
        raise CheckpointError(f"checkpoint tensors {tensor_path} are missing")
    tensors = load_file(str(tensor_path), device=str(device))
    # Clean up leftovers of an interrupted save.
    _remove_stale(workdir, keep=state["tensors"])
    return tensors, state


# --------------------------------------------------------------- optimizer
def flatten_optimizer_state(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors and a JSON-serialisable rest."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    groups = []
    for g in sd["param_groups"]:
        g = dict(g)
        for k, v in g.items():
            if isinstance(v, tuple):
                g[k] = list(v)
        groups.append(g)
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith("optim."):
            continue
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, values in rest["scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    groups = []
    for g in rest["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}
