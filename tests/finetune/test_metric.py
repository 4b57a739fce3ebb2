"""``--metric top1|balanced_accuracy|macro_f1``: the scores, and a real search optimizing one."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from hubtune.cli import app
from hubtune.finetune.metrics import METRICS, confusion_scores
from hubtune.search.journal import Journal, replay
from tests.helpers.run import make_folder, tiny_run_args


def test_scores_from_confusion_counts_by_hand():
    # 3 classes, 10 images: true class 0 x6, 1 x3, 2 x1
    c = np.array([[5, 1, 0],
                  [1, 2, 0],
                  [1, 0, 0]])
    s = confusion_scores(c)
    assert s["top1"] == pytest.approx(7 / 10)
    assert s["balanced_accuracy"] == pytest.approx((5 / 6 + 2 / 3 + 0) / 3)
    f1 = [2 * 5 / (6 + 7), 2 * 2 / (3 + 3), 0.0]
    assert s["macro_f1"] == pytest.approx(sum(f1) / 3)


def test_classes_absent_from_the_labels():
    # class 2 never occurs as a true label: left out of balanced accuracy; it is
    # predicted once, so it counts (F1 0) in macro F1
    c = np.array([[3, 0, 1],
                  [0, 2, 0],
                  [0, 0, 0]])
    s = confusion_scores(c)
    assert s["balanced_accuracy"] == pytest.approx((3 / 4 + 1) / 2)
    assert s["macro_f1"] == pytest.approx((2 * 3 / 7 + 1 + 0) / 3)
    # a class neither true nor predicted is left out of both
    s = confusion_scores(np.array([[4, 0, 0], [0, 1, 0], [0, 0, 0]]))
    assert s == {"top1": 1.0, "balanced_accuracy": 1.0, "macro_f1": 1.0}
    assert confusion_scores(np.zeros((2, 2))) == dict.fromkeys(METRICS, 0.0)
    with pytest.raises(ValueError, match="square"):
        confusion_scores(np.zeros((2, 3)))


@pytest.fixture(scope="module")
def imbalanced_run(tmp_path_factory):
    """One tiny real search with --metric balanced_accuracy on a 40/8/8 image folder."""
    root = tmp_path_factory.mktemp("metric")
    data = make_folder(root / "data", per_class=40, seed=1)
    for name in ("green", "blue"):
        for f in sorted((data / name).glob("*.png"))[8:]:
            f.unlink()
    out = root / "run"
    res = CliRunner().invoke(app, tiny_run_args(data, out, "--metric", "balanced_accuracy",
                                                budget="20"))
    assert res.exit_code == 0, res.output
    return data, out


def test_the_journal_scores_are_the_chosen_metric(imbalanced_run):
    _, out = imbalanced_run
    records = [rec for r in replay(Journal(out / "journal.jsonl")).results for rec in r.records]
    assert len(records) >= 3
    for rec in records:
        assert set(rec.val_metrics) == set(METRICS)
        assert rec.score == rec.val_metrics["balanced_accuracy"]
    # on imbalanced validation data balanced accuracy is not top-1
    assert any(not math.isclose(rec.val_metrics["top1"], rec.score) for rec in records)


def test_export_ranks_by_the_metric_and_reports_all_three(imbalanced_run):
    _, out = imbalanced_run
    metrics = json.loads((out / "best" / "metrics.json").read_text())
    assert metrics["metric"] == "balanced_accuracy"
    for split in ("val", "test"):
        assert set(METRICS) <= set(metrics[split])
    result = json.loads((out / "result.json").read_text())
    assert result["metric"] == "balanced_accuracy"
    assert result["val_score"] == metrics["val"]["balanced_accuracy"]
    assert result["test_score"] == metrics["test"]["balanced_accuracy"]
    # the exported trial's latest epoch has the highest balanced accuracy of those kept
    latest: dict[str, float] = {}
    for r in replay(Journal(out / "journal.jsonl")).results:
        for rec in r.records:
            latest[r.trial_id] = rec.score
    kept = {t: s for t, s in latest.items() if (out / "trials" / t / "checkpoint.json").exists()}
    assert metrics["trial_id"] in kept
    assert kept[metrics["trial_id"]] == max(kept.values())
    assert metrics["val"]["balanced_accuracy"] == pytest.approx(kept[metrics["trial_id"]])


def test_resuming_with_another_metric_is_refused(imbalanced_run):
    data, out = imbalanced_run
    res = CliRunner().invoke(app, tiny_run_args(data, out, "--metric", "macro_f1"))
    assert res.exit_code == 2, res.output
    assert "other settings" in res.stderr and "metric: 'balanced_accuracy' (run)" in res.stderr
    assert "'macro_f1' (now)" in res.stderr


def test_unknown_metric_is_a_one_line_error(tmp_path):
    res = CliRunner().invoke(app, tiny_run_args(tmp_path, tmp_path / "o", "--metric", "f2"))
    assert res.exit_code == 2
    assert res.stderr.strip() == ("error: --metric must be top1, balanced_accuracy or "
                                  "macro_f1, got 'f2'")
