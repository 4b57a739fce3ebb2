"""``hubtune run --workers 2`` on a local Ray instance, with real training of tiny timm models.

One search runs in a subprocess (2 Ray workers, 1 CPU core each); the test kills one
worker process with SIGKILL in the middle of a step. The search must still end
normally with every step's result in the journal (the killed step redone from its
checkpoint, no epoch reported twice), and the journal must show steps that ran at
the same time on both workers. Option checks that need no Ray run too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hubtune.cli import app
from hubtune.search.journal import Journal, replay
from hubtune.search.raypool import PoolError, TrialResources, parse_gpus, plan_resources
from tests.helpers.run import make_folder


def _events(journal: Path) -> list[dict]:
    if not journal.exists():
        return []
    out = []
    for line in journal.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written right now
            pass
    return out


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """A 2-worker search whose worker is SIGKILLed mid-step: (out, killed info, stdout)."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'hubtune[ray]')")
    root = tmp_path_factory.mktemp("ray")
    data = make_folder(root / "data", per_class=70, size=32)  # 210 images
    space = root / "space.json"
    # Small batches: each epoch takes a moment, so the kill lands inside a step. The
    # `defaults` optimizer (each model's default config, one epoch at a time) ends the
    # run after 2 models x 4 epochs, so the budget is only a cap and a slow, busy
    # machine (Ray start-up counts against the budget) cannot end it before the kill.
    space.write_text(json.dumps({"fixed": {"batch_size": 4}}))
    out = root / "run"
    cmd = [sys.executable, "-m", "hubtune.cli", "run", str(data), "--out", str(out),
           "--budget", "600", "--hub", "test", "--models", "test_resnet,test_efficientnet",
           "--max-epochs", "4", "--image-size", "32", "--optimizer", "defaults",
           "--no-pretrained", "--threads", "1", "--space", str(space), "--log", "json",
           "--workers", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    journal = out / "journal.jsonl"
    killed = None
    deadline = time.monotonic() + 150
    try:
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            events = _events(journal)
            finished = {(e["step"]["trial_id"], e["step"]["to_epoch"])
                        for e in events if e["event"] == "result"}
            # Both workers have finished a step (warm), and one is inside a step now.
            if len({e.get("worker") for e in events if e["event"] == "result"}) >= 2:
                for status in sorted((out / "workers").glob("slot-*.json")):
                    try:
                        info = json.loads(status.read_text())
                    except (OSError, json.JSONDecodeError):
                        continue
                    if (info["trial_id"], info["to_epoch"]) in finished:
                        continue
                    if time.time() - info["started"] < 0.3:
                        continue
                    os.kill(int(info["pid"]), signal.SIGKILL)
                    killed = info
                    break
            time.sleep(0.05)
        stdout, stderr = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed is not None, f"no step to kill was seen; stderr:\n{stderr[-3000:]}"
    assert proc.returncode == 0, stderr[-3000:]
    return out, killed, stdout


def test_killed_worker_step_is_redone_and_nothing_is_lost(killed_run):
    out, killed, stdout = killed_run
    events = Journal(out / "journal.jsonl").events()
    lost = [e for e in events if e["event"] == "note" and e["what"] == "worker_lost"]
    assert len(lost) == 1, lost
    note = lost[0]
    # The journal names the killed process and the step it was running.
    assert note["pid"] == killed["pid"]
    assert (note["step"]["trial_id"], note["step"]["to_epoch"]) == \
        (killed["trial_id"], killed["to_epoch"])
    assert "died" in note["error"].lower() or "actor" in note["error"].lower()

    history = replay(Journal(out / "journal.jsonl"))
    results = history.results
    assert not history.interrupted and history.ended
    # Every step that was asked for has exactly one result: none lost, none doubled.
    asked = [(e["step"]["trial_id"], e["step"]["to_epoch"]) for e in events if e["event"] == "ask"]
    told = [(r.trial_id, r.step.to_epoch) for r in results]
    assert sorted(asked) == sorted(told)
    # The killed step was redone (after the loss) and trained its epochs from the checkpoint.
    i_lost = events.index(note)
    redo = [e for e in events[i_lost:] if e["event"] == "result"
            and e["step"]["trial_id"] == killed["trial_id"]
            and e["step"]["to_epoch"] == killed["to_epoch"]]
    assert len(redo) == 1 and redo[0]["status"] in ("ok", "ended")
    assert redo[0]["records"][-1]["epoch"] == killed["to_epoch"]
    assert redo[0]["pid"] != killed["pid"]  # a fresh worker process
    # No epoch of any trial was reported twice; every trial's epochs are 1..k.
    seen: dict[str, list[int]] = {}
    for r in results:
        seen.setdefault(r.trial_id, []).extend(rec.epoch for rec in r.records)
    for epochs in seen.values():
        assert epochs == list(range(1, len(epochs) + 1))
    assert (out / "best" / "model.safetensors").exists()
    assert not list((out / "workers").glob("slot-*.json"))  # no step left running
    # JSON log: step and result events carry the worker slot; the loss is reported.
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert {ln.get("worker") for ln in lines if ln["event"] == "step"} == {0, 1}
    assert any(ln["event"] == "requeue" for ln in lines)


def test_steps_ran_concurrently_on_two_workers(killed_run):
    out, _, _ = killed_run
    events = Journal(out / "journal.jsonl").events("result")
    spans = [(e["worker"], e["started"], e["finished"], e["pid"]) for e in events]
    assert {w for w, *_ in spans} == {0, 1}
    overlapping = [
        (a, b) for i, a in enumerate(spans) for b in spans[i + 1:]
        if a[0] != b[0] and a[1] < b[2] and b[1] < a[2]
    ]
    assert overlapping, spans
    # Both workers were separate processes, neither of them the driver.
    assert len({pid for *_, pid in spans}) >= 2
    start = Journal(out / "journal.jsonl").events("start")[0]
    assert start["workers"] == 2 and start["settings"]["workers"] == 2


def _process_tree(pid: int) -> dict[int, str]:
    """Descendants of ``pid`` (Linux /proc) -> their start time (to recognise them later)."""
    children: dict[int, list[tuple[int, str]]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append((int(d.name), fields[19]))
    tree: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child, started in children.get(todo.pop(), []):
            tree[child] = started
            todo.append(child)
    return tree


def _kill_leftovers(tree: dict[int, str]) -> None:
    """SIGKILL the processes of ``tree`` still alive (Ray helpers orphaned by a driver kill)."""
    for pid, started in tree.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone
        if fields[19] == started:  # the same process, not a reused pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.slow
def test_driver_killed_with_two_steps_running_resumes_and_redoes_both(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'hubtune[ray]')")
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs Linux /proc to find and clean up the killed driver's Ray processes")
    data = make_folder(tmp_path / "data", per_class=40, size=32)
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"fixed": {"batch_size": 4}}))  # epochs of a few seconds
    out = tmp_path / "run"
    # `defaults` ends after 2 models x 3 epochs: the budget is only a cap (see killed_run)
    cmd = [sys.executable, "-m", "hubtune.cli", "run", str(data), "--out", str(out),
           "--budget", "600", "--hub", "test", "--models", "test_resnet,test_efficientnet",
           "--max-epochs", "3", "--image-size", "32", "--optimizer", "defaults",
           "--no-pretrained", "--threads", "1", "--log", "json", "--workers", "2",
           "--space", str(space)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    tree: dict[int, str] = {}
    try:
        # Long enough for Ray's start-up and the first measured epoch: until an epoch is
        # measured the loop runs one step at a time (the budget contract), then both slots.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            # Both workers inside a step: kill the driver (and so the whole local Ray).
            if len(list((out / "workers").glob("slot-*.json"))) == 2:
                tree = _process_tree(proc.pid)
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        time.sleep(2)
        _kill_leftovers(tree)
    assert tree, f"the run never had two steps running; stderr:\n{proc.stderr.read()[-3000:]}"
    before = replay(Journal(out / "journal.jsonl"))
    pending = {(s.trial_id, s.to_epoch) for s in before.interrupted}
    assert len(pending) == 2 and not before.ended

    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    start = next(ln for ln in lines if ln["event"] == "start")
    assert start["resumed"] is True and start["redo"] == 2 and start["workers"] == 2
    events = Journal(out / "journal.jsonl").events()
    second = [i for i, e in enumerate(events) if e["event"] == "start"][1]
    redo_notes = [e for e in events[second:] if e["event"] == "note" and e["what"] == "redo"]
    assert {(n["step"]["trial_id"], n["step"]["to_epoch"]) for n in redo_notes} == pending
    redone = [e for e in events[second:] if e["event"] == "result"
              and (e["step"]["trial_id"], e["step"]["to_epoch"]) in pending]
    assert len(redone) == 2 and {e["worker"] for e in redone} == {0, 1}
    # redone at once: both were sent to the workers before either came back (a redo can
    # take milliseconds: a worker of the killed driver may have finished the epoch and
    # written the checkpoint before it died; the redo then reports the epoch it holds)
    at = {id(e): i for i, e in enumerate(events)}
    assert max(at[id(n)] for n in redo_notes) < min(at[id(e)] for e in redone)
    for e in redone:
        assert [r["epoch"] for r in e["records"]] == [e["step"]["to_epoch"]]
    after = replay(Journal(out / "journal.jsonl"))
    assert after.ended and not after.interrupted
    asked = [(e["step"]["trial_id"], e["step"]["to_epoch"]) for e in events if e["event"] == "ask"]
    assert sorted(asked) == sorted((r.trial_id, r.step.to_epoch) for r in after.results)
    assert (out / "best" / "model.safetensors").exists()


@pytest.mark.slow
def test_joins_a_two_node_cluster_and_trains_on_both_nodes(tmp_path):
    """A Ray cluster of two nodes (two raylets on loopback, one CPU each), joined with
    ``--ray-address HOST:PORT``: one worker lands on each node, both train into the
    shared run folder, and every asked step is told once."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'hubtune[ray]')")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        data = make_folder(tmp_path / "data", per_class=30, size=32)
        out = tmp_path / "run"
        cmd = [sys.executable, "-m", "hubtune.cli", "run", str(data), "--out", str(out),
               "--budget", "600", "--hub", "test", "--models", "test_resnet,test_efficientnet",
               "--max-epochs", "2", "--image-size", "32", "--optimizer", "defaults",
               "--no-pretrained", "--threads", "1", "--log", "json", "--workers", "2",
               "--ray-address", cluster.address]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
        assert res.returncode == 0, res.stderr[-3000:]
    finally:
        cluster.shutdown()
    events = Journal(out / "journal.jsonl").events()
    results = [e for e in events if e["event"] == "result"]
    nodes = {e["node"] for e in results}
    assert len(nodes) == 2, nodes  # each 1-CPU node holds one 1-CPU worker
    assert {e["worker"] for e in results} == {0, 1}
    asked = sorted((e["step"]["trial_id"], e["step"]["to_epoch"]) for e in events
                   if e["event"] == "ask")
    assert asked == sorted((e["step"]["trial_id"], e["step"]["to_epoch"]) for e in results)
    assert len(asked) == 4 and all(e["status"] in ("ok", "ended") for e in results)
    assert (out / "best" / "model.safetensors").exists()


# ----------------------------------------------------------- no Ray needed
def test_plan_resources_shares_cores_and_packs_gpus():
    one_node = [{"CPU": 16.0, "GPU": 4.0}]
    assert plan_resources(one_node, 4) == TrialResources(cpus=4, gpus=0.0)
    assert plan_resources(one_node, 8, gpus_per_trial=0.5) == TrialResources(cpus=2, gpus=0.5)
    # 3 workers over two 8-core nodes: 5 cores each would not fit, 4 do.
    assert plan_resources([{"CPU": 8.0}, {"CPU": 8.0}], 3).cpus == 4
    with pytest.raises(PoolError, match="do not fit"):
        plan_resources(one_node, 5, gpus_per_trial=1.0)
    with pytest.raises(PoolError, match="do not fit"):
        plan_resources([{"CPU": 2.0}], 4, cpus_per_trial=1)


def test_parse_gpus():
    assert parse_gpus("0, 2") == [0, 2]
    assert parse_gpus(None) is None
    for bad in ("0,x", "1,1", ","):
        with pytest.raises(ValueError, match="--gpus"):
            parse_gpus(bad)


@pytest.mark.parametrize("extra,message", [
    (["--workers", "0"], "--workers"),
    (["--ray-address", "auto"], "--workers 2"),
    (["--workers", "2", "--gpus", "0,1"], "--device cuda"),
    (["--workers", "2", "--gpus-per-trial", "1.5"], "(0, 1]"),
    (["--workers", "2", "--device", "cuda:1"], "--device cuda"),
])
def test_bad_parallel_options_give_one_line_errors(tmp_path, extra, message):
    r = CliRunner().invoke(app, ["run", "digits", "--out", str(tmp_path / "o"), "--budget", "10",
                                 "--hub", "test", "--no-pretrained", *extra])
    assert r.exit_code == 2, r.output
    assert "error:" in r.output and message in r.output and "Traceback" not in r.output


def test_unreachable_cluster_fails_fast_with_one_line(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'hubtune[ray]')")
    data = make_folder(tmp_path / "data", per_class=4, size=16)
    t0 = time.monotonic()
    r = CliRunner().invoke(app, ["run", str(data), "--out", str(tmp_path / "o"), "--budget", "10",
                                 "--hub", "test", "--models", "test_resnet", "--no-pretrained",
                                 "--workers", "2", "--ray-address", "127.0.0.1:1"])
    assert r.exit_code == 2, r.output
    assert "no Ray cluster answers at 127.0.0.1:1" in r.output and "Traceback" not in r.output
    assert time.monotonic() - t0 < 30
