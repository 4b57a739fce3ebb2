"""benchmarks/large_test.py: the held-back test set never overlaps what a run trained or selected on."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tests.helpers.paths import BENCHMARKS

sys.path.insert(0, str(BENCHMARKS))

from hubtune.data.builtin import plan_builtin  # noqa: E402
from large_test import TEST_FRACTION, VAL_FRACTION, heldback_rows  # noqa: E402


@pytest.mark.parametrize("data,seed", [("digits:600", 0), ("digits:900", 3), ("digits", 1)])
def test_heldback_rows_are_disjoint_from_the_runs_train_and_val(data, seed):
    rows, labels, classes, full = heldback_rows(data, seed)
    name, _, n = data.partition(":")
    run_plan = plan_builtin(name, seed=seed, val_fraction=VAL_FRACTION, test_fraction=TEST_FRACTION)
    if n:
        run_plan = run_plan.with_subset(int(n), seed)
    used = np.concatenate([np.asarray(run_plan.splits[s].items) for s in ("train", "val")])
    everything = np.concatenate([np.asarray(p.items) for p in full.splits.values()])
    assert not np.isin(rows, used).any()
    assert len(np.unique(rows)) == len(rows)
    assert len(rows) + len(used) == len(everything)  # every other image is held back
    assert set(np.asarray(run_plan.splits["test"].items)) <= set(rows.tolist())
    all_labels = np.concatenate([np.asarray(p.labels) for p in full.splits.values()])
    label_of = dict(zip(everything.tolist(), all_labels.tolist(), strict=True))
    assert labels.tolist() == [label_of[r] for r in rows.tolist()]
    assert classes == [str(d) for d in range(10)]
    assert np.bincount(labels, minlength=10).min() > 0


def test_not_a_builtin_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="not a built-in dataset"):
        heldback_rows(str(tmp_path / "folder"), 0)
