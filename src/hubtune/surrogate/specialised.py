"""A surrogate specialised per benchmark fold: the shipped one, meta-trained further on the fold's data.

:func:`specialised_surrogate_for` continues meta-training a base surrogate
(the shipped default unless told otherwise) on exactly the given meta-training
data (:func:`hubtune.surrogate.metatrain.specialise`) and caches the result on
disk like :func:`hubtune.surrogate.cache.surrogate_for`, under a key made of the
fold (dataset names, run counts, seed, settings, model descriptors) and the
base surrogate's files, so each fold is specialised once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hubtune.hub.descriptor import ModelDescriptor
from hubtune.surrogate.cache import (
    DEFAULT_SURROGATE_DIR,
    cached_surrogate,
    fold_key,
    load_default_surrogate,
)
from hubtune.surrogate.metatrain import SPECIALISE_SETTINGS, MetaTrainSettings, specialise
from hubtune.surrogate.model import SPEC_FILE, WEIGHTS_FILE, Surrogate


def _base_fingerprint(base_dir: Path) -> str:
    h = hashlib.sha1()
    for name in (SPEC_FILE, WEIGHTS_FILE):
        h.update((base_dir / name).read_bytes())
    return h.hexdigest()[:16]


def specialised_surrogate_for(
    metadata: Any,
    describe: Callable[[str], ModelDescriptor | None],
    base_dir: str | Path | None = None,
    seed: int = 0,
    directory: Path | None = None,
) -> Surrogate:
    """The surrogate in ``base_dir`` (default: shipped) meta-trained further on ``metadata`` (cached)."""
    base_path = Path(base_dir) if base_dir is not None else DEFAULT_SURROGATE_DIR
    base = load_default_surrogate(base_path)
    settings = MetaTrainSettings(**{**SPECIALISE_SETTINGS, "model_encoding": base.features.model_encoding})
    key = "spec-" + hashlib.sha1(
        (fold_key(metadata, seed, settings, describe) + _base_fingerprint(base_path)).encode()
    ).hexdigest()[:16]
    return cached_surrogate(
        key, lambda: specialise(base, metadata, describe, seed=seed, settings=settings), directory
    )
