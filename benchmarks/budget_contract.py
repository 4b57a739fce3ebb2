"""Does every optimizer keep the time budget? Real ``hubtune run``s, one after another.

For each ``--optimizer`` this runs the same command (offline hub, Fashion-MNIST
subset, 64 px, CPU) in a fresh folder and reports the process's wall time (spawn
to exit: start-up, search, export and report all included), the time the journal
charged, and both as ratios to the budget. The promise (docs/run.md): at most 2%
or one short step over the budget.

    python benchmarks/budget_contract.py --budget 5m --optimizers quicktune,asha,random,defaults

Run it on an otherwise idle machine; the methods run one after another.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from hubtune.core.units import parse_duration
from hubtune.search.journal import Journal, replay


def run_once(optimizer: str, budget: str, data: str, out: Path, extra: list[str]) -> dict:
    """One real run; returns its wall time, charged time and how it ended."""
    cmd = [sys.executable, "-m", "hubtune.cli", "run", data, "--hub", "offline",
           "--budget", budget, "--max-epochs", "8", "--optimizer", optimizer,
           "--out", str(out), "--log", "plain", *extra]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    history = replay(Journal(out / "journal.jsonl"))
    ends = Journal(out / "journal.jsonl").events("end")
    metrics_path = out / "best" / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    steps = [r.seconds for r in history.results]
    return {
        "optimizer": optimizer, "exit": proc.returncode, "wall_s": round(wall, 1),
        "charged_s": round(history.elapsed, 1), "why": ends[-1]["why"] if ends else None,
        "steps": len(steps), "shortest_step_s": round(min(steps), 1) if steps else None,
        "val_top1": (metrics.get("val") or {}).get("top1"),
        "near_chance": metrics.get("near_chance"),
        "stderr_tail": proc.stderr.strip().splitlines()[-1:] if proc.returncode else [],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", default="5m")
    ap.add_argument("--optimizers", default="quicktune,asha,random,defaults")
    ap.add_argument("--data", default="fashion-mnist:2000")
    ap.add_argument("--root", type=Path, default=Path("runs/budget-contract"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    budget = parse_duration(args.budget)
    rows = []
    for name in args.optimizers.split(","):
        out = args.root / f"{name}-seed{args.seed}"
        if out.exists():
            sys.exit(f"{out} exists; remove it or pass another --root")
        row = run_once(name, args.budget, args.data, out, ["--seed", str(args.seed)])
        row["wall/budget"] = round(row["wall_s"] / budget, 4)
        row["charged/budget"] = round(row["charged_s"] / budget, 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\nbudget {budget:.0f}s; data {args.data}; offline hub; --max-epochs 8; seed {args.seed}")
    print(f"{'optimizer':<12}{'exit':>5}{'wall s':>9}{'wall/budget':>13}{'charged s':>11}"
          f"{'steps':>7}  ended")
    for r in rows:
        print(f"{r['optimizer']:<12}{r['exit']:>5}{r['wall_s']:>9}{r['wall/budget']:>13}"
              f"{r['charged_s']:>11}{r['steps']:>7}  {r['why']}")


if __name__ == "__main__":
    main()
