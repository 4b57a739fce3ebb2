"""benchmarks/qt_replay.py: the settings-variant replay's parsing and paired statistics (issue #13)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tests.helpers.paths import BENCHMARKS

sys.path.insert(0, str(BENCHMARKS))

from qt_replay import method_name, paired_ci, parse_seconds, parse_variant, plateaus, summarise  # noqa: E402


def test_parse_variant_and_seconds():
    assert parse_variant('main={"calibrate_new": null}') == ("main", {"calibrate_new": None})
    for bad in ("main", '={"a": 1}', "x=[1]", "x={nope"):
        with pytest.raises(ValueError):
            parse_variant(bad)
    assert parse_seconds("16h") == 57600 and parse_seconds("90m") == 5400 and parse_seconds("30") == 30
    assert method_name("new", 0) == "qtv_new" and method_name("new", 2) == "qtv_new-s2"


def test_plateaus_are_equal_regrets_at_two_horizons_above_the_floor():
    reg = np.array([[0.2, 0.2, 0.1], [0.005, 0.005, 0.0], [0.3, 0.1, 0.0]])
    assert plateaus(reg, ["A", "B", "C"], 0, 1) == ["A"]


def test_paired_differences_are_per_dataset_and_counted():
    # [variant, dataset, surrogate seed, horizon]
    full = np.zeros((2, 4, 2, 1))
    full[0, :, :, 0] = 0.5
    full[1, :, :, 0] = [[0.4, 0.4], [0.4, 0.6], [0.5, 0.5], [0.7, 0.7]]
    s = summarise(full, ["ref", "new"], ["A", "B", "C", "D"], [3600.0])
    p = s["variants"]["new"]["paired"][0]
    assert p["diff"] == pytest.approx((-0.1 + 0.0 + 0.0 + 0.2) / 4)
    assert (p["better"], p["worse"]) == (1, 1)  # B's seeds average out to no difference
    assert p["ci"][0] <= p["diff"] <= p["ci"][1]
    assert s["variants"]["new"]["per_surrogate_seed"] == [[0.5], [0.55]]
    m, lo, hi = paired_ci(np.zeros(5))
    assert m == lo == hi == 0.0
