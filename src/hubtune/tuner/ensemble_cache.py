"""The ensemble candidates' class probabilities, cached with the run (``RUN/ensemble-cache/``).

One safetensors file per trial and checkpoint epoch (``<trial>-e<epoch>.safetensors``,
tensors ``val`` and, once the trial was chosen as a member, ``test``; ``[N, C]``
float32) and ``index.json`` mapping each trial id to its epoch and file. Every
candidate needs its validation probabilities (the weights are chosen on them);
only the chosen members are scored on the test split, so ``test`` is added to a
candidate's file when it is first chosen. A checkpoint trained further is evaluated
again; an unchanged one never is, so finishing a run again (a resume, a re-export)
computes nothing new.

Example::

    cache = MemberCache("runs/digits")
    member = cache.get(Path("runs/digits/trials/ab12"), data, "cpu")   # val probabilities
    cache.add_test(member, Path("runs/digits/trials/ab12"), data, "cpu")
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

CACHE_DIR = "ensemble-cache"


@torch.no_grad()
def trial_probabilities(trial: Any, split: Any, batch_size: int = 256) -> np.ndarray:
    """``[N, C]`` softmax of a loaded :class:`~hubtune.finetune.trial.Trial` on ``split``
    (the trial's own normalisation, un-augmented, in dataset order)."""
    trial.model.eval()
    out = []
    for x, _y in trial.pipeline.eval_batches(split.images, split.labels, batch_size):
        with trial._autocast():
            logits = trial.model(x)
        out.append(logits.float().softmax(-1).cpu())
    return torch.cat(out).numpy().astype(np.float32)


@dataclass
class Member:
    """A candidate: its trial, checkpoint epoch, validation (and test) probabilities."""

    trial_id: str
    epoch: int
    val: np.ndarray
    test: np.ndarray | None


def split_size(data: Any, name: str) -> int:
    """Images in ``data``'s split ``name`` (0 when it has none)."""
    split = getattr(data, name, None)
    return len(split.labels) if split is not None else 0


class MemberCache:
    """Per-trial probabilities cached in ``RUN/ensemble-cache`` (see the module docstring).

    ``computed`` lists the trial ids whose validation probabilities this object
    evaluated, ``test_computed`` those it scored on test (the rest came from the
    cache). ``load_seconds`` and ``image_seconds`` are what each evaluation took:
    loading the checkpoint, and seconds per image of the forward passes.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.root = Path(run_dir) / CACHE_DIR
        self.index_path = self.root / "index.json"
        self.index: dict[str, Any] = {}
        if self.index_path.exists():
            try:
                loaded = json.loads(self.index_path.read_text())
                self.index = loaded.get("members", {}) if isinstance(loaded, dict) else {}
            except (ValueError, OSError):
                self.index = {}  # a damaged index only costs recomputation
        self.computed: list[str] = []
        self.test_computed: list[str] = []
        self.load_seconds: list[float] = []
        self.image_seconds: list[float] = []

    # ------------------------------------------------------------ reading
    def _cached(self, trial_id: str, epoch: int, sizes: tuple[int, int]) -> Member | None:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        entry = self.index.get(trial_id)
        if not isinstance(entry, dict) or entry.get("epoch") != epoch:
            return None
        try:
            tensors = load_file(str(self.root / str(entry["file"])))
        except (SafetensorError, OSError, ValueError, KeyError):
            return None
        val, test = tensors.get("val"), tensors.get("test")
        if val is None or val.shape[0] != sizes[0]:
            return None
        if not sizes[1] or test is None or test.shape[0] != sizes[1]:
            test = None  # not scored on test yet (or another test split)
        return Member(trial_id, epoch, val, test)

    def _key(self, trial_dir: Path, data: Any) -> tuple[str, int, tuple[int, int]] | None:
        from hubtune.finetune.checkpoint import read_state

        try:
            epoch = int(read_state(trial_dir)["epoch"])
        except Exception:  # noqa: BLE001 - an unreadable state is reported by get()
            return None
        return trial_dir.name, epoch, (split_size(data, "val"), split_size(data, "test"))

    def cached_member(self, trial_dir: Path, data: Any) -> Member | None:
        """The cached member of ``trial_dir`` at its current checkpoint, or ``None``."""
        key = self._key(trial_dir, data)
        return None if key is None else self._cached(*key)

    def is_cached(self, trial_dir: Path, data: Any) -> bool:
        """Whether :meth:`get` would compute nothing for ``trial_dir``."""
        return self.cached_member(trial_dir, data) is not None

    # ------------------------------------------------------------ computing
    def _evaluate(self, trial_dir: Path, data: Any, device: str, split: str) -> np.ndarray:
        """Load ``trial_dir``'s checkpoint and return its probabilities on ``split`` (timed)."""
        from hubtune.tuner.export import _load_trial

        t0 = time.monotonic()
        _state, _config, trial = _load_trial(trial_dir, data, device)
        t1 = time.monotonic()
        probs = trial_probabilities(trial, getattr(data, split))
        self.load_seconds.append(t1 - t0)
        self.image_seconds.append((time.monotonic() - t1) / max(1, split_size(data, split)))
        return probs

    def _store(self, member: Member) -> None:
        """Write ``member``'s probabilities (atomically) and point the index at them."""
        from safetensors.numpy import save_file

        from hubtune.core.atomic import write_json_atomic

        self.root.mkdir(parents=True, exist_ok=True)
        name = f"{member.trial_id}-e{member.epoch}.safetensors"
        tensors = {"val": member.val} if member.test is None else {"val": member.val,
                                                                  "test": member.test}
        tmp = self.root / f".{name}.tmp"
        save_file(tensors, str(tmp))
        tmp.replace(self.root / name)
        old = self.index.get(member.trial_id)
        self.index[member.trial_id] = {"epoch": member.epoch, "file": name}
        write_json_atomic(self.index_path, {"format_version": 1, "members": self.index}, indent=2)
        if isinstance(old, dict) and old.get("file") != name:
            (self.root / str(old.get("file"))).unlink(missing_ok=True)

    def get(self, trial_dir: Path, data: Any, device: str) -> Member:
        """The member of ``trial_dir`` with its validation probabilities (from the cache,
        or evaluated and stored); ``test`` is filled only when cached."""
        from hubtune.finetune.checkpoint import read_state

        trial_id = trial_dir.name
        epoch = int(read_state(trial_dir)["epoch"])
        hit = self._cached(trial_id, epoch, (split_size(data, "val"), split_size(data, "test")))
        if hit is not None:
            return hit
        member = Member(trial_id, epoch, self._evaluate(trial_dir, data, device, "val"), None)
        self._store(member)
        self.computed.append(trial_id)
        return member

    def add_test(self, member: Member, trial_dir: Path, data: Any, device: str) -> None:
        """Score ``member`` on the test split (stored with its validation probabilities)."""
        from hubtune.finetune.checkpoint import read_state

        if member.test is not None or not split_size(data, "test"):
            return
        if int(read_state(trial_dir)["epoch"]) != member.epoch:
            raise ValueError(f"trial {member.trial_id}: the checkpoint moved past epoch "
                             f"{member.epoch} while the ensemble was chosen")
        member.test = self._evaluate(trial_dir, data, device, "test")
        self._store(member)
        self.test_computed.append(member.trial_id)
