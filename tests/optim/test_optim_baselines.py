"""Baseline methods on small hand-made tables: random, ASHA, Hyperband, one-epoch-top-k,
largest-model-default, best-on-average (ask/tell driven through the real simulator)."""

from __future__ import annotations

import json
import math

import pytest

from hubtune.bench.runner import make_context, run_one
from hubtune.bench.simulator import SimulatedEvaluator
from hubtune.hub.descriptor import ModelDescriptor
from hubtune.metadata import DatasetRuns, MetaDataset
from hubtune.optim.asha import ASHA, Hyperband
from hubtune.optim.baselines import (
    OneEpochTopK,
    fidelity_rungs,
    make_best_on_average,
    make_largest_model_default,
)
from hubtune.optim.random_search import RandomSearch
from hubtune.optim.registry import get_method
from hubtune.protocol.context import TaskContext
from hubtune.space.config import Config
from hubtune.space.searchspace import SearchSpace

LRS = [1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 1e-1]
MAX = 10


def table(name: str = "T", n: int = 9, quality=None) -> DatasetRuns:
    """n runs with increasing curves; run i's final quality is ``quality[i]`` (default i/n)."""
    quality = quality or [(i + 1) / (n + 1) for i in range(n)]
    scores = [[q * (0.5 + 0.5 * e / MAX) for e in range(1, MAX + 1)] for q in quality]
    seconds = [[10.0 + i] * MAX for i in range(n)]
    configs = [Config(model=f"m{i % 3}", lr=LRS[i % len(LRS)], batch_size=16 + i) for i in range(n)]
    return DatasetRuns.from_curves(name, [f"r{i}" for i in range(n)], configs, scores, seconds)


def ctx_for(runs: DatasetRuns, seed: int = 0, **kw) -> TaskContext:
    return make_context(runs, seed=seed, budget_seconds=1e6, max_epochs=MAX,
                        descriptors=kw.pop("descriptors", {}), **kw)


def drive(opt, runs, n_steps=10_000):
    """ask/tell loop against the simulator; returns the steps and results in order."""
    ev = SimulatedEvaluator(runs)
    steps, results = [], []
    for _ in range(n_steps):
        step = opt.ask()
        if step is None:
            break
        res = ev.advance(step)
        opt.tell(res)
        steps.append(step)
        results.append(res)
    return steps, results


def test_registry_has_all_baselines():
    for name in ("random", "asha", "hyperband", "one_epoch_topk", "largest_model_default",
                 "best_on_average"):
        assert callable(get_method(name).load())
    assert get_method("best_on_average").needs_metadata
    assert fidelity_rungs(50) == [1, 3, 9, 27, 50] and fidelity_rungs(10) == [1, 3, 9, 10]


def test_random_trains_each_config_to_the_end_without_replacement():
    runs = table()
    steps, results = drive(RandomSearch(ctx_for(runs, seed=1)), runs)
    assert len(steps) == 9 and len({s.trial_id for s in steps}) == 9
    assert all(s.to_epoch == MAX for s in steps)
    assert all(r.last_epoch == MAX for r in results)
    again, _ = drive(RandomSearch(ctx_for(runs, seed=1)), runs)
    other, _ = drive(RandomSearch(ctx_for(runs, seed=2)), runs)
    assert [s.trial_id for s in again] == [s.trial_id for s in steps]
    assert [s.trial_id for s in other] != [s.trial_id for s in steps]


def test_asha_promotes_the_best_and_continues_from_the_checkpoint():
    runs = table()
    opt = ASHA(ctx_for(runs))
    steps, results = drive(opt, runs)
    first_three = [s.trial_id for s in steps[:3]]
    assert all(s.to_epoch == 1 for s in steps[:3])
    # 3 results at rung 0 -> the best of them is promoted to rung 1 (epoch 3)
    assert steps[3].to_epoch == 3
    best = max(first_three, key=lambda t: int(t[1:]))
    assert steps[3].trial_id == best
    assert [r.epoch for r in results[3].records] == [2, 3]  # continued, not restarted
    # in the end every trial is trained to max_epochs (fallback), never twice an epoch
    epochs = {}
    for res in results:
        for rec in res.records:
            assert rec.epoch == epochs.get(res.trial_id, 0) + 1
            epochs[res.trial_id] = rec.epoch
    assert set(epochs.values()) == {MAX}


def test_hyperband_brackets_keep_the_best_with_continuation():
    runs = table()
    steps, results = drive(Hyperband(ctx_for(runs)), runs)
    # bracket s=3 (rungs 1,3,9,10) wants 27 configs: all 9 start at 1 epoch
    assert [s.to_epoch for s in steps[:9]] == [1] * 9
    assert [s.to_epoch for s in steps[9:12]] == [3] * 3
    assert {s.trial_id for s in steps[9:12]} == {"r8", "r7", "r6"}  # top third
    assert [s.trial_id for s in steps[12:13]] == ["r8"] and steps[12].to_epoch == 9
    assert [r.epoch for r in results[12].records] == list(range(4, 10))


def test_one_epoch_topk_sweeps_then_halves():
    runs = table(n=20)
    opt = OneEpochTopK(ctx_for(runs))
    steps, _ = drive(opt, runs)
    assert [s.to_epoch for s in steps[:20]] == [1] * 20
    assert len({s.trial_id for s in steps[:20]}) == 20
    # top ceil(10%) = 2 go to epoch 3, best first; then ceil(2/2) = 1 to 9, then to 10
    assert [(s.trial_id, s.to_epoch) for s in steps[20:24]] == [
        ("r19", 3), ("r18", 3), ("r19", 9), ("r19", 10)]
    # then the rest is continued best-first
    assert (steps[24].trial_id, steps[24].to_epoch) == ("r18", 9)


def test_largest_model_default_orders_by_model_size_and_default_closeness():
    runs = table()
    desc = {m: ModelDescriptor(m, m, "x", p, 224, 1.0, None, "none")
            for m, p in (("m0", 5.0), ("m1", 300.0), ("m2", 50.0))}
    opt = make_largest_model_default(ctx_for(runs, descriptors=desc))
    steps, _ = drive(opt, runs)
    models = [runs.configs[int(s.trial_id[1:])].model for s in steps]
    assert models[:3] == ["m1", "m2", "m0"]
    # within m1 (runs 1, 4, 7: lr 5e-5, 1e-3, 5e-2) the default lr 1e-3 comes first
    assert steps[0].trial_id == "r4" and all(s.to_epoch == MAX for s in steps)


def test_best_on_average_uses_meta_training_scores():
    test = table("TEST")
    # on the training datasets, the config of r2 is by far the best, r8 the worst
    q = [0.1] * 9
    q[2], q[8] = 0.9, 0.01
    train = MetaDataset([table("A", quality=q), table("B", quality=q)])
    opt = make_best_on_average(ctx_for(test, train_metadata=train))
    steps, _ = drive(opt, test)
    assert steps[0].trial_id == "r2" and steps[-1].trial_id == "r8"
    # nearest neighbour when the exact config is absent from the training tables
    shifted = DatasetRuns.from_curves(
        "TEST2", [f"s{i}" for i in range(9)],
        [c.replace(weight_decay=1e-3) for c in test.configs],
        [list(test.curve(i)) for i in range(9)], [list(test.cost(i)) for i in range(9)])
    opt2 = make_best_on_average(ctx_for(shifted, train_metadata=train))
    assert opt2.ask().trial_id == "s2"
    with pytest.raises(ValueError, match="needs meta-training data"):
        make_best_on_average(ctx_for(test))


@pytest.mark.parametrize("name", ["random", "asha", "hyperband", "one_epoch_topk",
                                  "largest_model_default"])
def test_state_dict_round_trip_resumes_identically(name):
    runs = table(n=12)
    spec = get_method(name)
    a = spec.make(ctx_for(runs, seed=3))
    ev = SimulatedEvaluator(runs)
    for _ in range(7):
        a.tell(ev.advance(a.ask()))
    state = json.loads(json.dumps(a.state_dict()))
    b = spec.make(ctx_for(runs, seed=3))
    b.load_state_dict(state)
    ev_b = SimulatedEvaluator(runs)
    ev_b.epochs = dict(ev.epochs)
    for _ in range(10):
        sa, sb = a.ask(), b.ask()
        assert (sa is None) == (sb is None)
        if sa is None:
            break
        assert (sa.trial_id, sa.to_epoch) == (sb.trial_id, sb.to_epoch)
        a.tell(ev.advance(sa))
        b.tell(ev_b.advance(sb))


def test_baselines_work_on_a_search_space_without_a_table():
    space = SearchSpace(["resnet18", "resnet50"])
    ctx = TaskContext(max_epochs=5, seed=0, space=space)
    opt = get_method("asha").make(ctx)
    step = opt.ask()
    assert step.to_epoch == 1 and space.contains(step.config)
    assert step.trial_id == step.config.key()


@pytest.mark.parametrize("name", ["random", "asha", "hyperband", "one_epoch_topk",
                                  "largest_model_default"])
def test_async_methods_never_propose_a_pending_trial(name):
    runs = table(n=15)
    traj = run_one(name, runs, seed=0, budget_seconds=400, workers=4, overhead_clock="none")
    assert traj.steps > 4 and math.isfinite(traj.final_regret)


def _default_steps(order: str, epochs: int = 3):
    """Drive the defaults baseline over a 3-model space, telling each step a score."""
    from hubtune.core.records import EpochRecord
    from hubtune.optim.defaults import DefaultConfigs
    from hubtune.protocol.steps import StepResult

    desc = {m: ModelDescriptor(m, m, "x", p, 224, g, None, "none")
            for m, p, g in (("big", 50.0, 9.0), ("small", 5.0, 0.5), ("mid", 20.0, 2.0))}
    space = SearchSpace(models=["big", "small", "mid"])
    opt = DefaultConfigs(TaskContext(max_epochs=epochs, space=space, descriptors=desc),
                         order=order)
    steps = []
    while (step := opt.ask()) is not None:
        assert step.config == Config(model=step.config.model)  # the default config
        steps.append((step.config.model, step.to_epoch))
        opt.tell(StepResult(step, [EpochRecord(epoch=step.to_epoch, score=0.5)], status="ok"))
    return steps


def test_defaults_round_robin_shares_the_time_equally():
    steps = _default_steps("round_robin")
    assert steps[:3] == [("big", 1), ("small", 1), ("mid", 1)]
    assert steps[3:6] == [("big", 2), ("small", 2), ("mid", 2)] and len(steps) == 9


def test_defaults_sequential_trains_one_model_to_the_end_cheapest_first():
    steps = _default_steps("sequential")
    assert steps == [("small", 1), ("small", 2), ("small", 3), ("mid", 1), ("mid", 2),
                     ("mid", 3), ("big", 1), ("big", 2), ("big", 3)]
    assert get_method("defaults_sequential").options == {"order": "sequential"}



def test_asha_told_results_it_did_not_ask_for_places_them_on_their_rung():
    """A damaged snapshot is rebuilt by telling a fresh optimizer the journal's results (no asks)."""
    runs = table(n=12)
    a = ASHA(ctx_for(runs, seed=3))
    ev = SimulatedEvaluator(runs)
    told = []
    for _ in range(7):
        told.append(ev.advance(a.ask()))
        a.tell(told[-1])
    b = ASHA(ctx_for(runs, seed=3))
    for result in told:
        b.tell(result)  # used to raise KeyError (target_rung is set only by ask)
    assert b.target_rung == a.target_rung
    assert b.rung_score == a.rung_score and b.promoted == a.promoted
