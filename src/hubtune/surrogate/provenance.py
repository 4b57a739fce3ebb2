"""Which data a surrogate was meta-trained on, and the guard against searching that data with it.

``hubtune metatrain`` stores, in ``surrogate.json``'s ``record["trained_on_data"]``,
one entry per dataset whose origin the meta-dataset knows (run folders read by
``--from-runs``, or native meta-datasets converted from them)::

    {"dataset": "digits-300", "fingerprints": ["23c1a8..."], "sources": ["builtin:digits"],
     "run_dirs": ["/abs/runs/a"]}

``fingerprints`` are the runs' data keys (``ImageDataset.fingerprint``: equal
keys mean equal images, labels, splits and size); ``sources`` name the images
regardless of split seed, subset and image size (``builtin:<name>``, or
``folder:<resolved path>``). :func:`check_surrogate_data` refuses a search whose
data matches either: the surrogate would have seen that data's own learning
curves (leakage), so the search would look better than it will on new data.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hubtune.core.errors import RunError

RECORD_KEY = "trained_on_data"


def provenance_entries(provenance: Mapping[str, Mapping[str, Any]], datasets: list[str]) -> list[dict[str, Any]]:
    """``record["trained_on_data"]`` entries of the ``datasets`` a surrogate was trained on."""
    out = []
    for name in datasets:
        p = provenance.get(name)
        if not p:
            continue
        out.append({"dataset": name,
                    "fingerprints": [str(v) for v in p.get("fingerprints", [])],
                    "sources": [str(v) for v in p.get("sources", [])],
                    "run_dirs": [str(v) for v in p.get("run_dirs", [])]})
    return out


def trained_on(surrogate_dir: str | Path) -> list[dict[str, Any]]:
    """The ``trained_on_data`` entries of the surrogate in ``surrogate_dir`` ([] if none)."""
    from hubtune.surrogate.model import SPEC_FILE

    try:
        spec = json.loads((Path(surrogate_dir) / SPEC_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    entries = (spec.get("record") or {}).get(RECORD_KEY) if isinstance(spec, dict) else None
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


@functools.lru_cache(maxsize=16)
def data_identity(data: str, subset: int | None, seed: int, image_size: int,
                  cache_dir: str | None = None) -> tuple[str | None, str | None]:
    """``(fingerprint, source)`` of the data a ``hubtune run`` with these settings trains on.

    The fingerprint is computed from the data's plan (file list or array rows, no
    decoding), exactly as ``load_dataset`` keys its cache; ``None`` where the data
    cannot be planned (``load_dataset`` then reports why).
    """
    from hubtune.data.errors import DataError
    from hubtune.data.loader import _plan
    from hubtune.data.naming import data_source

    source = data_source(data)
    try:
        plan = _plan(data, subset=subset, seed=seed, val_fraction=0.15, test_fraction=0.15,
                     cache_dir=Path(cache_dir) if cache_dir else None, download=False)
        fingerprint: str | None = plan.key(image_size)
    except (DataError, OSError, ValueError):
        fingerprint = None
    return fingerprint, source


def check_surrogate_data(settings: Any, out: str | Path | None = None) -> None:
    """Refuse a search with ``settings.surrogate`` on data that surrogate was meta-trained on.

    Raises:
        RunError: one line naming the surrogate, the dataset and the run folder its
            curves came from.
    """
    surrogate = getattr(settings, "surrogate", None)
    if not surrogate:
        return
    entries = trained_on(surrogate)
    if not entries:
        return
    cache = str(Path(out) / "data-cache") if out is not None else None
    fingerprint, source = data_identity(str(settings.data), settings.subset, int(settings.seed),
                                        int(settings.image_size), cache)
    for e in entries:
        same = fingerprint is not None and fingerprint in e.get("fingerprints", [])
        related = source is not None and source in e.get("sources", [])
        if same or related:
            dirs = e.get("run_dirs", [])
            where = ("run folder " if len(dirs) == 1 else "run folders ") + ", ".join(dirs) if dirs else "run folders"
            what = "this data" if same else f"the same source data ({source.split(':', 1)[1]})"
            raise RunError(
                f"--surrogate {surrogate} was meta-trained on {what} (dataset {e.get('dataset')!r} "
                f"from {where}); searching it with that surrogate would reuse its own "
                f"learning curves: use a surrogate trained without it, or other data")
