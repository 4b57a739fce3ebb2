"""The finetuning engine: prefix exactness, resume, faults, atomic checkpoints, evaluator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import hubtune.hub
from hubtune.data import load_dataset
from hubtune.finetune import TrainerError, TrainerEvaluator, advance, read_records
from hubtune.finetune import checkpoint as ckpt
from hubtune.finetune.engine import (
    DIVERGED_FILE,
    LOCK_FILE,
    RECORDS_FILE,
    evaluate_checkpoint,
    trial_lock,
)
from hubtune.protocol.steps import Evaluator, Step
from hubtune.space import Config

MODEL = "test_efficientnet"
SUBSET = 64


@pytest.fixture(scope="module")
def ds():
    return load_dataset("fashion-mnist", image_size=32, subset=SUBSET, seed=0)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    """Seeded random ImageNet-shaped weights of the tiny test model, as a local weights file."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model(MODEL, num_classes=1000)
    path = tmp_path_factory.mktemp("weights") / f"{MODEL}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)


# Every randomised or stateful feature at once: if any of them broke prefix
# exactness (unsaved state, RNG drawn from the wrong place), this would differ.
RICH = Config(
    model=MODEL, batch_size=16, opt="adamp", lr=0.01, weight_decay=1e-3, clip_grad=1.0,
    layer_decay=0.75, sched="plateau", patience_epochs=0, decay_rate=0.5, warmup_epochs=1,
    warmup_lr=1e-4, pct_to_freeze=0.2, linear_probing=True, stoch_norm=True, sp_reg=0.01,
    delta_reg=0.01, bss_reg=0.01, cotuning_reg=0.5, mixup=0.4, cutmix=1.0, mixup_prob=0.75,
    smoothing=0.1, drop=0.2, data_augmentation="random_augment",
)  # fmt: skip
PLAIN = Config(model=MODEL, batch_size=16, lr=0.01)


def run(cfg: Config, to: int, ds, workdir: Path, weights: str, max_epochs: int = 4, **kw: Any):
    return advance(
        cfg, to, data=ds, workdir=workdir, max_epochs=max_epochs, weights_path=weights, num_threads=1, **kw
    )


def tensors_of(workdir: Path) -> dict[str, torch.Tensor]:
    state = json.loads((workdir / ckpt.CHECKPOINT_JSON).read_text())
    return load_file(str(workdir / state["tensors"]))


def metrics(records) -> list[tuple]:
    return [(r.epoch, r.score, r.top5, r.train_loss, r.val_loss, r.lr, r.batch_size) for r in records]


def assert_same_checkpoint(a: Path, b: Path) -> None:
    ta, tb = tensors_of(a), tensors_of(b)
    assert ta.keys() == tb.keys()
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, f"tensors differ: {different[:5]}"


# ------------------------------------------------------------ exactness
def test_pause_and_resume_equals_training_straight_through(ds, weights, tmp_path):
    straight = run(RICH, 4, ds, tmp_path / "straight", weights)
    assert straight.status == "ok" and [r.epoch for r in straight.records] == [1, 2, 3, 4]
    first = run(RICH, 2, ds, tmp_path / "paused", weights)
    second = run(RICH, 4, ds, tmp_path / "paused", weights)
    assert [r.epoch for r in first.records + second.records] == [1, 2, 3, 4]
    assert metrics(first.records + second.records) == metrics(straight.records)
    assert_same_checkpoint(tmp_path / "straight", tmp_path / "paused")
    assert metrics(read_records(tmp_path / "paused")) == metrics(straight.records)
    # the schedule really moved: warmup, then plateau decays (patience 0)
    lrs = [r.lr for r in straight.records]
    assert lrs[0] == pytest.approx(1e-4) and lrs[1] == pytest.approx(0.01)


def test_records_are_complete(ds, weights, tmp_path):
    res = run(PLAIN, 2, ds, tmp_path, weights)
    for r in res.records:
        assert 0.0 <= r.score <= 1.0 and r.score <= r.top5 <= 1.0
        assert r.train_loss > 0 and r.val_loss > 0 and r.lr > 0
        assert r.train_seconds > 0 and r.eval_seconds > 0 and r.peak_memory_mb > 0
        assert r.batch_size == 16 and r.grad_accumulation == 1
    # restore cost on the first epoch of the step, save cost on the last
    assert res.records[0].checkpoint_seconds > 0 and res.records[-1].checkpoint_seconds > 0
    lines = (tmp_path / RECORDS_FILE).read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_resume_in_a_new_process(ds, weights, tmp_path):
    """A trial paused by one process continues in another exactly as if never stopped."""
    script = f"""
import torch
from hubtune.data import load_dataset
from hubtune.finetune import advance
from hubtune.space import Config
ds = load_dataset("fashion-mnist", image_size=32, subset={SUBSET}, seed=0)
cfg = Config.from_json({PLAIN.to_json()!r})
r = advance(cfg, 1, data=ds, workdir={str(tmp_path / "resumed")!r}, max_epochs=3,
            weights_path={weights!r}, num_threads=1)
assert r.status == "ok", r
"""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    later = run(PLAIN, 3, ds, tmp_path / "resumed", weights, max_epochs=3)
    straight = run(PLAIN, 3, ds, tmp_path / "straight", weights, max_epochs=3)
    assert metrics(read_records(tmp_path / "resumed")) == metrics(straight.records)
    assert [r.epoch for r in later.records] == [2, 3]
    assert_same_checkpoint(tmp_path / "straight", tmp_path / "resumed")


def test_epoch_requests_are_validated(ds, weights, tmp_path):
    with pytest.raises(TrainerError, match="beyond max_epochs"):
        run(PLAIN, 5, ds, tmp_path, weights, max_epochs=4)
    assert not (tmp_path / ckpt.CHECKPOINT_JSON).exists()
    run(PLAIN, 1, ds, tmp_path, weights, max_epochs=4)
    noop = run(PLAIN, 1, ds, tmp_path, weights, max_epochs=4)
    assert noop.status == "ok" and noop.records == [] and noop.epoch == 1
    with pytest.raises(TrainerError, match="different configuration"):
        run(PLAIN.replace(lr=0.02), 2, ds, tmp_path, weights, max_epochs=4)
    with pytest.raises(TrainerError, match="max_epochs=4"):
        run(PLAIN, 2, ds, tmp_path, weights, max_epochs=6)
    with pytest.raises(TrainerError, match="seed"):
        run(PLAIN, 2, ds, tmp_path, weights, max_epochs=4, seed=1)


def test_caller_rng_and_threads_are_left_alone(ds, weights, tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    run(PLAIN, 1, ds, tmp_path, weights)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_evaluate_checkpoint_matches_the_validation_record(ds, weights, tmp_path):
    res = run(PLAIN, 1, ds, tmp_path, weights)
    val = evaluate_checkpoint(tmp_path, ds, split="val")
    assert val["top1"] == pytest.approx(res.records[-1].score)
    assert val["loss"] == pytest.approx(res.records[-1].val_loss, rel=1e-5)


# ---------------------------------------------------------------- faults
def _with_hook(monkeypatch, hook_factory):
    """Wrap the hub's real create_model so every built model carries a fault hook."""
    real = hubtune.hub.create_model

    def create_model(*args, **kwargs):
        hm = real(*args, **kwargs)
        hook_factory(hm.model)
        return hm

    monkeypatch.setattr(hubtune.hub, "create_model", create_model)


def test_out_of_memory_retries_the_epoch_with_half_micro_batches(ds, weights, tmp_path, monkeypatch):
    def raise_above_8(model):
        def hook(module, args):
            if args[0].shape[0] > 8:
                raise torch.OutOfMemoryError("CUDA out of memory (injected)")

        model.get_classifier().register_forward_pre_hook(hook)

    _with_hook(monkeypatch, raise_above_8)
    res = run(PLAIN, 1, ds, tmp_path / "oom", weights)
    assert res.status == "ok"
    (r,) = res.records
    assert (r.batch_size, r.grad_accumulation) == (8, 2)
    assert "out of memory at micro-batch 16; retried with 8" in r.note
    # the retry started the epoch over: one optimizer step per batch of 16, not more
    steps = {float(v) for k, v in tensors_of(tmp_path / "oom").items() if k.endswith(".step")}
    assert steps == {float(SUBSET // 16)}
    # the smaller micro-batch is remembered across a pause
    again = run(PLAIN, 2, ds, tmp_path / "oom", weights)
    assert (again.records[0].batch_size, again.records[0].note) == (8, None)


def test_out_of_memory_at_micro_batch_one_fails_the_trial(ds, weights, tmp_path, monkeypatch):
    def always(model):
        def hook(module, args):
            if module.training:
                raise torch.OutOfMemoryError("CUDA out of memory (injected)")

        model.get_classifier().register_forward_pre_hook(hook)

    _with_hook(monkeypatch, always)
    res = run(PLAIN.replace(batch_size=4), 1, ds, tmp_path, weights)
    assert res.status == "failed" and "even with micro-batch 2" in res.reason  # BatchNorm: >= 2


def test_non_finite_loss_marks_the_trial_diverged(ds, weights, tmp_path, monkeypatch):
    calls = {"n": 0}
    batches_per_epoch = SUBSET // 16

    def nan_in_second_epoch(model):
        def hook(module, args, output):
            if module.training:
                calls["n"] += 1
                if calls["n"] > batches_per_epoch + 1:
                    return output * float("nan")
            return output

        model.get_classifier().register_forward_hook(hook)

    _with_hook(monkeypatch, nan_in_second_epoch)
    res = run(PLAIN, 3, ds, tmp_path, weights)
    assert res.status == "diverged" and "non-finite" in res.reason and "epoch 2" in res.reason
    assert [r.epoch for r in res.records] == [1]
    assert res.epoch == 1
    assert (tmp_path / DIVERGED_FILE).exists()
    assert [r.epoch for r in read_records(tmp_path)] == [1]
    later = run(PLAIN, 3, ds, tmp_path, weights)
    assert later.status == "diverged" and later.records == [] and later.epoch == 1


# ------------------------------------------------------------ checkpoints
def test_a_crash_while_saving_leaves_the_previous_checkpoint_usable(ds, weights, tmp_path, monkeypatch):
    work = tmp_path / "trial"
    run(PLAIN, 1, ds, work, weights)
    before = json.loads((work / ckpt.CHECKPOINT_JSON).read_text())
    real_replace = os.replace

    def crash_on_commit(src, dst):
        if str(dst).endswith(ckpt.CHECKPOINT_JSON):
            raise OSError("simulated crash between temp write and replace")
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", crash_on_commit)
    with pytest.raises(OSError, match="simulated crash"):
        run(PLAIN, 2, ds, work, weights)
    monkeypatch.setattr(ckpt.os, "replace", real_replace)
    # the committed checkpoint is still epoch 1 and its tensors are intact
    state = ckpt.read_state(work)
    assert state["epoch"] == 1 and state["tensors"] == before["tensors"]
    ckpt.load_checkpoint(work)
    assert not list(work.glob("*.tmp"))  # leftovers cleaned on load
    # continuing from it reproduces an uninterrupted run
    resumed = run(PLAIN, 2, ds, work, weights)
    assert [r.epoch for r in resumed.records] == [2]
    straight = run(PLAIN, 2, ds, tmp_path / "straight", weights)
    assert metrics(read_records(work)) == metrics(straight.records)
    assert_same_checkpoint(work, tmp_path / "straight")
    assert len(list(work.glob("tensors-*.safetensors"))) == 1


def test_checkpoint_is_safetensors_and_json_only(ds, weights, tmp_path):
    run(PLAIN.replace(opt="momentum"), 1, ds, tmp_path, weights)
    # the trainer's lock file is empty: it only serialises trainers of the trial
    assert (tmp_path / LOCK_FILE).stat().st_size == 0
    names = sorted(p.name for p in tmp_path.iterdir() if p.name != LOCK_FILE)
    assert names[0] == ckpt.CHECKPOINT_JSON and names[1] == RECORDS_FILE
    assert names[2].startswith("tensors-") and names[2].endswith(".safetensors") and len(names) == 3
    state = ckpt.read_state(tmp_path)
    assert state["config"] == PLAIN.replace(opt="momentum").to_dict() and state["epoch"] == 1
    assert any(k.endswith("momentum_buffer") for k in tensors_of(tmp_path))


def test_one_trainer_at_a_time_per_trial(ds, weights, tmp_path):
    """A second trainer of the same trial (e.g. a resumed run's worker while a dead
    driver's worker still finishes its epoch) waits for the first to let go."""
    done: list[Any] = []
    with trial_lock(tmp_path):
        t = threading.Thread(target=lambda: done.append(run(PLAIN, 1, ds, tmp_path, weights)))
        t.start()
        time.sleep(1.5)
        assert t.is_alive() and not ckpt.has_checkpoint(tmp_path)  # blocked, nothing written
    t.join(timeout=120)
    assert not t.is_alive() and done[0].epoch == 1 and ckpt.has_checkpoint(tmp_path)


# -------------------------------------------------------------- evaluator
def test_trainer_evaluator_speaks_the_protocol(ds, weights, tmp_path):
    ev = TrainerEvaluator(ds, tmp_path, max_epochs=2, num_threads=1, weights_paths={MODEL: weights})
    assert isinstance(ev, Evaluator)
    r1 = ev.advance(Step("t1", PLAIN, 1))
    assert r1.status == "ok" and r1.last_epoch == 1 and (tmp_path / "t1" / ckpt.CHECKPOINT_JSON).exists()
    r2 = ev.advance(Step("t1", PLAIN, 3))
    assert r2.status == "ended" and r2.last_epoch == 2 and "max_epochs" in r2.reason
    changed = ev.advance(Step("t1", PLAIN.replace(lr=0.5), 2))
    assert changed.status == "failed" and "different configuration" in changed.reason
    unknown = ev.advance(Step("t2", Config(model="no_such_model_xyz"), 1))
    assert unknown.status == "failed" and "no_such_model_xyz" in unknown.reason
    bad_id = ev.advance(Step("../escape", PLAIN, 1))
    assert bad_id.status == "failed" and "trial id" in bad_id.reason
