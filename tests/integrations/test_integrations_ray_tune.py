"""Ray Tune + hubtune's quicktune: a user's own trainable, paused and resumed from its checkpoint.

A real local Ray instance runs a tiny torch model on scikit-learn's digits whose
``lr``, ``batch_size`` and ``weight_decay`` come from hubtune's configurations;
:class:`FreezeThawScheduler` pauses each trial at the epoch the optimizer asked
for and resumes the one it asks next, from the trial's last checkpoint.
"""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray", reason="needs Ray Tune (pip install 'hubtune[ray]')")
tune = pytest.importorskip("ray.tune")

from hubtune.core.errors import RunError  # noqa: E402
from hubtune.integrations.ray_tune import FreezeThawScheduler, QuickTuneSearcher  # noqa: E402
from tests.helpers.raytune import train  # noqa: E402

DATASET = {"n_images": 500, "n_classes": 10, "mean_resolution": 8, "channels": 1}


def _fit(searcher: QuickTuneSearcher, scheduler: FreezeThawScheduler, storage) -> object:
    tuner = tune.Tuner(
        tune.with_resources(train, {"cpu": 1}),
        # reuse_actors: a resumed or new trial reuses a worker (no new process per step)
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=-1,
                                    reuse_actors=True,
                                    trial_dirname_creator=lambda t: t.trial_id),
        run_config=tune.RunConfig(storage_path=str(storage), verbose=0),
    )
    return tuner.fit()


def _assert_epochs_continue(searcher: QuickTuneSearcher) -> None:
    """Every hubtune trial's told epochs run 1, 2, 3, ... across its steps (no restart)."""
    for tid in {r.trial_id for r in searcher.results}:
        epochs = [rec.epoch for r in searcher.results if r.trial_id == tid for rec in r.records]
        assert epochs == list(range(1, len(epochs) + 1)), (tid, epochs)


def test_quicktune_drives_ray_trials_step_by_step(local_ray, tmp_path):
    searcher = QuickTuneSearcher(models=["test_resnet", "test_efficientnet"], max_epochs=4,
                                 dataset=DATASET, metric="val_acc", mode="max", max_steps=12)
    scheduler = FreezeThawScheduler(searcher)
    grid = _fit(searcher, scheduler, tmp_path)
    assert len(searcher.results) == 12 and all(r.status == "ok" for r in searcher.results)
    assert {r.step.config.model for r in searcher.results} == {"test_resnet", "test_efficientnet"}
    _assert_epochs_continue(searcher)
    assert scheduler.paused_at  # trials were stopped at the epoch quicktune asked for
    by_id = {r.metrics["trial_id"]: r for r in grid}
    for tid, ray_id in searcher.ray_of.items():
        told = [rec.epoch for r in searcher.results if r.trial_id == tid for rec in r.records]
        df = by_id[ray_id].metrics_dataframe
        assert list(df["epoch"]) == told[-len(df):]  # Ray ran the epochs the optimizer asked for
        assert df["config/lr"].iloc[0] == searcher.results[
            [r.trial_id for r in searcher.results].index(tid)].step.config.lr


def test_trials_are_paused_and_resumed_from_their_checkpoints(local_ray, tmp_path):
    # hubtune's ASHA (over the same finetuning space, through the same searcher) promotes
    # the best of its first three one-epoch trials at step 4: a resume for certain.
    # (quicktune's own runs are the doc example's, tests/docs/test_integrations_docs.py.)
    searcher = QuickTuneSearcher(models=["test_resnet"], max_epochs=4, dataset=DATASET,
                                 metric="val_acc", mode="max", max_steps=5, optimizer="asha")
    scheduler = FreezeThawScheduler(searcher)
    grid = _fit(searcher, scheduler, tmp_path)
    assert len(searcher.results) == 5 and all(r.status == "ok" for r in searcher.results)
    assert scheduler.resumed, scheduler.debug_string()
    _assert_epochs_continue(searcher)
    by_id = {r.metrics["trial_id"]: r for r in grid}
    for ray_id in scheduler.resumed:
        # (with reused actors Ray's dataframe may hold only the rows since the last resume)
        df = by_id[ray_id].metrics_dataframe
        tid = searcher.hub_of[ray_id]
        told = [rec.epoch for r in searcher.results if r.trial_id == tid for rec in r.records]
        assert list(df["epoch"]) == told[-len(df):] and len(told) > scheduler.paused_at[ray_id][0]
        resumed = df[df["resumed_from"] > 0]
        assert len(resumed) > 0  # the trainable loaded its checkpoint
        first = resumed.iloc[0]
        assert first["epoch"] == first["resumed_from"] + 1
        assert int(first["resumed_from"]) in scheduler.paused_at[ray_id]
    config, score, _ = searcher.best()
    assert config is not None and config["model"] == "test_resnet" and 0 < score <= 1


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(RunError, match="mode must be 'max' or 'min'"):
        QuickTuneSearcher(models=["test_resnet"], max_epochs=2, dataset=DATASET, mode="up")
    with pytest.raises(RunError, match="dataset must give n_images and n_classes"):
        QuickTuneSearcher(models=["test_resnet"], max_epochs=2, dataset={"n_images": 5})


def test_searcher_decisions_without_ray_running():
    """The searcher's own bookkeeping: new trials, pauses, a resume wish, repeated epochs, mode."""
    s = QuickTuneSearcher(models=["test_resnet"], max_epochs=4, dataset=DATASET, metric="err",
                          mode="min", optimizer="asha", max_steps=10)
    scores = {"r1": 0.2, "r2": 0.6, "r3": 0.5}  # error rates: r1 is the best
    decisions = []
    for ray_id, err in scores.items():
        config = s.suggest(ray_id)
        assert isinstance(config, dict) and config["max_epochs"] == 4
        assert config["hubtune_trial_id"] == s.hub_of[ray_id]
        decisions.append(s.observe(ray_id, {"err": err, "epoch": 1}))
        assert s.observe(ray_id, {"err": err, "epoch": 1}) == "continue"  # told once only
    assert decisions == ["pause", "pause", "pause"]
    assert [r.records[0].score for r in s.results] == [pytest.approx(1 - e) for e in scores.values()]
    assert s.resume == [s.hub_of["r1"]]  # ASHA promotes the best: resume r1, no new trial
    assert s.suggest("r4") is None and "r4" not in s.hub_of
    assert s.best()[1] == pytest.approx(0.8)


def test_a_spent_budget_finishes_the_search():
    s = QuickTuneSearcher(models=["test_resnet"], max_epochs=2, dataset=DATASET, budget_s=0.0)
    assert s.suggest("r1") == "FINISHED" and s.finished()
