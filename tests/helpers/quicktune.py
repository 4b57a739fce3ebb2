"""Shared pieces of the surrogate and Quick-Tune tests: a small slice of the shared meta-dataset."""

from __future__ import annotations

from functools import lru_cache

import pytest

from hubtune.hub import HubError, get_descriptor
from tests.helpers.paths import QT_EXTENDED

SHARED = QT_EXTENDED
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared meta-dataset absent: {SHARED}")
TRAIN = ["BCT", "MED_LF", "PLT_DOC", "PNU"]
TEST = "TEX_DTD"


def describe(name: str):
    """The hub descriptor of ``name``, or None for a model the hub does not know."""
    try:
        return get_descriptor(name)
    except HubError:
        return None


@lru_cache(maxsize=1)
def meta():
    """The four meta-training datasets plus the test dataset."""
    from hubtune.metadata import load_metadata

    return load_metadata(SHARED).only(TRAIN + [TEST])
