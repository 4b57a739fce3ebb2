"""The wrapped peers (DEHB, SMAC3, Optuna) on a slice of the shared Quick-Tune table."""

from __future__ import annotations

import importlib.util
import json

import pytest

from hubtune.bench.peers._common import RESTART_SEPARATOR, PeerStateError
from hubtune.bench.peers.mapping import TableMapping
from hubtune.bench.peers.optuna_peer import next_stop
from hubtune.bench.runner import make_context, run_one
from hubtune.bench.simulator import SimulatedEvaluator
from hubtune.optim.registry import get_method
from tests.helpers.paths import QT_EXTENDED

SHARED = QT_EXTENDED
TEST_DATASET = "MED_LF"
LIBS = {"dehb": "dehb", "dehb_cont": "dehb", "smac_mf": "smac", "smac_mf_cont": "smac",
        "optuna_tpe_hb": "optuna"}
PEERS = sorted(LIBS)

pytestmark = pytest.mark.skipif(not SHARED.exists(), reason=f"shared meta-dataset missing: {SHARED}")


@pytest.fixture(scope="module")
def md():
    from hubtune.metadata import load_metadata

    return load_metadata(SHARED).only([TEST_DATASET, "PLT_DOC", "BCT"])


@pytest.fixture(scope="module")
def runs(md):
    return md[TEST_DATASET]


def _ctx(runs, seed=0):
    return make_context(runs, seed=seed, budget_seconds=3600.0, max_epochs=runs.max_epochs,
                        descriptors={})


def _base(trial_id: str) -> str:
    return trial_id.split(RESTART_SEPARATOR, 1)[0]


def _drive(opt, runs, budget, workers=1):
    """ask/tell loop on the simulator; up to ``workers`` steps pending at once."""
    ev = SimulatedEvaluator(runs)
    configs = dict(zip(runs.run_ids, runs.configs, strict=True))
    clock, steps, results, pending = 0.0, [], [], []
    while clock < budget:
        while len(pending) < workers:
            step = opt.ask(budget_left=budget - clock)
            assert step is not None
            assert step.trial_id not in {s.trial_id for s in pending}, "two pending steps"
            assert step.config == configs[_base(step.trial_id)], "step is not a table config"
            json.dumps(step.info)
            pending.append(step)
            steps.append(step)
        step = pending.pop(0)
        result = ev.advance(step)
        opt.tell(result)
        results.append(result)
        clock += result.seconds
    return steps, results, ev


# ------------------------------------------------------------------ mapping
def test_mapping_searches_the_tables_values_and_maps_table_configs_onto_themselves(runs):
    ctx = _ctx(runs)
    mapping = TableMapping(ctx.candidates, seed=0)
    cs = mapping.configspace
    models = sorted({c.model for c in runs.configs})
    assert [json.loads(t) for t in cs["model"].choices] == models
    lrs = sorted({c.lr for c in runs.configs})
    assert [json.loads(t) for t in cs["lr"].sequence] == lrs
    for i, cand in enumerate(ctx.candidates):
        j, dist = mapping.nearest(mapping.config_values(cand.config), prefer_unused=False,
                                  mark=False)
        assert dist == 0.0
        assert ctx.candidates[j].config == cand.config or j == i


def test_mapping_prefers_unused_configs_and_maps_sampled_proposals(runs):
    ctx = _ctx(runs)
    mapping = TableMapping(ctx.candidates, seed=0)
    values = mapping.config_values(ctx.candidates[5].config)
    first, d1 = mapping.nearest(values)
    second, d2 = mapping.nearest(values)
    assert ctx.candidates[first].config == ctx.candidates[5].config and d1 == 0.0
    assert second != first and d2 > 0.0
    third, _ = mapping.nearest(values, prefer_unused=False, mark=False)
    assert third == first  # once all are allowed, the exact match wins again
    mapping.configspace.seed(1)
    for cfg in mapping.configspace.sample_configuration(20):
        idx, dist = mapping.nearest(mapping.values_from(dict(cfg)), prefer_unused=False)
        # the nearest table config is at least as close as any other candidate
        enc = mapping.encode(mapping.values_from(dict(cfg)))
        others = ((mapping.matrix - enc) ** 2).sum(axis=1) ** 0.5
        assert dist == pytest.approx(others.min())


def test_optuna_stops_exactly_where_hyperband_can_decide():
    assert [next_stop(e, 50) for e in (0, 1, 2, 3, 8, 9, 26, 27, 49)] == \
        [1, 3, 3, 9, 9, 27, 27, 50, 50]


# ------------------------------------------------------------------ protocol
@pytest.mark.parametrize("name", PEERS)
def test_peer_runs_through_the_benchmark_runner(name, runs):
    pytest.importorskip(LIBS[name])
    spec = get_method(name)
    assert not spec.needs_metadata and not spec.subprocess
    traj = run_one(name, runs, seed=0, budget_seconds=3600.0, overhead_clock="none")
    assert traj.steps > 3 and traj.epochs > 3
    assert traj.scores and max(traj.scores) > 0


@pytest.mark.parametrize("name", PEERS)
def test_peer_never_has_two_pending_steps_of_one_trial(name, runs):
    pytest.importorskip(LIBS[name])
    opt = get_method(name).make(_ctx(runs))
    steps, results, _ = _drive(opt, runs, budget=3600.0, workers=3)
    assert len(steps) >= 6


@pytest.mark.parametrize("name", ["dehb", "smac_mf"])
def test_from_scratch_peers_retrain_promoted_configs(name, runs):
    pytest.importorskip(LIBS[name])
    opt = get_method(name).make(_ctx(runs))
    steps, results, ev = _drive(opt, runs, budget=2 * 3600.0)
    restarted = [r for r in results if RESTART_SEPARATOR in r.step.trial_id]
    assert restarted, "no promotion happened"
    for r in results:  # every step trains from epoch 1: nothing continues a checkpoint
        assert r.records and r.records[0].epoch == 1
    for r in restarted:  # and the restart pays for every epoch again
        assert r.seconds == pytest.approx(float(runs.seconds[runs.index(_base(r.step.trial_id)),
                                                             :len(r.records)].sum()))


@pytest.mark.parametrize("name", ["dehb_cont", "smac_mf_cont"])
def test_continuation_variants_continue_instead_of_restarting(name, runs):
    pytest.importorskip(LIBS[name])
    opt = get_method(name).make(_ctx(runs))
    steps, results, ev = _drive(opt, runs, budget=2 * 3600.0)
    assert all(RESTART_SEPARATOR not in s.trial_id for s in steps)
    continued = [r for r in results if r.records and r.records[0].epoch > 1]
    assert continued, "no promotion continued a trial"


def test_optuna_trials_continue_until_pruned_or_finished(runs):
    pytest.importorskip("optuna")
    opt = get_method("optuna_tpe_hb").make(_ctx(runs))
    steps, results, ev = _drive(opt, runs, budget=2 * 3600.0)
    assert {s.to_epoch for s in steps} <= {1, 3, 9, 27, runs.max_epochs}
    assert any(r.records and r.records[0].epoch > 1 for r in results)
    states = {t.state.name for t in opt.study.trials}
    assert "PRUNED" in states and "COMPLETE" in states


@pytest.mark.parametrize("name", PEERS)
def test_peer_state_replays_to_the_same_next_step(name, runs):
    pytest.importorskip(LIBS[name])
    spec = get_method(name)
    opt = spec.make(_ctx(runs, seed=3))
    _drive(opt, runs, budget=2 * 3600.0)
    state = json.loads(json.dumps(opt.state_dict()))
    again = spec.make(_ctx(runs, seed=3))
    again.load_state_dict(state)
    a, b = opt.ask(), again.ask()
    assert (a.trial_id, a.to_epoch) == (b.trial_id, b.to_epoch)
    with pytest.raises(PeerStateError, match="seed"):
        spec.make(_ctx(runs, seed=4)).load_state_dict(state)


def test_peers_are_registered_with_their_flags():
    for name in [*PEERS, "qtt", "qtt_cost"]:
        spec = get_method(name)
        assert spec.subprocess == name.startswith("qtt")
        assert spec.needs_metadata == name.startswith("qtt")
    assert get_method("qtt_cost").options == {"cost_aware": True}
    assert get_method("dehb_cont").options == {"continuation": True}


def test_peer_without_candidates_is_refused(runs):
    from hubtune.protocol.context import TaskContext
    from hubtune.space.searchspace import SearchSpace

    if importlib.util.find_spec("optuna") is None:
        pytest.skip("optuna not installed")
    ctx = TaskContext(max_epochs=5, space=SearchSpace(models=["resnet18"]))
    with pytest.raises(ValueError, match="needs ctx.candidates"):
        get_method("optuna_tpe_hb").make(ctx)
