"""Quick-Tune-Tool across the process boundary (needs its own venv: scripts/setup-peers-venv.sh)."""

from __future__ import annotations

import json

import pytest

from hubtune.bench.peers.qtt_peer import (
    QTTUnavailableError,
    QTTWorkerError,
    QTTWorkerProcess,
    find_qtt_python,
    make_qtt,
    prefit,
    table_columns,
    table_rows,
)
from hubtune.bench.runner import make_context
from hubtune.bench.simulator import SimulatedEvaluator
from tests.helpers.paths import QT_EXTENDED

SHARED = QT_EXTENDED
TINY_FIT = {"max_iter": 1, "batch_size": 512}
TINY_COST_FIT = {"max_iter": 1, "batch_size": 16}


def _qtt_python() -> str:
    try:
        return find_qtt_python()
    except QTTUnavailableError as exc:
        print(f"skipping qtt tests: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def md():
    if not SHARED.exists():
        pytest.skip(f"shared meta-dataset missing: {SHARED}")
    from hubtune.metadata import load_metadata

    return load_metadata(SHARED).only(["MED_LF", "PLT_DOC"])


def test_table_encoding_is_numeric_one_hot(md):
    runs = md["MED_LF"]
    cols = table_columns(runs.configs, with_meta_features=True)
    models = sorted({c.model for c in runs.configs})
    assert [c for c in cols if c.startswith("cat:model:")] == [f"cat:model:{m}" for m in models]
    rows = table_rows(runs.configs, cols, runs.meta_features)
    for cfg, row in zip(runs.configs[:20], rows[:20], strict=True):
        onehot = {c: v for c, v in zip(cols, row, strict=True) if c.startswith("cat:model:")}
        assert sum(onehot.values()) == 1.0 and onehot[f"cat:model:{cfg.model}"] == 1.0
        assert row[cols.index("lr")] == cfg.lr
        assert row[cols.index("clip_grad")] == (-1.0 if cfg.clip_grad is None else cfg.clip_grad)
        assert row[cols.index("meta:n_classes")] == runs.meta_features.n_classes


def test_worker_reports_versions_and_errors_clearly(tmp_path):
    worker = QTTWorkerProcess(python=_qtt_python(), home=tmp_path / "home")
    try:
        hello = worker.request("hello")
        assert hello["qtt_version"] == "0.0.4" and hello["numpy"].startswith("1.")
        with pytest.raises(QTTWorkerError, match="ask before setup"):
            worker.request("ask")
        with pytest.raises(QTTWorkerError, match="unknown command"):
            worker.request("train_everything")
    finally:
        worker.close()
    assert worker.proc.poll() is not None


def test_qtt_round_trip_meta_trains_once_and_steps_one_epoch_at_a_time(md, tmp_path):
    python = _qtt_python()
    runs = md["MED_LF"]
    ctx = make_context(runs, seed=0, budget_seconds=3600.0, max_epochs=runs.max_epochs,
                       train_metadata=md.without(["MED_LF"]), descriptors={})
    opt = make_qtt(ctx, python=python, cache_dir=tmp_path, perf_fit_params=TINY_FIT,
                   cost_fit_params=TINY_COST_FIT)
    try:
        assert opt.fit_info["cached"] is False
        ev = SimulatedEvaluator(runs)
        configs = dict(zip(runs.run_ids, runs.configs, strict=True))
        stands: dict[str, int] = {}
        for _ in range(8):
            step = opt.ask()
            assert step is not None and step.config == configs[step.trial_id]
            assert step.to_epoch == stands.get(step.trial_id, 0) + 1  # freeze-thaw, one epoch
            result = ev.advance(step)
            opt.tell(result)
            stands[step.trial_id] = result.last_epoch
        assert len(stands) >= 3  # its 3 initial random configurations at least
        assert all(s >= 0 for s in opt.decision_seconds)
        state = json.loads(json.dumps(opt.state_dict()))
        expected = opt.ask()
    finally:
        opt.close()
    again = make_qtt(ctx, python=python, cache_dir=tmp_path,
                     perf_fit_params=TINY_FIT, cost_fit_params=TINY_COST_FIT)
    try:
        assert again.fit_info["cached"] is True  # same fold: predictors come from the cache
        assert again.fold_key == opt.fold_key
        again.load_state_dict(state)  # replays the log through a fresh worker
        step = again.ask()
        assert (step.trial_id, step.to_epoch) == (expected.trial_id, expected.to_epoch)
    finally:
        again.close()
    costly = make_qtt(ctx, python=python, cache_dir=tmp_path, cost_aware=True,
                      perf_fit_params=TINY_FIT, cost_fit_params=TINY_COST_FIT)
    try:
        assert costly.method == "qtt_cost" and costly.fit_info["cached"] is True
        assert costly.ask() is not None
    finally:
        costly.close()


def test_prefit_warms_the_cache_the_benchmark_reads(md, tmp_path):
    from hubtune.bench.runner import fold_train_metadata

    python = _qtt_python()
    done = prefit(md, ["PLT_DOC"], cache_dir=tmp_path, python=python,
                  perf_fit_params=TINY_FIT, cost_fit_params=TINY_COST_FIT)
    assert [d["dataset"] for d in done] == ["PLT_DOC"] and done[0]["cached"] is False
    runs = md["PLT_DOC"]
    ctx = make_context(runs, seed=1, budget_seconds=3600.0, max_epochs=runs.max_epochs,
                       train_metadata=fold_train_metadata(md, "PLT_DOC"), descriptors={})
    opt = make_qtt(ctx, python=python, cache_dir=tmp_path, perf_fit_params=TINY_FIT,
                   cost_fit_params=TINY_COST_FIT)
    try:
        assert opt.fold_key == done[0]["key"] and opt.fit_info["cached"] is True
    finally:
        opt.close()
