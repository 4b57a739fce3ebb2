"""`hubtune run --surrogate DIR`: a user's own (e.g. specialised) surrogate drives the search."""

from __future__ import annotations

import shutil

import pytest

from hubtune.optim.qt_factory import make_quicktune
from hubtune.protocol.context import TaskContext
from hubtune.space.searchspace import SearchSpace
from hubtune.surrogate.cache import DEFAULT_SURROGATE_DIR, load_default_surrogate
from hubtune.tuner.hubtuner import HubTuner, RunError


def test_quicktune_uses_the_given_surrogate_folder(tmp_path):
    mine = tmp_path / "my-surrogate"
    shutil.copytree(DEFAULT_SURROGATE_DIR, mine)
    space = SearchSpace(["edgenext_small"])
    qt = make_quicktune(TaskContext(max_epochs=5, space=space, surrogate_dir=str(mine)))
    assert qt.surrogate is load_default_surrogate(mine)
    assert qt.surrogate is not load_default_surrogate()
    assert make_quicktune(TaskContext(max_epochs=5, space=space)).surrogate is load_default_surrogate()


def test_a_missing_surrogate_folder_is_a_clear_error(tmp_path):
    with pytest.raises(RunError, match="--surrogate .*no surrogate"):
        HubTuner(budget="1m", out=tmp_path / "run", hub="test", surrogate=tmp_path / "nope")
