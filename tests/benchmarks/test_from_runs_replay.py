"""benchmarks/from_runs_replay.py holds out every dataset of a source together: the runs of
other seeds or subsets of the same images never meta-train the surrogate that is then
replayed on them (``hubtune run --surrogate`` refuses that data too)."""

from __future__ import annotations

import importlib.util

from hubtune.metadata import DatasetRuns, MetaDataset
from hubtune.space.config import Config
from tests.helpers.paths import ROOT


def _module():
    spec = importlib.util.spec_from_file_location("from_runs_replay",
                                                  ROOT / "benchmarks" / "from_runs_replay.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _runs(name: str) -> DatasetRuns:
    return DatasetRuns.from_curves(name, ["r0"], [Config(model="test_resnet")], [[0.5, 0.6]],
                                   [[1.0, 1.0]], max_epochs=2)


def test_datasets_of_one_source_form_one_group():
    names = ["animal-mnist-3000", "animal-mnist-3000-seed1", "digits", "digits-seed1",
             "digits-seed2", "my-folder"]
    provenance = {
        "animal-mnist-3000": {"sources": ["builtin:animal-mnist"]},
        "animal-mnist-3000-seed1": {"sources": ["builtin:animal-mnist"]},
        "digits": {"sources": ["builtin:digits"]},
        "digits-seed1": {"sources": ["builtin:digits"]},
        "digits-seed2": {"sources": ["builtin:digits"]},
    }  # my-folder: no provenance, its own group
    meta = MetaDataset([_runs(n) for n in names], provenance=provenance)
    groups = _module().source_groups(meta)
    assert sorted(map(sorted, groups)) == [
        ["animal-mnist-3000", "animal-mnist-3000-seed1"],
        ["digits", "digits-seed1", "digits-seed2"],
        ["my-folder"],
    ]
    for g in groups:  # each group's meta-training data is everything else
        rest = meta.without(g)
        assert not set(rest.datasets) & set(g) and len(rest.datasets) == len(names) - len(g)
