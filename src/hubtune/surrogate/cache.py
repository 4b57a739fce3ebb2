"""Where surrogates come from: the shipped default, or meta-trained per fold and cached.

For a benchmark fold, the surrogate must be meta-trained WITHOUT the test
dataset: :func:`surrogate_for` meta-trains on exactly the given meta-training
data and caches the result on disk under a key made of the training dataset
names, their run counts, the seed and the meta-training settings, so each
fold is trained once (and in-process once more is free).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hubtune.hub.descriptor import ModelDescriptor
from hubtune.surrogate.metatrain import MetaTrainSettings, metatrain
from hubtune.surrogate.model import Surrogate, SurrogateError

DEFAULT_SURROGATE_DIR = Path(__file__).resolve().parents[1] / "assets" / "surrogate"
"""The shipped default surrogate (meta-trained on all 20 quicktune-extended datasets)."""

OFFLINE_SURROGATE_DIR = DEFAULT_SURROGATE_DIR.parent / "surrogate-offline"
"""The shipped surrogate continued on real runs of the offline hub (see its README.md)."""

CACHE_VERSION = 2
_MEMO: dict[str, Surrogate] = {}
_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Per-fold surrogate cache (``$HUBTUNE_SURROGATE_CACHE`` or ``~/.cache/hubtune/surrogates``)."""
    env = os.environ.get("HUBTUNE_SURROGATE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "hubtune" / "surrogates"


def default_surrogate_dir(models: list[str] | tuple[str, ...]) -> Path:
    """The shipped surrogate a search over ``models`` uses when none is given.

    A search whose models all belong to the offline hub gets the surrogate
    specialised on real finetuning runs of exactly those models (on other
    built-in datasets than Fashion-MNIST); any other search gets the default.
    """
    from hubtune.hub.published import OFFLINE_MODELS

    if models and set(models) <= set(OFFLINE_MODELS) and OFFLINE_SURROGATE_DIR.is_dir():
        return OFFLINE_SURROGATE_DIR
    return DEFAULT_SURROGATE_DIR


def load_default_surrogate(path: str | Path | None = None) -> Surrogate:
    """The shipped surrogate, or the one in ``path``."""
    d = Path(path) if path is not None else DEFAULT_SURROGATE_DIR
    key = f"dir:{d.resolve()}"
    with _LOCK:
        if key not in _MEMO:
            try:
                _MEMO[key] = Surrogate.load(d)
            except SurrogateError:
                raise
            except FileNotFoundError:
                raise SurrogateError(f"no surrogate at {d}") from None
        return _MEMO[key]


def fold_key(
    metadata: Any,
    seed: int,
    settings: MetaTrainSettings,
    describe: Callable[[str], ModelDescriptor | None] | None = None,
) -> str:
    """Cache key of meta-training on ``metadata``.

    Made of the dataset names and run counts, the seed, the settings and the
    descriptor features of the models (a hub update retrains).
    """
    models = sorted({c.model for n in metadata.datasets for c in metadata[n].configs})
    feats = {}
    if describe is not None:
        for m in models:
            d = describe(m)
            feats[m] = [round(v, 6) for v in d.feature_vector()] if d is not None else None
    sig = {
        "version": CACHE_VERSION,
        "descriptors": feats,
        "datasets": {n: len(metadata[n].configs) for n in sorted(metadata.datasets)},
        "seed": seed,
        "settings": asdict(settings),
    }
    return hashlib.sha1(json.dumps(sig, sort_keys=True).encode()).hexdigest()[:16]


def surrogate_for(
    metadata: Any,
    describe: Callable[[str], ModelDescriptor | None],
    seed: int = 0,
    settings: MetaTrainSettings | None = None,
    directory: Path | None = None,
) -> Surrogate:
    """A surrogate meta-trained on exactly ``metadata`` (cached on disk and in memory)."""
    s = settings or MetaTrainSettings()
    key = fold_key(metadata, seed, s, describe)
    return cached_surrogate(key, lambda: metatrain(metadata, describe, seed=seed, settings=s), directory)


def cached_surrogate(key: str, build: Callable[[], Surrogate], directory: Path | None = None) -> Surrogate:
    """The surrogate cached under ``key`` (memory, then ``directory``/``cache_dir()``), else
    ``build()`` it and store it atomically (a process that loses a race uses the winner's copy)."""
    with _LOCK:
        if key in _MEMO:
            return _MEMO[key]
        folder = (directory or cache_dir()) / key
        try:
            sur = Surrogate.load(folder)
        except SurrogateError:
            sur = build()
            tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
            sur.save(tmp)
            try:
                tmp.replace(folder)
            except OSError:  # another process won the race; use its copy
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
                sur = Surrogate.load(folder)
        _MEMO[key] = sur
        return sur
