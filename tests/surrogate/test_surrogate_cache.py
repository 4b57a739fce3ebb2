"""The on-disk + in-memory surrogate cache shared by per-fold and specialised surrogates."""

from __future__ import annotations

import numpy as np

from hubtune.surrogate import cache
from hubtune.surrogate.cache import cached_surrogate, load_default_surrogate


def test_cached_surrogate_builds_once_then_reuses_memory_and_disk(tmp_path, monkeypatch):
    shipped = load_default_surrogate()
    calls = []

    def build():
        calls.append(1)
        return shipped

    a = cached_surrogate("test-key", build, tmp_path)
    b = cached_surrogate("test-key", build, tmp_path)
    assert a is b is shipped and len(calls) == 1
    assert (tmp_path / "test-key").is_dir() and not list(tmp_path.glob("*.tmp*"))
    # a new process (empty memory) loads the stored copy instead of building again
    monkeypatch.setattr(cache, "_MEMO", {})
    c = cached_surrogate("test-key", build, tmp_path)
    assert len(calls) == 1 and c is not shipped
    x = np.zeros((3, shipped.features.dim), dtype=np.float32)
    np.testing.assert_allclose(c.prior_mean(x), shipped.prior_mean(x), rtol=1e-6)
