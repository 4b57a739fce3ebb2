"""QuickTuneSearcher's saved state (``save``/``restore``, what ``Tuner.restore`` uses): JSON,
restored into a fresh searcher that then continues exactly as the uninterrupted one.

The searcher is driven here as Ray's controller and :class:`FreezeThawScheduler` drive it
(``suggest`` for new trials, ``observe`` per reported epoch, the resume wishes taken off
``resume``), with a deterministic score per (config, epoch), so two searchers told the
same epochs must decide the same. tests/integrations/test_integrations_ray_tune.py runs it on Ray.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import pytest

pytest.importorskip("ray.tune", reason="needs Ray Tune (pip install 'hubtune[ray]')")

from hubtune.core.errors import RunError  # noqa: E402
from hubtune.integrations.ray_tune import QuickTuneSearcher  # noqa: E402

DATASET = {"n_images": 500, "n_classes": 10, "mean_resolution": 8, "channels": 1}
ARGS = {"models": ["test_resnet", "test_efficientnet"], "max_epochs": 4, "dataset": DATASET,
        "metric": "val_acc", "mode": "max", "max_steps": 14}


def score(config: dict, epoch: int) -> float:
    """A learning curve that rises with the epoch and is best near lr = 1e-3."""
    miss = abs(math.log10(config["lr"]) + 3.0)
    return max(0.05, 0.9 - 0.35 / epoch - 0.08 * miss - 0.02 * (config["model"] == "test_vit"))


class Driver:
    """Ray's side of the conversation, for one searcher: trial ids, configs, reports."""

    def __init__(self, searcher: QuickTuneSearcher) -> None:
        self.s, self.configs, self.n, self.log = searcher, {}, 0, []

    def suggest(self) -> None:
        """Ray asks the searcher for a new trial."""
        suggested = self.s.suggest(f"ray{self.n}")
        if isinstance(suggested, dict):
            self.configs[suggested["hubtune_trial_id"]] = suggested
            self.n += 1
        self.log.append(("suggest", suggested))

    def tick(self) -> bool:
        """Ask for a new trial, resume what the optimizer wants, report one epoch of every
        running step; ``False`` once the search is over."""
        s = self.s
        self.suggest()
        for tid in list(s.resume):  # the scheduler resumes the paused trial
            s.resume.remove(tid)
            self.log.append(("resume", tid))
        for tid in list(s.steps):
            if tid in s.ray_of and tid not in s.resume:
                epoch = s.seen.get(tid, 0) + 1
                decision = s.observe(s.ray_of[tid], {
                    "val_acc": score(self.configs[tid], epoch), "epoch": epoch,
                    "time_this_iter_s": 0.5 * epoch})
                self.log.append((decision, tid, epoch))
        return not s.finished()


def _close(a: object, b: object, path: str = "state") -> None:
    """``a == b`` up to float rounding: a restored quicktune refits its surrogate on the
    same observations, so its predictions can differ in the last bits (decisions do not)."""
    if isinstance(a, float) and isinstance(b, float):
        assert a == b or math.isclose(a, b, rel_tol=1e-9) or (a != a and b != b), path
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    else:
        assert a == b, (path, a, b)


def _state(s: QuickTuneSearcher) -> dict:
    state = s.get_state()
    state.pop("elapsed_s")  # wall clock
    return state


def test_restored_searcher_continues_exactly_as_the_uninterrupted_one(tmp_path: Path):
    ref = Driver(QuickTuneSearcher(**ARGS))
    for _ in range(5):
        assert ref.tick()
    # mid-search: a trial paused (told), a step suggested and not yet reported
    ref.suggest()
    assert ref.s.results and any(d[0] == "pause" for d in ref.log)
    path = tmp_path / "searcher-state-default.pkl"  # the name Ray gives it
    ref.s.save(str(path))
    text = path.read_text(encoding="utf-8")
    saved = json.loads(text)  # JSON, not a pickle
    assert saved["kind"] == "hubtune.ray_tune.QuickTuneSearcher" and saved["optimizer"]["kind"] == "quicktune"
    assert len(saved["results"]) == len(ref.s.results) and saved["steps"]

    restored = Driver(QuickTuneSearcher(**ARGS))
    restored.s.restore(str(path))
    restored.configs, restored.n = dict(ref.configs), ref.n
    assert _state(restored.s) == _state(ref.s)
    assert restored.s.optimizer.state_dict() == ref.s.optimizer.state_dict()

    start = len(ref.log)
    while True:
        a = ref.tick()
        restored.tick()
        assert ref.log[start:] == restored.log
        if not a:
            break
    assert restored.s.finished() and len(ref.s.results) == 14
    assert any(entry[0] == "resume" for entry in ref.log[start:])  # freeze-thaw went on
    _close(_state(restored.s), _state(ref.s))
    told = [(r.trial_id, r.step.to_epoch, [x.score for x in r.records]) for r in ref.s.results]
    assert told == [(r.trial_id, r.step.to_epoch, [x.score for x in r.records])
                    for r in restored.s.results]
    # a fresh searcher would start over with the first trial; the restored one had it already
    first = QuickTuneSearcher(**ARGS).suggest("x")
    assert isinstance(first, dict) and first["hubtune_trial_id"] in restored.s.ray_of


def test_pickling_stores_arguments_and_json_state_only():
    d = Driver(QuickTuneSearcher(**ARGS))
    for _ in range(3):
        d.tick()
    blob = pickle.dumps(d.s)
    assert b"torch" not in blob and len(blob) < 200_000  # no surrogate / optimizer object
    copy = pickle.loads(blob)
    assert _state(copy) == _state(d.s)
    assert copy.suggest("ray-a") == d.s.suggest("ray-a")


def test_a_foreign_or_mismatched_state_is_refused(tmp_path: Path):
    s = QuickTuneSearcher(**ARGS)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kind": "something else"}))
    with pytest.raises(RunError, match="not a saved QuickTuneSearcher state"):
        s.restore(str(bad))
    bad.write_bytes(pickle.dumps({"kind": "x"}))
    with pytest.raises(RunError, match="cannot read the searcher state"):
        s.restore(str(bad))
    s.save(str(tmp_path / "ok.json"))
    other = QuickTuneSearcher(**{**ARGS, "max_epochs": 6})
    with pytest.raises(RunError, match="max_epochs=4"):
        other.restore(str(tmp_path / "ok.json"))
