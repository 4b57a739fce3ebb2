"""Fault injection on a real ``hubtune run``: kills, torn files, a concurrent writer; then check the run folder.

A campaign runs one real search (tiny timm test models, digits, 32 px, CPU) as
separate ``hubtune`` processes and, at seeded random moments, ``kill -9``s them,
tears the journal's last line, damages ``optimizer_state.json``, corrupts one
trial's checkpoint and starts a second process on the same ``--out`` while one is running. A final session runs
to the end. Then the invariants are checked (see :func:`check_invariants`):
every asked step told at most once and none left open, no duplicate or missing
epoch, ``best/`` consistent with the journal, the budget charged for each
session's running time and not for downtime.

``tests/e2e/test_fault_injection.py`` runs a 20-kill campaign in CI; run this file
for a longer one::

    python benchmarks/fault_injection.py --kills 60 --seed 1

It prints the counts (faults injected / survived) and the budget figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubtune.search.journal import Journal, replay

HEARTBEAT_INTERVAL = 2.0  # Journal.start_heartbeat's default


@dataclass
class Session:
    """One ``hubtune run`` process of the campaign, as the parent saw it."""

    spawned: float  # unix time
    ended: float
    killed: bool
    returncode: int | None
    faults: list[str] = field(default_factory=list)


@dataclass
class Campaign:
    """What was injected and what the final check found."""

    out: Path
    sessions: list[Session] = field(default_factory=list)
    injected: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    def count(self, fault: str) -> None:
        self.injected[fault] = self.injected.get(fault, 0) + 1

    @property
    def total_injected(self) -> int:
        return sum(self.injected.values())


# Batches of 16-32 keep one epoch of the tiny models around a second, so that kills
# land in training, evaluation and checkpoint writes, not only in start-up.
SPACE = {"choices": {"batch_size": [16, 32]}}


def run_command(out: Path, budget: float) -> list[str]:
    """The ``hubtune run`` command every session of a campaign repeats."""
    space = out.parent / "space.json"
    if not space.exists():
        space.parent.mkdir(parents=True, exist_ok=True)
        space.write_text(json.dumps(SPACE))
    return [sys.executable, "-m", "hubtune.cli", "run", "digits:300", "--out", str(out),
            "--budget", str(budget), "--hub", "test", "--space", str(space),
            "--models", "test_resnet,test_efficientnet", "--max-epochs", "4",
            "--image-size", "32", "--optimizer", "asha", "--no-pretrained",
            "--threads", "1", "--log", "plain"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _tear_journal(out: Path, rng: random.Random) -> bool:
    """Cut the journal's last line at a random byte, leaving no newline (a torn write)."""
    path = out / "journal.jsonl"
    if not path.exists():
        return False
    raw = path.read_bytes()
    body = raw.rstrip(b"\n")
    start = body.rfind(b"\n") + 1
    if len(body) - start < 4:
        return False
    cut = start + rng.randint(1, len(body) - start - 2)
    path.write_bytes(raw[:cut])
    return True


def _damage_snapshot(out: Path, rng: random.Random) -> bool:
    path = out / "optimizer_state.json"
    if not path.exists():
        return False
    junk = [b"\xff\xfe garbage", b'{"n_results": 3, "state": ', b""]
    path.write_bytes(rng.choice(junk))
    return True


def _corrupt_checkpoint(out: Path, rng: random.Random) -> str | None:
    """Overwrite one trial's checkpoint tensors with junk; returns the trial id.

    Only while at least two trials have checkpoints, so that export has one to fall
    back to (with one, exiting 1 with "no model" is the right outcome, tested elsewhere).
    """
    trials = sorted(p for p in (out / "trials").glob("*/checkpoint.json")) if (
        out / "trials").is_dir() else []
    if len(trials) < 2:
        return None
    ckpt = rng.choice(trials)
    try:
        tensors = ckpt.parent / json.loads(ckpt.read_text())["tensors"]
        tensors.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{junk}")
    except (OSError, ValueError, KeyError):
        return None
    return ckpt.parent.name


def _count_starts(out: Path) -> int:
    path = out / "journal.jsonl"
    return path.read_bytes().count(b'{"event": "start"') if path.exists() else 0


def _wait_for_start(out: Path, starts: int, proc: subprocess.Popen[bytes],
                    timeout: float) -> None:
    """Until the journal has one more ``start`` event than ``starts`` (or ``proc`` exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if _count_starts(out) > starts:
            return
        time.sleep(0.05)


def _wait_for_lock(out: Path, pid: int, timeout: float) -> bool:
    lock = out / "run.lock"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if f'"pid": {pid}' in lock.read_text():
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def _concurrent_writer(campaign: Campaign, cmd: list[str]) -> None:
    """Start a second process while the first holds the run: it must be refused, one line."""
    first = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    try:
        if not _wait_for_lock(campaign.out, first.pid, timeout=60):
            campaign.violations.append("concurrent case: the first process never took the lock")
            return
        second = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
        lines = second.stderr.strip().splitlines()
        if second.returncode == 0 or len(lines) != 1 or f"pid {first.pid}" not in lines[0]:
            campaign.violations.append(
                f"concurrent second process: exit {second.returncode}, stderr {second.stderr[-300:]!r}")
        campaign.count("concurrent second writer")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
        campaign.sessions.append(Session(t0, time.time(), True, None, ["concurrent"]))


def inject(campaign: Campaign, kills: int, seed: int, budget: float,
           max_delay: float = 6.0) -> None:
    """Run ``kills`` killed sessions with torn/damaged files between some of them."""
    rng = random.Random(seed)
    cmd = run_command(campaign.out, budget)
    for i in range(kills):
        if i == kills // 2:
            _concurrent_writer(campaign, cmd)
        starts = _count_starts(campaign.out)
        proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        t0 = time.time()
        try:
            # One kill in four lands anywhere (start-up included); the others once the
            # session has started searching, so that most hit training and checkpoints.
            if rng.random() >= 0.25:
                _wait_for_start(campaign.out, starts, proc, timeout=120)
            proc.wait(timeout=rng.uniform(0.2, max_delay))
            killed = False
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed = True
        session = Session(t0, time.time(), killed, None if killed else proc.returncode)
        campaign.sessions.append(session)
        if killed:
            campaign.count("kill -9")
        if i % 5 == 2 and _tear_journal(campaign.out, rng):
            campaign.count("torn journal tail")
            session.faults.append("torn")
        if i >= (3 * kills) // 4 and not campaign.injected.get("corrupt trial checkpoint") \
                and _corrupt_checkpoint(campaign.out, rng):
            campaign.count("corrupt trial checkpoint")
            session.faults.append("checkpoint")
        if i % 7 == 4 and _damage_snapshot(campaign.out, rng):
            campaign.count("damaged optimizer_state.json")
            session.faults.append("snapshot")


def finish(campaign: Campaign, budget: float) -> subprocess.CompletedProcess[str]:
    """The last session: runs to the end without faults."""
    if not campaign.injected.get("corrupt trial checkpoint") and _corrupt_checkpoint(
            campaign.out, random.Random(len(campaign.sessions))):
        campaign.count("corrupt trial checkpoint")
    t0 = time.time()
    res = subprocess.run(run_command(campaign.out, budget), env=_env(), capture_output=True,
                         text=True, timeout=600)
    campaign.sessions.append(Session(t0, time.time(), False, res.returncode))
    if res.returncode != 0:
        campaign.violations.append(f"final session exit {res.returncode}: {res.stderr[-500:]}")
    return res


def _check_journal_lines(out: Path, campaign: Campaign) -> None:
    raw = (out / "journal.jsonl").read_bytes()
    if raw and not raw.endswith(b"\n"):
        campaign.violations.append("journal does not end with a newline")
    for n, line in enumerate(raw.splitlines(), 1):
        try:
            json.loads(line)
        except ValueError:
            campaign.violations.append(f"journal line {n} does not parse: {line[:80]!r}")


def _check_steps(out: Path, campaign: Campaign) -> list[Any]:
    """Each asked step has exactly one result at the end; epochs per trial are 1..n once each."""
    events = Journal(out / "journal.jsonl").events()
    told: dict[tuple[str, int], int] = {}
    for e in events:
        if e["event"] == "result":
            key = (e["step"]["trial_id"], int(e["step"]["to_epoch"]))
            told[key] = told.get(key, 0) + 1
    for e in events:
        if e["event"] == "ask":
            key = (e["step"]["trial_id"], int(e["step"]["to_epoch"]))
            if told.get(key, 0) == 0:
                campaign.violations.append(f"asked step {key} was never told")
    for key, n in told.items():
        if n > 1:
            campaign.violations.append(f"step {key} told {n} times")
    results = replay(Journal(out / "journal.jsonl")).results
    epochs: dict[str, list[int]] = {}
    for r in results:
        epochs.setdefault(r.trial_id, []).extend(rec.epoch for rec in r.records)
    for trial, eps in epochs.items():
        if eps != list(range(1, len(eps) + 1)):
            campaign.violations.append(f"trial {trial}: epochs {eps} (duplicate or missing)")
    campaign.figures["trials"] = len(epochs)
    campaign.figures["epochs"] = sum(len(e) for e in epochs.values())
    return results


def _check_best(out: Path, results: list[Any], campaign: Campaign) -> None:
    """best/ holds one trial's epoch whose journaled score matches metrics.json."""
    metrics_path = out / "best" / "metrics.json"
    if not metrics_path.exists():
        campaign.violations.append("no best/metrics.json after the final session")
        return
    metrics = json.loads(metrics_path.read_text())
    scores = {(r.trial_id, rec.epoch): rec.score for r in results for rec in r.records}
    key = (metrics["trial_id"], int(metrics["epoch"]))
    if key not in scores:
        campaign.violations.append(f"best/ is {key}, an epoch the journal never recorded")
        return
    val = (metrics.get("val") or {}).get("top1")
    if val is None or not math.isclose(val, scores[key], abs_tol=1e-6):
        campaign.violations.append(f"best/ val {val} != journal's {scores[key]} for {key}")
    from hubtune.finetune.checkpoint import has_checkpoint

    latest: dict[str, float] = {}
    for r in results:
        for rec in r.records:
            latest[r.trial_id] = rec.score
    broken = {n.get("trial_id") for n in Journal(out / "journal.jsonl").events("note")
              if n.get("what") == "broken_checkpoint"}
    exportable = [s for t, s in latest.items() if math.isfinite(s) and t not in broken
                  and has_checkpoint(out / "trials" / t)]
    if exportable and scores[key] < max(exportable) - 1e-9:
        campaign.violations.append(f"best/ ({key}, {scores[key]:.4f}) is not the best "
                                   f"exportable trial ({max(exportable):.4f})")


def _check_budget(out: Path, campaign: Campaign) -> None:
    """Charged time vs the running time of the sessions that reached their ``start`` event.

    A session charges from its process start (the ``start`` event records the
    set-up seconds before it) to its last journal event or heartbeat, so a killed
    session may lose at most one heartbeat interval; a session killed before it
    journaled its start leaves no trace and is not charged.
    """
    history = replay(Journal(out / "journal.jsonl"))
    start_ts = [float(e["t"]) for e in Journal(out / "journal.jsonl").events("start")]
    running = 0.0
    for t in start_ts:
        s = next((s for s in campaign.sessions if s.spawned <= t <= s.ended), None)
        if s is not None:
            running += s.ended - s.spawned
    lost_bound = HEARTBEAT_INTERVAL + 1.0
    n_killed = sum(s.killed for s in campaign.sessions)
    campaign.figures["charged_s"] = round(history.elapsed, 1)
    campaign.figures["running_s"] = round(running, 1)
    campaign.figures["wall_s"] = round(sum(s.ended - s.spawned for s in campaign.sessions), 1)
    if history.elapsed > running + 1.0:
        campaign.violations.append(
            f"charged {history.elapsed:.1f}s exceeds the sessions' running time {running:.1f}s "
            f"(downtime was charged)")
    if history.elapsed < running - lost_bound * n_killed - 2.0:
        campaign.violations.append(
            f"charged {history.elapsed:.1f}s, but the sessions ran {running:.1f}s "
            f"(more than {lost_bound:.0f}s lost per kill)")


def check_invariants(campaign: Campaign) -> None:
    """Fill ``campaign.violations`` (empty: every invariant held) and its figures."""
    out = campaign.out
    _check_journal_lines(out, campaign)
    results = _check_steps(out, campaign)
    _check_best(out, results, campaign)
    _check_budget(out, campaign)


def run_campaign(workdir: Path, kills: int = 20, seed: int = 0, budget: float = 90.0,
                 max_delay: float = 6.0) -> Campaign:
    """Inject faults into one real run in ``workdir``, finish it, check the invariants."""
    campaign = Campaign(out=Path(workdir) / "run")
    inject(campaign, kills, seed, budget, max_delay)
    finish(campaign, budget)
    check_invariants(campaign)
    return campaign


def report(campaign: Campaign) -> str:
    """The figure: faults injected / survived, with the budget accounting."""
    survived = campaign.total_injected if not campaign.violations else "not all"
    lines = [f"faults injected: {campaign.total_injected}; survived: {survived}"]
    lines += [f"  {k}: {v}" for k, v in sorted(campaign.injected.items())]
    lines += [f"  {k}: {v}" for k, v in sorted(campaign.figures.items())]
    lines += [f"  VIOLATION: {v}" for v in campaign.violations]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=float, default=120.0)
    ap.add_argument("--workdir", type=Path, default=Path("runs/fault-injection"))
    args = ap.parse_args()
    if args.workdir.exists():
        sys.exit(f"{args.workdir} exists; remove it or pass another --workdir")
    campaign = run_campaign(args.workdir, args.kills, args.seed, args.budget)
    print(report(campaign))
    sys.exit(1 if campaign.violations else 0)


if __name__ == "__main__":
    main()
