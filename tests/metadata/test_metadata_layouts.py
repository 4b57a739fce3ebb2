"""Loaders of the official Quick-Tune release layout and Quick-Tune-Tool's CSV layout (fixtures)."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from hubtune.core.metafeatures import DatasetMetaFeatures
from hubtune.metadata import MetadataError, load_metadata
from hubtune.metadata.loader import detect_layout
from tests.helpers.paths import FIXTURES, QT_EXTENDED

FIXTURES = FIXTURES / "metadata"
RELEASE = FIXTURES / "release"
QTT = FIXTURES / "qtt"
EXTENDED = QT_EXTENDED
APL, BTS = "mtlbm/extended/APL", "mtlbm/extended/BTS"


def test_layouts_are_detected() -> None:
    assert detect_layout(RELEASE) == "release"
    assert detect_layout(QTT) == "qtt"


# ------------------------------------------------------------------ release
def test_release_fixture_loads_with_seconds_and_meta_features() -> None:
    meta = load_metadata(RELEASE)
    assert meta.datasets == [APL, BTS] and meta.max_epochs == 12
    top1 = json.loads((RELEASE / "eval_top1.json").read_text())
    train = json.loads((RELEASE / "train_time.json").read_text())
    evals = json.loads((RELEASE / "eval_time.json").read_text())
    runs = meta[BTS]
    i = runs.index("3943703261081846")
    np.testing.assert_allclose(runs.curve(i), np.array(top1[BTS]["3943703261081846"]) / 100)
    np.testing.assert_allclose(
        runs.cost(i), np.add(train[BTS]["3943703261081846"], evals[BTS]["3943703261081846"])
    )
    assert meta[APL].meta_features == DatasetMetaFeatures(5775, 21, 128.0, 3)


def test_release_reports_unusable_runs_and_cuts_nan_curves() -> None:
    meta = load_metadata(RELEASE)
    reasons = {u.run_id: (u.dataset, u.reason) for u in meta.unmapped}
    assert set(reasons) == {"edge-lamb", "edge-no-args"}
    assert reasons["edge-lamb"][0] == APL and "opt='lamb'" in reasons["edge-lamb"][1]
    assert reasons["edge-no-args"] == (BTS, "no arguments in args.json")
    runs = meta[APL]
    np.testing.assert_allclose(runs.curve(runs.index("edge-nan")), [0.30, 0.40])  # cut at the NaN epoch


def test_release_script_arguments_map_like_the_table() -> None:
    meta = load_metadata(RELEASE)
    c = meta[BTS].configs[meta[BTS].index("16953893331647455")]  # flags + one-element lists style
    assert c.model == "swinv2_base_window12to24_192to384_22kft1k" and c.opt == "momentum"
    assert c.data_augmentation == "trivial_augment" and c.auto_augment is None and c.clip_grad is None
    assert c.decay_epochs is None and c.momentum == 0.9 and c.amp is True
    c = meta[APL].configs[meta[APL].index("9807960688271499")]
    assert c.opt_betas == (0.0, 0.99) and c.layer_decay == 0.65 and c.clip_grad == 1.0


@pytest.mark.skipif(not (EXTENDED / "table.csv").is_file(), reason="shared meta-dataset not found")
def test_release_and_qtt_fixtures_agree_with_the_compact_table() -> None:
    table = load_metadata(EXTENDED)
    release, qtt = load_metadata(RELEASE), load_metadata(QTT)
    qtt_runs = {r: (qtt[d], qtt[d].index(r)) for d in qtt.datasets for r in qtt[d].run_ids}
    for name in ("APL", "BTS"):
        full = table[name]
        rel = release[f"mtlbm/extended/{name}"]
        for run_id in rel.run_ids:
            if run_id.startswith("edge-"):
                continue
            j, k = full.index(run_id), rel.index(run_id)
            assert rel.configs[k] == full.configs[j], run_id
            n = rel.lengths[k]
            np.testing.assert_allclose(rel.curve(k), full.curve(j)[:n])
            np.testing.assert_allclose(rel.cost(k), full.cost(j)[:n], rtol=1e-6)
            q, m = qtt_runs[run_id]
            assert q.configs[m] == full.configs[j], run_id
            np.testing.assert_allclose(q.curve(m), full.curve(j)[:n])
            assert q.cost(m).sum() == pytest.approx(full.cost(j)[:n].sum())


# ---------------------------------------------------------------------- qtt
def test_qtt_fixture_groups_runs_by_meta_features() -> None:
    meta = load_metadata(QTT)
    assert meta.datasets == ["qtt-0", "qtt-1"] and meta.unmapped == []
    assert meta["qtt-0"].meta_features == DatasetMetaFeatures(5775, 21, 128.0, 3)
    assert len(meta["qtt-1"]) == 3
    cost = {r[0]: float(r[1]) for r in list(csv.reader((QTT / "cost.csv").open()))[1:]}
    runs = meta["qtt-1"]
    i = runs.index("16953893331647455")
    assert runs.lengths[i] == 8  # NaN padding after the end is not an epoch
    np.testing.assert_allclose(runs.cost(i), [cost["16953893331647455"] / 8] * 8)
    assert runs.configs[i].data_augmentation == "trivial_augment"


def _copy_qtt(tmp_path: Path) -> Path:
    target = tmp_path / "mytask"
    shutil.copytree(QTT, target)
    return target


def _rewrite(path: Path, edit) -> None:
    rows = list(csv.reader(path.open()))
    rows = edit(rows)
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def test_qtt_dataset_column_per_epoch_cost_and_no_meta(tmp_path: Path) -> None:
    d = _copy_qtt(tmp_path)
    (d / "meta.csv").unlink()
    meta = load_metadata(d)
    assert meta.datasets == ["mytask"] and meta["mytask"].meta_features is None
    _rewrite(d / "config.csv", lambda rows: [r + ["dataset" if i == 0 else f"ds{i % 2}"] for i, r in enumerate(rows)])
    curve = list(csv.reader((d / "curve.csv").open()))
    _rewrite(d / "cost.csv", lambda rows: [curve[0]] + [[r[0]] + ["" if v == "" else "7.5" for v in r[1:]] for r in curve[1:]])
    meta = load_metadata(d)
    assert meta.datasets == ["ds0", "ds1"] and meta.n_runs == 5
    runs = meta["ds1"]
    assert all((runs.cost(i) == 7.5).all() for i in range(len(runs)))


def test_qtt_errors_and_unmatched_runs(tmp_path: Path) -> None:
    d = _copy_qtt(tmp_path)
    _rewrite(d / "curve.csv", lambda rows: rows[:-1] + [["extra-run", "0.5"] + [""] * 11])
    meta = load_metadata(d)
    reasons = {u.run_id: u.reason for u in meta.unmapped}
    assert reasons == {
        "16953893331647455": "no curve in curve.csv",
        "extra-run": "curve without a configuration in config.csv",
    }
    _rewrite(d / "curve.csv", lambda rows: [rows[0]] + [[r[0]] + ["55" if v else "" for v in r[1:]] for r in rows[1:]])
    with pytest.raises(MetadataError, match=r"curve\.csv: scores go up to 55; .*fractions"):
        load_metadata(d)
    (d / "cost.csv").unlink()
    with pytest.raises(MetadataError, match=r"cost\.csv: file not found"):
        load_metadata(d)


def test_release_malformed_files(tmp_path: Path) -> None:
    d = tmp_path / "rel"
    shutil.copytree(RELEASE, d)
    (d / "meta.json").unlink()
    meta = load_metadata(d)
    assert all(meta[n].meta_features is None for n in meta.datasets)
    (d / "train_time.json").write_text("[1, 2]")
    with pytest.raises(MetadataError, match=r"train_time\.json: the top level .* must be a JSON object"):
        load_metadata(d)
    (d / "train_time.json").unlink()
    with pytest.raises(MetadataError, match=r"train_time\.json: file not found"):
        load_metadata(d)
    (d / "meta.json").write_text(json.dumps({APL: [1, 2]}))
    shutil.copy(RELEASE / "train_time.json", d / "train_time.json")
    with pytest.raises(MetadataError, match=r"meta\.json: 'mtlbm/extended/APL': bad meta-features"):
        load_metadata(d)
    assert not math.isnan(load_metadata(RELEASE)[APL].best)
