"""How repeatable is the latency ``hubtune run --max-latency-ms`` measures?

Measures each model ``--repeats`` times with the run's own routine
(:func:`hubtune.tuner.constraints.measure_latency`: warm-up passes, then the
median of 20 timed forward passes, ``torch.inference_mode``, random init) and
prints, per model and batch size, the median of the repeats' medians and their
spread (max - min, also as % of the median), as a markdown table and JSON.

    python benchmarks/latency_repeatability.py --image-size 64 --threads 1 --repeats 3

Default models: the offline hub (``hubtune hub list --hub offline``). Run it on
an otherwise idle machine; a loaded one widens the spread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

from hubtune.hub import list_models
from hubtune.tuner.constraints import Conditions, measure_latency


def repeatability(models: list[str], cond: Conditions, repeats: int) -> list[dict]:
    """Per model and batch: the repeats' medians, their median and spread."""
    rows = []
    for model in models:
        runs = [measure_latency(model, cond)["ms"] for _ in range(repeats)]
        for batch in cond.batches:
            ms = [r[str(batch)] for r in runs]
            med = statistics.median(ms)
            rows.append({"model": model, "batch": batch, "medians_ms": ms,
                         "median_ms": round(med, 3), "spread_ms": round(max(ms) - min(ms), 3),
                         "spread_pct": round(100 * (max(ms) - min(ms)) / med, 1)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=None, help="comma-separated (default: offline hub)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--latency-batch", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    models = a.models.split(",") if a.models else list_models("offline")
    cond = Conditions(device=a.device, image_size=a.image_size, num_classes=a.num_classes,
                      num_threads=a.threads, batches=(1, a.latency_batch))
    rows = repeatability(models, cond, a.repeats)
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f} {json.dumps(cond.to_dict())}")
    print("| model | batch | median of medians (ms) | spread (ms) | spread (% of median) | medians (ms) |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} | {r['median_ms']:.2f} | {r['spread_ms']:.2f} | "
              f"{r['spread_pct']:.1f} | {', '.join(f'{m:.2f}' for m in r['medians_ms'])} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
