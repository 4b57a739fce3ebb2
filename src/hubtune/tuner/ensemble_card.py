"""The ensemble section of ``best/README.md``: members, scores, cost, a plain-timm recipe."""

from __future__ import annotations

from typing import Any

RECIPE = '''```python
import json, timm, torch
spec = json.load(open("best/ensemble.json"))
members = [timm.create_model(f"local-dir:best/{m['path']}", pretrained=True).eval()
           for m in spec["members"]]
def predict(x):  # x: [N, 3, S, S] float images in [0, 1], S = spec["image_size"]
    with torch.no_grad():
        return sum(m["weight"] * model((x - torch.tensor(m["mean"]).view(1, 3, 1, 1))
                                       / torch.tensor(m["std"]).view(1, 3, 1, 1)).softmax(-1)
                   for m, model in zip(spec["members"], members))
```'''


def _pct(v: Any) -> str:
    return "n/a" if not isinstance(v, (int, float)) else f"{100 * float(v):.2f}%"


def card_section(spec: dict[str, Any], summary: dict[str, Any], metrics: dict[str, Any]) -> str:
    """Markdown: the ensemble beside the single model (scores, members, cost, how to use)."""
    metric = summary.get("metric", "top1")
    rows = ["| | single model | ensemble |", "|---|---|---|"]
    for split in ("val", "test"):
        single = (metrics.get(split) or {}).get(metric)
        ens = (summary.get(split) or {}).get(metric)
        if single is not None or ens is not None:
            rows.append(f"| {split} {metric} | {_pct(single)} | {_pct(ens)} |")
    cost = summary.get("single") or {}
    rows.append(f"| parameters | {cost.get('params', 'n/a')} | {summary.get('params', 'n/a')} |")
    rows.append(f"| latency, batch 1 (ms, median of {summary.get('latency_runs')}) | "
                f"{cost.get('latency_ms', float('nan')):.2f} | {summary.get('latency_ms', float('nan')):.2f} |")
    members = ["| trial | model | epoch | weight |", "|---|---|---|---|"]
    members += [f"| {m['trial_id']} | `{m['model']}` | {m['epoch']} | {m['weight']:.3f} |"
                for m in spec["members"]]
    return "\n".join([
        "## Ensemble",
        "",
        f"Greedy ensemble selection (Caruana et al. 2004, with replacement, {spec['rounds']} rounds) "
        f"over {summary.get('candidates')} trained candidates, weights chosen on the validation "
        f"split (its validation score is therefore optimistic), test scored once.",
        "",
        *rows,
        "",
        *members,
        "",
        "`hubtune predict` uses the ensemble (`--single` for the single model). Plain timm:",
        "",
        RECIPE,
        "",
    ])
