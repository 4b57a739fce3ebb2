"""Ray Tune + hubtune's quicktune on a real local Ray instance: freeze-thaw pauses and a
resume from the trial's checkpoint, and an experiment interrupted (SIGINT, as Ctrl+C)
then continued with ``Tuner.restore`` that tells the optimizer exactly the steps an
uninterrupted experiment tells.

The trainable (tests/helpers/raytune.py) is deterministic: each epoch is seeded by
its number (so an epoch trained after a restore from a checkpoint is the epoch an
uninterrupted trial trains), and it reports its own cost (``time_this_iter_s``, 1 s
an epoch, which Ray keeps), so quicktune's cost model sees the same numbers in both
experiments.
quicktune (pool of 3 candidates, no neighbours, no default-config start, no per-task
calibration: the scenario below is this sequence, the calibration has its own tests in
tests/optim/test_qt_calibration.py) pauses six one-epoch trials, then resumes one of them from its
epoch-1 checkpoint (steps 7 and 8 continue it to epochs 2 and 4).
"""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="needs Ray Tune (pip install 'hubtune[ray]')")
tune = pytest.importorskip("ray.tune")

from hubtune.integrations.ray_tune import FreezeThawScheduler, QuickTuneSearcher  # noqa: E402
from tests.helpers.raytune import train  # noqa: E402

DATASET = {"n_images": 500, "n_classes": 10, "mean_resolution": 8, "channels": 1}
ARGS = {"models": ["test_resnet"], "max_epochs": 4, "dataset": DATASET, "metric": "val_acc",
        "mode": "max", "max_steps": 8,
        "optimizer_options": {"pool_size": 3, "neighbours_every": 1000,
                              "start_with_defaults": False,
                              "calibrate_new": None, "calibrate_continue": None}}


class InterruptAfter(tune.Callback):
    """Press Ctrl+C (SIGINT to the driver) when the ``n``-th trial starts (the trials
    before it paused, the ``n``-th mid-epoch), once: ``flag`` is written then
    (``Tuner.restore`` brings this callback back with the experiment)."""

    def __init__(self, n: int, flag: Path) -> None:
        self.n, self.flag, self.started = n, str(flag), 0

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started += 1
        if self.started == self.n and not os.path.exists(self.flag):
            Path(self.flag).write_text("interrupted")
            os.kill(os.getpid(), signal.SIGINT)


def _tuner(searcher: QuickTuneSearcher, storage: Path, name: str, callbacks=()) -> object:
    return tune.Tuner(
        tune.with_resources(train, {"cpu": 1}),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=FreezeThawScheduler(searcher),
                                    num_samples=-1, reuse_actors=True,
                                    trial_dirname_creator=lambda t: t.trial_id),
        run_config=tune.RunConfig(storage_path=str(storage), name=name, verbose=0,
                                  callbacks=list(callbacks)),
    )


def _told(results: list) -> list[tuple[str, int, list[int], list[float]]]:
    return [(r.trial_id, r.step.to_epoch, [x.epoch for x in r.records],
             [round(x.score, 6) for x in r.records]) for r in results]


def _saved_state(experiment: Path) -> dict:
    """The searcher state Ray saved last (``searcher-state-*.pkl``: JSON written by ``save``)."""
    files = sorted(experiment.glob("searcher-state-*.pkl"))
    assert files, sorted(p.name for p in experiment.iterdir())
    return json.loads(files[-1].read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def uninterrupted(local_ray, tmp_path_factory):
    searcher = QuickTuneSearcher(**ARGS)
    storage = tmp_path_factory.mktemp("ray-uninterrupted")
    grid = _tuner(searcher, storage, "qt").fit()
    return searcher, grid, storage / "qt"


def test_quicktune_pauses_trials_and_resumes_one_from_its_checkpoint(uninterrupted):
    searcher, grid, _ = uninterrupted
    assert len(searcher.results) == 8 and all(r.status == "ok" for r in searcher.results)
    assert len(searcher.paused_at) == 6 and len(searcher.resumed) == 1, searcher.paused_at
    (ray_id,) = searcher.resumed
    tid = searcher.hub_of[ray_id]
    steps = [r for r in searcher.results if r.trial_id == tid]
    assert len(steps) >= 2 and steps[0].step.to_epoch == 1 < steps[1].step.to_epoch
    to = steps[-1].step.to_epoch  # paused at epoch 1, continued to epoch ``to``
    assert [x.epoch for r in steps for x in r.records] == list(range(1, to + 1))
    df = {r.metrics["trial_id"]: r for r in grid}[ray_id].metrics_dataframe
    resumed = df[df["resumed_from"] > 0]  # the trainable loaded its epoch-1 checkpoint
    assert list(resumed["epoch"]) == list(range(2, to + 1)) and set(resumed["resumed_from"]) == {1}


def test_an_interrupted_experiment_restored_tells_what_the_uninterrupted_one_told(
        uninterrupted, tmp_path):
    ref, _, ref_dir = uninterrupted
    searcher = QuickTuneSearcher(**ARGS)
    _tuner(searcher, tmp_path, "qt", callbacks=[InterruptAfter(5, tmp_path / "interrupted")]).fit()
    experiment = tmp_path / "qt"
    assert (tmp_path / "interrupted").exists()
    before = _saved_state(experiment)
    assert 3 <= len(before["results"]) < 8  # stopped mid-search, its state saved as JSON
    restored = tune.Tuner.restore(str(experiment), trainable=tune.with_resources(train, {"cpu": 1}))
    grid = restored.fit()
    after = _saved_state(experiment)
    assert after["kind"] == "hubtune.ray_tune.QuickTuneSearcher" and after["exhausted"]
    from hubtune.protocol.codec import result_from_dict

    told = _told([result_from_dict(r) for r in after["results"]])
    assert told == _told(ref.results)
    assert told[: len(before["results"])] == _told(
        [result_from_dict(r) for r in before["results"]])
    # the freeze-thaw resume happened after the restore, from the paused trial's checkpoint
    assert len(after["resumed"]) == 1 and len(after["paused_at"]) == 6
    # Ray re-queued the paused trials as PENDING on restore: they were held, not run on
    # (each trial's last reported epoch is the last one told for it)
    last_told = {t[0]: t[2][-1] for t in told}
    hub_of = after["hub_of"]
    reported = {hub_of[r.metrics["trial_id"]]: r.metrics["epoch"] for r in grid}
    assert reported == last_told, (reported, told, before["hub_of"], before["steps"])
    assert _saved_state(ref_dir)["optimizer"]["journal"] and all(
        math.isfinite(s) for t in told for s in t[3])
