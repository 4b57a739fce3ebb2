"""What every part of the trainer shares: its error, seeding, devices and precision.

Seeding is per epoch (:func:`epoch_seed`), which is what makes a paused and
continued trial reproduce an uninterrupted one bit for bit.
"""

from __future__ import annotations

import copy
import hashlib
import random
import resource
from typing import Any

import numpy as np
import torch

from hubtune.space.config import Config

EVAL_BATCH_FACTOR = 2
"""Evaluation batches are this many times the training micro-batch (no gradients)."""


class TrainerError(ValueError):
    """Invalid request to the trainer (bad epochs, config mismatch, unusable data)."""



class _Diverged(Exception):
    pass


# ------------------------------------------------------------------ helpers
def epoch_seed(seed: int, epoch: int) -> int:
    """The seed all random draws of epoch ``epoch`` of a trial with ``seed`` derive from."""
    digest = hashlib.sha256(f"hubtune-epoch:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _seed_all(s: int) -> torch.Generator:
    torch.manual_seed(s)
    np.random.seed(s)
    random.seed(s)
    return torch.Generator().manual_seed(s)


def data_fingerprint(data: Any) -> str:
    """A stable id of the data a trial trains on (the dataset's own, or a hash)."""
    fp = getattr(data, "fingerprint", "")
    if fp:
        return str(fp)
    h = hashlib.sha1()
    for split in (data.train, data.val):
        h.update(str(tuple(split.images.shape)).encode())
        h.update(split.labels.numpy().tobytes())
        h.update(split.images.reshape(-1)[:: max(1, split.images.numel() // 65536)].numpy().tobytes())
    return h.hexdigest()[:16]


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def amp_dtype(
    config: Config, device: torch.device, bf16_supported: bool | None = None
) -> torch.dtype | None:
    """Autocast dtype for ``config.amp`` on ``device``: bf16 (fp16 on older GPUs) on CUDA, else None.

    Mixed precision is a GPU feature here; on CPU training stays float32.
    """
    if not config.amp or device.type != "cuda":
        return None
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_bf16_supported()
    return torch.bfloat16 if bf16_supported else torch.float16


def _check_data(data: Any) -> None:
    for name in ("train", "val"):
        split = getattr(data, name, None)
        if split is None or len(split.labels) == 0:
            raise TrainerError(f"the dataset has no {name} images")
    if int(data.num_classes) < 2:
        raise TrainerError(f"need at least 2 classes, got {data.num_classes}")


def _clone_state(obj: Any) -> Any:
    """Deep CPU copy of a (nested) state dict."""
    if torch.is_tensor(obj):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _clone_state(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clone_state(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_clone_state(v) for v in obj)
    return copy.deepcopy(obj)


# -------------------------------------------------------------------- trial
