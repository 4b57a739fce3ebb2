"""QuickTune optimizer: ask/tell protocol, exact resume, async safety, end-to-end on replayed data."""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pytest
import torch

from hubtune.optim.quicktune import (
    QuickTune,
    QuickTuneError,
    QuickTuneSettings,
    expected_improvement,
    records_from_scores,
)
from hubtune.protocol.steps import Step, StepResult
from hubtune.surrogate.metatrain import MetaTrainSettings, metatrain
from tests.helpers.quicktune import TEST, TRAIN, describe, meta, needs_shared


@lru_cache(maxsize=1)
def surrogate():
    torch.set_num_threads(1)
    return metatrain(meta().only(TRAIN), describe, seed=0, settings=MetaTrainSettings(steps=300))


def _optimizer(seed: int = 0) -> QuickTune:
    runs = meta()[TEST]
    return QuickTune(
        surrogate(), max_epochs=50, candidates=list(zip(runs.run_ids, runs.configs, strict=True)),
        meta_features=runs.meta_features, descriptors={}, seed=seed,
    )


def _drive(qt: QuickTune, evaluator, n: int) -> list[tuple[str, int]]:
    decisions = []
    for _ in range(n):
        step = qt.ask()
        if step is None:
            break
        decisions.append((step.trial_id, step.to_epoch))
        qt.tell(evaluator.advance(step))
    return decisions


def test_expected_improvement_closed_form():
    ei = expected_improvement(np.array([0.5, 0.5, 0.7]), np.array([1e-12, 0.1, 0.1]), 0.6)
    assert ei[0] == pytest.approx(0.0, abs=1e-9)
    # EI of N(0.5, 0.1^2) over 0.6: sigma * (phi(z) + z Phi(z)) with z = -1
    assert ei[1] == pytest.approx(0.1 * (0.2419707 - 0.1586553), rel=1e-4)
    assert ei[2] > ei[1]


@needs_shared
def test_state_round_trip_resumes_with_identical_decisions():
    from hubtune.bench.simulator import SimulatedEvaluator

    runs = meta()[TEST]
    a = _optimizer()
    ev_a = SimulatedEvaluator(runs)
    _drive(a, ev_a, 12)
    state = json.loads(json.dumps(a.state_dict()))  # must be JSON-serialisable
    b = _optimizer()
    b.load_state_dict(state)
    ev_b = SimulatedEvaluator(runs)
    ev_b.epochs = dict(ev_a.epochs)
    assert _drive(a, ev_a, 10) == _drive(b, ev_b, 10)
    assert a.incumbent() == b.incumbent()


@needs_shared
def test_cost_cooling_measures_the_spent_share_from_the_first_known_budget_across_a_resume():
    runs = meta()[TEST]
    cands = list(zip(runs.run_ids, runs.configs, strict=True))

    def fresh() -> QuickTune:
        return QuickTune(surrogate(), max_epochs=50, candidates=cands, meta_features=runs.meta_features,
                         descriptors={}, seed=0, settings=QuickTuneSettings(cost_cooling=0.0))

    a = fresh()
    assert a._cost_power(None) == 0.75
    assert a.ask(budget_left=4000.0) is not None
    assert a._cost_power(1000.0) == pytest.approx(0.75 * 0.25)
    b = fresh()
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b._cost_power(1000.0) == pytest.approx(0.75 * 0.25)


@needs_shared
def test_never_proposes_a_pending_trial_and_respects_budget():
    qt = _optimizer()
    steps = [qt.ask() for _ in range(6)]
    ids = [s.trial_id for s in steps if s is not None]
    assert len(ids) == 6 and len(set(ids)) == 6
    fresh = _optimizer()
    assert fresh.ask(budget_left=1e-3) is None  # no step can finish in a millisecond


@needs_shared
def test_tell_validates_input():
    qt = _optimizer()
    cfg = meta()[TEST].configs[0]
    with pytest.raises(QuickTuneError, match="unknown trial"):
        qt.tell(StepResult(Step("nope", cfg, 1), records_from_scores([0.5], [1.0])))
    with pytest.raises(QuickTuneError, match="not a QuickTune state"):
        qt.load_state_dict({"kind": "random"})


@needs_shared
def test_finds_a_good_config_quickly_where_random_search_does_not(tmp_path, monkeypatch):
    from hubtune.bench.runner import run_one
    from hubtune.optim.qt_factory import make_quicktune
    from hubtune.optim.registry import MethodSpec, get_method

    monkeypatch.setenv("HUBTUNE_SURROGATE_CACHE", str(tmp_path))
    spec = MethodSpec("quicktune", lambda ctx: make_quicktune(ctx, metatrain_overrides={"steps": 300}),
                      needs_metadata=True)
    runs = meta()[TEST]
    budget = 7200.0  # two hours of simulated time on a ~19 s/epoch dataset
    qt = run_one(spec, runs, seed=0, budget_seconds=budget, train_metadata=meta().only(TRAIN),
                 overhead_clock="none")
    rnd = [run_one(get_method("random"), runs, seed=s, budget_seconds=budget, overhead_clock="none")
           for s in range(5)]
    rnd_regret = float(np.mean([t.final_regret for t in rnd]))
    assert qt.final_regret < 0.1
    assert rnd_regret > 0.2 and qt.final_regret < rnd_regret / 2


def _replayed_result(step: Step, curve: np.ndarray, seconds: np.ndarray, start: int) -> StepResult:
    # Recorded epochs of a real run stand in for training the proposed config.
    end = min(step.to_epoch, int(np.isfinite(curve).sum()))
    recs = records_from_scores(curve[start:end], seconds[start:end], start_epoch=start)
    return StepResult(step, recs, "ok" if end == step.to_epoch else "ended", seconds=float(sum(seconds[start:end])))


@needs_shared
def test_search_space_mode_pool_neighbours_and_resume():
    from hubtune.space.searchspace import SearchSpace
    from hubtune.surrogate.cache import load_default_surrogate

    runs = meta()[TEST]
    long = np.where(runs.lengths == 50)[0]
    space = SearchSpace(["edgenext_small", "volo_d1_384"], max_batch_size=64)

    def build() -> QuickTune:
        return QuickTune(load_default_surrogate(), max_epochs=50, space=space,
                         meta_features=runs.meta_features, seed=5,
                         settings=None)

    def drive(qt: QuickTune, n: int, where: dict[str, int]) -> list[tuple[str, int]]:
        out = []
        for _ in range(n):
            step = qt.ask()
            assert step is not None and space.contains(step.config)
            row = long[int(step.config.key(), 16) % len(long)]
            res = _replayed_result(step, runs.scores[row], runs.seconds[row], where.get(step.trial_id, 0))
            where[step.trial_id] = res.last_epoch
            qt.tell(res)
            out.append((step.trial_id, step.to_epoch))
        return out

    a = build()
    assert a.n_candidates == 256  # the initial pool
    pos_a: dict[str, int] = {}
    drive(a, 10, pos_a)
    assert a.n_candidates > 256 + 10  # topped up and extended with one-exchange neighbours
    state = json.loads(json.dumps(a.state_dict()))
    b = build()
    b.load_state_dict(state)
    assert b.n_candidates == a.n_candidates
    assert drive(a, 6, dict(pos_a)) == drive(b, 6, dict(pos_a))


def test_search_space_mode_starts_with_each_models_default_config():
    from hubtune.space.config import Config
    from hubtune.space.searchspace import SearchSpace
    from hubtune.surrogate.cache import load_default_surrogate

    space = SearchSpace(["edgenext_small", "volo_d1_384"])
    qt = QuickTune(load_default_surrogate(), max_epochs=10, space=space, seed=0)
    first = [qt.ask(), qt.ask()]
    assert {s.config for s in first} == {Config(model="edgenext_small"), Config(model="volo_d1_384")}
    assert all(s.to_epoch == 1 for s in first)
    # then the surrogate's own proposals
    third = qt.ask()
    assert third is not None and third.config not in {s.config for s in first}
    # the user's pinned values apply to the anchors too
    pinned = SearchSpace(["edgenext_small"], fixed={"lr": 1e-2})
    qt2 = QuickTune(load_default_surrogate(), max_epochs=10, space=pinned, seed=0)
    anchor = qt2.ask()
    assert anchor.config == Config(model="edgenext_small", lr=1e-2) and anchor.to_epoch == 1


def test_search_space_pool_holds_no_configs_that_train_identically():
    from hubtune.space.searchspace import SearchSpace
    from hubtune.surrogate.cache import load_default_surrogate

    space = SearchSpace(["edgenext_small"], choices={"warmup_epochs": [0], "mixup_prob": [0.0]})
    qt = QuickTune(load_default_surrogate(), max_epochs=10, space=space, seed=0)
    keys = [t.config.effective_key() for t in qt.pool.trials]
    assert len(keys) == len(set(keys))


def test_endgame_starts_no_config_that_cannot_reach_the_incumbents_epoch():
    from hubtune.space.searchspace import SearchSpace
    from hubtune.surrogate.cache import load_default_surrogate

    def run(endgame: bool, budget_left: float) -> list[Step]:
        space = SearchSpace(["edgenext_small", "volo_d1_384"])
        qt = QuickTune(load_default_surrogate(), max_epochs=10, space=space, seed=0,
                       settings=QuickTuneSettings(endgame=endgame))
        # both default anchors trained: one to epoch 4 (the incumbent), one to epoch 1
        for tid, scores in ((qt.ask().trial_id, [0.6, 0.7, 0.75, 0.8]), (qt.ask().trial_id, [0.5])):
            t = qt.pool[tid]
            qt.tell(StepResult(Step(tid, t.config, len(scores)), records_from_scores(scores, [10.0] * len(scores))))
        steps = []
        for _ in range(5):
            step = qt.ask(budget_left=budget_left)
            if step is None:
                break
            steps.append(step)
        return steps, {t.trial_id for t in qt.pool.trials if t.scores}

    # 25 s left at ~10 s per epoch: a new config reaches epoch 2 at most, the incumbent is at 4
    steps, started = run(True, 25.0)
    assert steps and all(s.trial_id in started for s in steps)
    # without the rule, the same state does start never-trained configs
    steps, started = run(False, 25.0)
    assert any(s.trial_id not in started for s in steps)
    # with plenty of budget left the rule does not bind
    steps, started = run(True, 1e5)
    assert any(s.trial_id not in started for s in steps)


def test_finish_reserve_keeps_the_time_to_finish_the_most_promising_trial():
    """A short run that would spend its end on one-epoch probes finishes a trial instead."""
    from hubtune.space.searchspace import SearchSpace
    from hubtune.surrogate.cache import load_default_surrogate

    def run(reserve: bool, budget: float, a_scores: list[float]):
        space = SearchSpace(["edgenext_small", "volo_d1_384"])
        qt = QuickTune(load_default_surrogate(), max_epochs=8, space=space, seed=0,
                       settings=QuickTuneSettings(finish_reserve=reserve, schedule_epochs=8,
                                                  cost_quantile=None))  # exact 10 s epochs here
        a, b = qt.ask().trial_id, qt.ask().trial_id  # the two default anchors
        for tid, scores in ((a, a_scores), (b, [0.5])):
            t = qt.pool[tid]
            qt.tell(StepResult(Step(tid, t.config, len(scores)),
                               records_from_scores(scores, [10.0] * len(scores))))
        left, steps = budget, []
        while (step := qt.ask(budget_left=left)) is not None:
            n = qt.pool[step.trial_id].epoch
            k = step.to_epoch - n
            info = step.info
            if "reserved_for" in info:  # the reserved trial can still be finished afterwards
                kept = qt.pool[info["reserved_for"]]
                after = left - 10.0 * k
                assert step.trial_id == kept.trial_id or \
                    after >= 10.0 * (8 - kept.epoch) - 1e-6
            scores = [0.6 + 0.01 * (n + j) for j in range(k)]
            qt.tell(StepResult(step, records_from_scores(scores, [10.0] * k, start_epoch=n)))
            left -= 10.0 * k
            steps.append(step)
        return qt, a, steps

    # A stands at epoch 3 of 8 (10 s per epoch) with a flat curve: without the reserve the
    # remaining 55 s go to one- and two-epoch probes and no trial reaches the end
    qt, a, steps = run(False, 55.0, [0.6, 0.58, 0.6])
    assert steps and steps[0].trial_id != a
    assert max(t.epoch for t in qt.pool.trials) < 8
    # with it, the 50 s that finishing A takes are kept: A is trained to the end at once
    qt, a, steps = run(True, 55.0, [0.6, 0.58, 0.6])
    assert steps[0].trial_id == a and steps[0].info["reserved_for"] == a
    assert steps[0].info["reserved_seconds"] == pytest.approx(50.0, abs=1.0)
    assert qt.pool[a].epoch == 8
    # with more time, probes run first, and a trial is still trained to the end
    qt, a, steps = run(True, 80.0, [0.6, 0.58, 0.6])
    assert any(s.trial_id != a for s in steps)
    assert max(t.epoch for t in qt.pool.trials) == 8
    # once a finished trial holds the best final score, nothing is reserved
    qt, a, steps = run(True, 55.0, [0.6, 0.7, 0.75, 0.8, 0.85, 0.88, 0.9, 0.93])
    assert steps and "reserved_for" not in steps[0].info


def test_finish_reserve_gives_every_step_to_one_trial_when_none_can_be_finished():
    """The last minutes of a run where no started trial can reach max_epochs any more: with the
    reserve on, no probe is opened (it could only end unfinished); each step goes to the started
    trial predicted to end best, so the exported checkpoint is as far along its schedule as it can be."""
    from hubtune.space.searchspace import SearchSpace
    from hubtune.surrogate.cache import load_default_surrogate

    def run(reserve: bool):
        space = SearchSpace(["edgenext_small", "volo_d1_384"])
        qt = QuickTune(load_default_surrogate(), max_epochs=8, space=space, seed=0,
                       settings=QuickTuneSettings(finish_reserve=reserve, schedule_epochs=8, cost_quantile=None))
        a, b = qt.ask().trial_id, qt.ask().trial_id
        for tid, scores in ((a, [0.6, 0.62, 0.63]), (b, [0.5])):
            qt.tell(StepResult(Step(tid, qt.pool[tid].config, len(scores)),
                               records_from_scores(scores, [10.0] * len(scores))))
        left, steps = 40.0, []  # finishing a takes 50 s, b 70 s: neither fits
        while (step := qt.ask(budget_left=left)) is not None:
            if reserve:  # the whole budget left is kept for the trial the step goes to
                assert step.info["reserved_for"] == step.trial_id
                assert step.info["reserved_seconds"] == pytest.approx(left)
            n = qt.pool[step.trial_id].epoch
            k = step.to_epoch - n
            qt.tell(StepResult(step, records_from_scores([0.63 + 0.005 * j for j in range(k)], [10.0] * k,
                                                         start_epoch=n)))
            left -= 10.0 * k
            steps.append(step)
        return steps, {a, b}

    steps, started = run(True)
    assert steps and all(s.trial_id in started for s in steps)
    steps, started = run(False)  # without it, the same state opens probes of new configs
    assert any(s.trial_id not in started for s in steps)


def test_with_the_finish_reserve_a_default_config_starts_only_if_it_could_be_finished():
    """Default-config anchors are started before EI per second decides; with the reserve on they
    obey the rules of any new config: a default that cannot reach max_epochs in the budget left
    is not started, and the remaining defaults become ordinary candidates."""
    from hubtune.space.searchspace import SearchSpace
    from hubtune.surrogate.cache import load_default_surrogate

    def second_step(reserve: bool, left: float) -> tuple[Step, str]:
        space = SearchSpace(["edgenext_small", "volo_d1_384"])
        qt = QuickTune(load_default_surrogate(), max_epochs=8, space=space, seed=0,
                       settings=QuickTuneSettings(finish_reserve=reserve, schedule_epochs=8, cost_quantile=None))
        a = qt.ask(budget_left=1e5)
        qt.tell(StepResult(a, records_from_scores([0.6], [10.0])))
        return qt.ask(budget_left=left), a.trial_id

    anchor_why = "default config of the model (strong start)"
    step, _ = second_step(False, 60.0)
    assert step.info["why"] == anchor_why  # without the reserve the second default starts anyway
    step, a = second_step(True, 60.0)  # 70 s finish the first; the second cannot reach epoch 8
    assert step.info.get("why") != anchor_why and step.trial_id == a
    step, _ = second_step(True, 1e5)  # with time to finish both, the defaults start as before
    assert step.info["why"] == anchor_why


def test_schedule_epochs_present_epochs_as_a_fraction_of_the_schedule():
    from hubtune.surrogate.features import REFERENCE_EPOCHS, curve_features, fidelity_features

    # the last epoch of an 8-epoch schedule looks like the last of a 50-epoch one
    np.testing.assert_allclose(fidelity_features(7, 8, schedule_epochs=8),
                               fidelity_features(43.75, REFERENCE_EPOCHS), rtol=1e-6)
    np.testing.assert_allclose(fidelity_features(7, 8, schedule_epochs=None), fidelity_features(7, 8), rtol=1e-6)
    # slopes are per meta-dataset epoch: 6.25x flatter on the 8-epoch schedule
    scores = [0.5, 0.6, 0.7]
    assert curve_features(scores, schedule_epochs=8)[5] == pytest.approx(curve_features(scores)[5] / 6.25)


def test_val_size_adds_sampling_noise_to_observed_scores():
    from hubtune.space.searchspace import SearchSpace
    from hubtune.surrogate.cache import load_default_surrogate

    def posterior(val_size):
        qt = QuickTune(load_default_surrogate(), max_epochs=8, space=SearchSpace(["edgenext_small"]),
                       seed=0, settings=QuickTuneSettings(val_size=val_size, schedule_epochs=8))
        tid = qt.ask().trial_id
        t = qt.pool[tid]
        qt.tell(StepResult(Step(tid, t.config, 2), records_from_scores([0.9, 0.6], [5.0, 5.0])))
        x, y = qt._observations()
        return qt.surrogate.predict(x, y, x, extra_noise=qt._sampling_noise(y))

    (m_exact, s_exact), (m_noisy, s_noisy) = posterior(None), posterior(50)
    # on 50 validation images a score of 0.6 is +-7 points: the GP trusts it less
    assert (s_noisy > s_exact).all()
    assert abs(m_noisy[0] - 0.6) > abs(m_exact[0] - 0.6)


def test_cost_quantile_keeps_steps_whose_likely_duration_does_not_fit():
    """After first steps ran twice as long as predicted, a new config is not started
    in a remaining budget its point prediction fits but its likely duration does not."""
    import math

    from hubtune.optim.quicktune import COST_ERROR_PRIOR_STD
    from hubtune.space.searchspace import SearchSpace
    from hubtune.surrogate.cache import load_default_surrogate

    def state(quantile: float | None) -> QuickTune:
        # installments off: the case is a whole step valued and run as one (a shorter
        # budget would otherwise change which step wins for its longer horizon)
        qt = QuickTune(load_default_surrogate(), max_epochs=8, space=SearchSpace(["edgenext_small"]),
                       seed=0, settings=QuickTuneSettings(schedule_epochs=8, cost_quantile=quantile,
                                                          installment_growth=None))
        anchor = qt.ask()  # the default config, trained to the end: nothing left to continue there
        qt.tell(StepResult(anchor, records_from_scores([0.9] * 8, [10.0] * 8)))
        for _ in range(4):  # first steps of new configs, each twice its predicted seconds
            step = qt.ask(budget_left=1e5)
            assert qt.pool[step.trial_id].epoch == 0
            k = step.to_epoch
            real = 2.0 * step.info["cost"]
            qt.tell(StepResult(step, records_from_scores([0.3] * k, [real / k] * k), seconds=real))
        return qt

    fresh = QuickTune(load_default_surrogate(), max_epochs=8, space=SearchSpace(["edgenext_small"]), seed=0)
    assert fresh._cost_margin("start") == pytest.approx(math.exp(1.2815516 * COST_ERROR_PRIOR_STD), rel=1e-5)
    assert state(0.9)._cost_margin("start") > 1.9  # learnt from the four 2x errors
    assert state(None)._cost_margin("start") == 1.0

    # with time to spare the margin changes nothing
    a, b = state(None).ask(budget_left=1e5), state(0.9).ask(budget_left=1e5)
    assert (a.trial_id, a.to_epoch) == (b.trial_id, b.to_epoch)
    plain = state(None)
    assert plain.pool[a.trial_id].epoch == 0  # a new config
    # 1.2x its point prediction left: the point rule starts it, the quantile rule does not
    left = 1.2 * a.info["cost"]
    assert state(None).ask(budget_left=left).trial_id == a.trial_id
    qt = state(0.9)
    step = qt.ask(budget_left=left)
    # (a shorter step of the same config that likely fits may be taken: fit_horizon)
    assert step is None or ((step.trial_id, step.to_epoch) != (a.trial_id, a.to_epoch)
                            and step.info["cost_bound"] <= left)
    # the errors are part of the state: a resumed optimizer has the same margin
    again = state(0.9)
    again.load_state_dict(json.loads(json.dumps(qt.state_dict())))
    assert again._cost_margin("start") == pytest.approx(qt._cost_margin("start"))


def test_linear_probing_head_only_epochs_do_not_count_as_the_trials_cost():
    """The head-only epochs of a linear-probing config are cheap; what the next steps cost
    comes from the cost model until the trial has run an epoch of full finetuning."""
    from hubtune.space.config import linear_probing_epochs
    from hubtune.space.searchspace import SearchSpace
    from hubtune.surrogate.cache import load_default_surrogate

    qt = QuickTune(load_default_surrogate(), max_epochs=10, space=SearchSpace(["edgenext_small"]),
                   seed=0, settings=QuickTuneSettings(schedule_epochs=10))
    lp = qt.ask().config.replace(linear_probing=True)
    head_only = linear_probing_epochs(10)
    assert head_only == 2
    qt.tell(StepResult(Step("lp", lp, head_only), records_from_scores([0.5, 0.6], [1.0, 1.0]), seconds=2.0))
    i = qt.pool.index["lp"]
    assert qt._cost_per_epoch()[i] == pytest.approx(np.exp(qt.pool.cost_prior[i]))
    assert np.exp(qt.pool.cost_prior[i]) != pytest.approx(1.0, rel=0.2)
    # its first full-finetuning epoch is what its later epochs will cost
    qt.tell(StepResult(Step("lp", lp, 3), records_from_scores([0.7], [12.0], start_epoch=2), seconds=12.0))
    assert qt._cost_per_epoch()[i] == pytest.approx(12.0)
    # a config without linear probing is measured from its first epoch
    plain = lp.replace(linear_probing=False, lr=5e-4)
    qt.tell(StepResult(Step("plain", plain, 1), records_from_scores([0.5], [3.0]), seconds=3.0))
    assert qt._cost_per_epoch()[qt.pool.index["plain"]] == pytest.approx(3.0)


def test_noisy_scores_measure_improvement_against_the_best_posterior_mean():
    """With val_size set, EI's bar is the GP's smoothed best, below a lucky epoch's score;
    without it (tabular replays), the best observed score."""
    from hubtune.space.searchspace import SearchSpace
    from hubtune.surrogate.cache import load_default_surrogate

    def bar(val_size: int | None) -> tuple[float, float]:
        qt = QuickTune(load_default_surrogate(), max_epochs=8, space=SearchSpace(["edgenext_small"]),
                       seed=0, settings=QuickTuneSettings(schedule_epochs=8, val_size=val_size))
        anchor = qt.ask()
        # a smooth curve with one lucky epoch, as a 300-image validation split gives
        scores = [0.80, 0.84, 0.86, 0.93, 0.87, 0.88]
        qt.tell(StepResult(anchor, records_from_scores(scores, [10.0] * len(scores))))
        step = qt.ask(budget_left=1e5)
        return step.info["incumbent"], max(scores)

    smoothed, lucky = bar(300)
    assert smoothed < lucky - 0.01
    assert smoothed > 0.8
    plain, lucky = bar(None)
    assert plain == pytest.approx(lucky)


def test_a_short_schedules_candidates_are_encoded_in_reference_epochs():
    """The pool's static rows present a 2-of-8-epoch warm-up as the 12.5 reference epochs it stands for."""
    from hubtune.optim.quicktune import QuickTune, QuickTuneSettings
    from hubtune.space.config import Config
    from hubtune.space.searchspace import SearchSpace
    from hubtune.surrogate.cache import load_default_surrogate

    sur = load_default_surrogate()
    space = SearchSpace(["mobilenetv2_100"], schedule_epochs=8)
    qt = QuickTune(sur, max_epochs=8, space=space, settings=QuickTuneSettings(schedule_epochs=8))
    cfg = Config(model="mobilenetv2_100", warmup_epochs=2, warmup_lr=1e-6)
    qt.pool.add([("w2", cfg)])
    got = qt.pool.static[qt.pool.index["w2"]]
    enc = sur.features.encoder
    i = enc.names.index("warmup_epochs")
    assert got[i] == pytest.approx(enc.encode(cfg.replace(warmup_epochs=10))[i])
    assert got[i] != pytest.approx(enc.encode(cfg)[i])
