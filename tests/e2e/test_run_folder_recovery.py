"""The run folder as a database (issue 14, failures 1, 2, 5, 7): one writer, a torn
journal tail moved aside, a damaged optimizer snapshot rebuilt from the journal, and
the budget clock charging a ``kill -9``'d session up to its last heartbeat."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

from typer.testing import CliRunner

from hubtune.cli import app
from hubtune.search.journal import Journal, replay
from tests.helpers.run import make_folder

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def args(data, out, budget="600", epochs="2"):
    return ["run", str(data), "--out", str(out), "--budget", budget, "--hub", "test",
            "--models", "test_resnet", "--max-epochs", epochs, "--image-size", "24",
            "--optimizer", "defaults", "--no-pretrained", "--threads", "1", "--log", "plain"]


def test_second_process_on_the_same_out_is_refused(tmp_path):
    data = make_folder(tmp_path / "data", per_class=80, size=24)
    out = tmp_path / "run"
    # long enough (10 epochs) that the first still runs when the second has started up
    cmd = [sys.executable, "-m", "hubtune.cli", *args(data, out, epochs="10")]
    first = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (out / "journal.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=60)
    assert first.wait(timeout=120) == 0, first.stderr.read().decode()[-2000:]
    assert second.returncode != 0
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert f"pid {first.pid}" in lines[0] and socket.gethostname() in lines[0]
    events = Journal(out / "journal.jsonl").events()
    assert sum(e["event"] == "start" for e in events) == 1
    epochs = [rec.epoch for r in replay(Journal(out / "journal.jsonl")).results for rec in r.records]
    assert epochs == list(range(1, 11))  # each epoch once


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    data = make_folder(tmp_path / "data", per_class=20, size=24)
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.lock").write_text(json.dumps({"pid": 999999, "host": "gone"}))
    res = CliRunner().invoke(app, args(data, out))
    assert res.exit_code == 0, res.output
    assert (out / "run.lock").read_text() == ""  # released at the end


def test_torn_tail_is_moved_aside_and_damaged_snapshot_rebuilt(tmp_path):
    data = make_folder(tmp_path / "data", per_class=20, size=24)
    out = tmp_path / "run"
    assert CliRunner().invoke(app, args(data, out)).exit_code == 0
    fragment = b'{"event": "result", "t": 17.5, "torn-he'
    with open(out / "journal.jsonl", "ab") as fh:
        fh.write(fragment)
    (out / "optimizer_state.json").write_bytes(b"\xff{not json")
    res = CliRunner().invoke(app, args(data, out, budget="700"))
    assert res.exit_code == 0, res.output
    assert "torn" in res.output and "damaged" in res.output
    raw = (out / "journal.jsonl").read_bytes()
    assert b"torn-he" not in raw and raw.endswith(b"\n")
    assert all(json.loads(line) for line in raw.splitlines())
    kept = [json.loads(line) for line in (out / "journal.torn.jsonl").read_text().splitlines()]
    assert [k["text"] for k in kept] == [fragment.decode()]
    assert sum(e["event"] == "start" for e in Journal(out / "journal.jsonl")) == 2


def test_killed_session_is_charged_up_to_its_last_heartbeat(tmp_path):
    journal = tmp_path / "journal.jsonl"
    script = textwrap.dedent(f"""
        import time
        from hubtune.search.journal import Journal
        j = Journal({str(journal)!r})
        e = j.append("start", settings={{}})
        j.start_heartbeat(e["t"], interval=0.2)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=ENV)
    deadline = time.monotonic() + 60
    while not (tmp_path / "heartbeat.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "no heartbeat written"
        time.sleep(0.05)
    time.sleep(2.0)
    proc.send_signal(signal.SIGKILL)
    killed = time.time()
    proc.wait(timeout=30)
    time.sleep(1.5)  # downtime: not charged
    start = Journal(journal).events("start")[0]["t"]
    assert replay(Journal(journal)).elapsed < 0.1  # before: only up to the last event
    added = Journal(journal).fold_heartbeat()
    charged = replay(Journal(journal)).elapsed
    assert added > 1.5
    assert killed - start - 0.5 < charged <= killed - start
    assert Journal(journal).fold_heartbeat() == 0.0  # folded once


def test_start_up_seconds_before_the_start_event_are_charged(tmp_path):
    """Each session's ``setup`` (process start-up, data loading) counts in the budget."""
    j = Journal(tmp_path / "journal.jsonl")
    with open(j.path, "w") as fh:
        for e in ({"event": "start", "t": 100.0, "setup": 4.0},
                  {"event": "note", "t": 110.0},
                  {"event": "start", "t": 500.0, "setup": 3.0},
                  {"event": "end", "t": 502.0}):
            fh.write(json.dumps(e) + "\n")
    assert replay(j).elapsed == (4.0 + 10.0) + (3.0 + 2.0)


def test_cli_charges_from_its_process_start(tmp_path):
    data = make_folder(tmp_path / "data", per_class=10, size=24)
    out = tmp_path / "run"
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "hubtune.cli", *args(data, out, epochs="1")],
                          env=ENV, capture_output=True, text=True, timeout=300)
    wall = time.time() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    start = Journal(out / "journal.jsonl").events("start")[0]
    assert start["setup"] > 0.2  # at least the imports of torch and timm
    charged = replay(Journal(out / "journal.jsonl")).elapsed
    assert wall - 3.0 < charged + 3.0 and charged <= wall
