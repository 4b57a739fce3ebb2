"""Search vs default hyperparameters in real ``hubtune run`` searches, scored on large test sets.

Runs ``hubtune run DATA --hub offline --budget B --max-epochs 8`` for every
(task, seed, method) of a grid, one run at a time, and compares the search
(the first method) with the practitioner's baselines that spend the same
budget on each model's default config: ``defaults`` (round robin, an equal
share per model) and ``defaults_sequential`` (one model at a time to the end
of its schedule, cheapest first). Each exported ``best/`` model is then scored
on a large test set the run never saw (``benchmarks/large_test.py``: the
10,000 official Fashion-MNIST test images; for animal-mnist and digits every
image outside the run's training and validation subsets), so results compare
with a few tenths of a point of test noise instead of the 1.5-2 points of a
demo-sized test split.

    python benchmarks/demo_vs_defaults.py --seeds 0,1,2 --out bench-demo            # the make-demo task
    python benchmarks/demo_vs_defaults.py --tasks fashion-mnist:2000@8m,fashion-mnist:4000@8m \\
        --seeds 0,1,2 --threads 1 --out /work/runs/real                              # a grid
    python benchmarks/demo_vs_defaults.py --tasks fashion-mnist:2000@8m --label qt-new \\
        --search-arg=--surrogate --search-arg=my-sur --out /work/runs/real          # a search variant
    python benchmarks/demo_vs_defaults.py --evaluate runs/a runs/b                  # only evaluate

Run folders are ``OUT/<task>/<label>-seed<k>`` (``<task>`` is ``DATA`` with ``:``
as ``-``, plus ``-<budget>``; the search's label is ``--label``, default the
method's name). The grid is resumable: a cell whose folder has a
``result.json`` is not run again (a killed run is resumed by ``hubtune run``
itself). Before each run the machine's load average is appended to
``OUT/load.log``. It prints one row per run (exported model, whether its
config is the model's default, its trial and epoch, budget used, the seconds
from the end of the search loop to the end of the export and report, validation
and large-test top-1), then per task and seed the search minus each baseline
and minus the better of the two, and per task their mean, standard deviation
and minimum; ``OUT/table.json`` gets the same figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from large_test import large_test_top1  # noqa: E402


def task_slug(task: str) -> str:
    """``"fashion-mnist:2000@8m"`` -> ``"fashion-mnist-2000-8m"``."""
    return task.replace(":", "-").replace("@", "-")


def parse_task(task: str, default_budget: str) -> tuple[str, str]:
    """``"DATA@BUDGET"`` (or ``"DATA"``) -> ``(DATA, BUDGET)``."""
    data, _, budget = task.partition("@")
    return data, budget or default_budget


def run(out: Path, data: str, budget: str, method: str, seed: int, extra: list[str],
        args: argparse.Namespace) -> None:
    """One ``hubtune run`` into ``out`` (resumed if it exists); the load is logged first."""
    cmd = [sys.executable, "-m", "hubtune.cli", "run", data, "--hub", "offline",
           "--budget", budget, "--max-epochs", str(args.max_epochs), "--seed", str(seed),
           "--optimizer", method, "--log", "quiet", "--out", str(out)] + extra
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out / "load.log", "a", encoding="utf-8") as fh:
        fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {out} load {' '.join(load)}\n")
    subprocess.run(cmd, check=True)


def end_phases(run_dir: Path) -> tuple[float | None, float | None]:
    """``(elapsed when the search loop ended, elapsed after the export and report)`` of the
    last session, from its journal's ``end`` and ``exported`` events (None where missing)."""
    loop_end = exported = None
    with open(run_dir / "journal.jsonl", encoding="utf-8") as fh:
        for line in fh:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("event") == "end":
                loop_end = event.get("elapsed")
            elif event.get("event") == "note" and event.get("what") == "exported":
                exported = event.get("elapsed")
    return loop_end, exported


def describe(run_dir: Path) -> dict:
    """One run's figures: exported model and trial, budget used, validation and large-test top-1."""
    from hubtune.space.config import Config

    result = json.loads((run_dir / "result.json").read_text())
    settings = json.loads((run_dir / "run.json").read_text())
    config = Config.from_dict(result["config"])
    is_default = config.effective_key() == Config(model=config.model).effective_key()
    top1, n = large_test_top1(run_dir)
    loop_end, exported = end_phases(run_dir)
    best = json.loads((run_dir / "best" / "hubtune.json").read_text()) if (run_dir / "best" / "hubtune.json").exists() else {}
    return {
        "run": str(run_dir), "optimizer": settings["optimizer"], "seed": settings["seed"],
        "model": result["model"], "default_config": is_default,
        "trial": best.get("trial_id"), "epoch": best.get("epoch"), "steps": result.get("steps"),
        "budget": result["budget"], "elapsed": result["elapsed"],
        "over_budget": result["elapsed"] / result["budget"] - 1.0,
        "search_end": loop_end, "finish_seconds": None if loop_end is None or exported is None
        else exported - loop_end,
        "val": result["metrics"]["val"]["top1"], "large_test": top1, "large_test_n": n,
    }


def paired(rows: list[dict], search: str, baselines: list[str]) -> dict:
    """Per seed: search minus each baseline and minus the better one; their mean, sd and min."""
    by_seed: dict[int, dict[str, float]] = {}
    for r in rows:
        by_seed.setdefault(r["seed"], {})[r["label"]] = r["large_test"]
    diffs: dict[str, dict[int, float]] = {}
    for seed, scores in sorted(by_seed.items()):
        if search not in scores or not all(b in scores for b in baselines):
            continue
        for b in baselines:
            diffs.setdefault(b, {})[seed] = scores[search] - scores[b]
        diffs.setdefault("better baseline", {})[seed] = scores[search] - max(scores[b] for b in baselines)
    stats = {}
    for name, d in diffs.items():
        vals = list(d.values())
        stats[name] = {"per_seed": d, "mean": statistics.fmean(vals),
                       "sd": statistics.stdev(vals) if len(vals) > 1 else None, "min": min(vals)}
    means = {lab: statistics.fmean(r["large_test"] for r in rows if r["label"] == lab)
             for lab in [search] + baselines if any(r["label"] == lab for r in rows)}
    return {"diffs": stats, "means": means}


def print_rows(rows: list[dict]) -> None:
    print(f"{'task':<24} {'method':<22} {'seed':>4} {'model':<22} {'dflt':>4} {'ep':>2} {'steps':>5} "
          f"{'used/budget':>12} {'over':>6} {'finish':>6} {'val':>6} {'test':>6} {'n test':>6}")
    for r in rows:
        print(f"{r['task']:<24} {r['label']:<22} {r['seed']:>4} {r['model']:<22} "
              f"{'yes' if r['default_config'] else 'no':>4} {r['epoch']!s:>2} {r['steps']!s:>5} "
              f"{r['elapsed']:>6.0f}/{r['budget']:<5.0f} {100 * r['over_budget']:>+5.1f}% "
              f"{'-' if r['finish_seconds'] is None else format(r['finish_seconds'], '5.0f') + 's':>6} "
              f"{100 * r['val']:>6.2f} {100 * r['large_test']:>6.2f} {r['large_test_n']:>6}")


def print_paired(task: str, search: str, res: dict) -> None:
    means = ", ".join(f"{k} {100 * v:.2f}" for k, v in res["means"].items())
    print(f"\n{task}: mean large-test top-1: {means}")
    for name, s in res["diffs"].items():
        per = ", ".join(f"seed {k}: {100 * v:+.2f}" for k, v in s["per_seed"].items())
        sd = "-" if s["sd"] is None else f"{100 * s['sd']:.2f}"
        print(f"  {search} - {name}: mean {100 * s['mean']:+.2f}, sd {sd}, min {100 * s['min']:+.2f} ({per})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evaluate", nargs="*", type=Path, help="existing run folders to evaluate (no grid)")
    ap.add_argument("--out", type=Path, default=Path("bench-demo"))
    ap.add_argument("--tasks", default=None, help="comma-separated DATA@BUDGET (default: --data@--budget)")
    ap.add_argument("--data", default="fashion-mnist:2000")
    ap.add_argument("--budget", default="8m")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--max-epochs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--optimizers", default="quicktune,defaults,defaults_sequential",
                    help="methods per task and seed (the first is the search)")
    ap.add_argument("--label", default=None, help="folder label of the search (default: its method name)")
    ap.add_argument("--search-arg", action="append", default=[],
                    help="extra hubtune-run argument for the search only (repeat; e.g. --search-arg=--surrogate)")
    ap.add_argument("--surrogate", type=Path, default=None, help="shorthand for --search-arg=--surrogate DIR")
    ap.add_argument("--no-run", action="store_true", help="only tabulate the cells that exist")
    ap.add_argument("--no-eval", action="store_true", help="only run the missing cells (no table)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads or torch.get_num_threads())
    if args.evaluate:
        rows = [dict(describe(d), task="-", label=json.loads((d / "run.json").read_text())["optimizer"])
                for d in args.evaluate]
        print_rows(rows)
        return
    methods = args.optimizers.split(",")
    search, baselines = args.label or methods[0], methods[1:]
    extra = list(args.search_arg) + (["--surrogate", str(args.surrogate)] if args.surrogate else [])
    tasks = (args.tasks or f"{args.data}@{args.budget}").split(",")
    rows: list[dict] = []
    for task in tasks:
        data, budget = parse_task(task, args.budget)
        for seed in [int(s) for s in args.seeds.split(",")]:
            for i, method in enumerate(methods):
                label = search if i == 0 else method
                d = args.out / task_slug(f"{data}@{budget}") / f"{label}-seed{seed}"
                if not (d / "result.json").exists():
                    if args.no_run:
                        continue
                    run(d, data, budget, method, seed, extra if i == 0 else [], args)
                if args.no_eval:
                    continue
                rows.append(dict(describe(d), task=task_slug(f"{data}@{budget}"), label=label))
    if args.no_eval:
        return
    print_rows(rows)
    table = {"rows": rows, "paired": {}}
    for task in dict.fromkeys(r["task"] for r in rows):
        res = paired([r for r in rows if r["task"] == task], search, baselines)
        table["paired"][task] = res
        print_paired(task, search, res)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "table.json" if search == methods[0] else f"table-{search}.json"
    (args.out / name).write_text(json.dumps(table, indent=1, default=str))


if __name__ == "__main__":
    main()
