"""``best/README.md``: a model card for the exported model (what, how good, how found, how to use)."""

from __future__ import annotations

from typing import Any


def _pct(v: Any) -> str:
    return "n/a" if not isinstance(v, (int, float)) else f"{100 * float(v):.2f}%"


def _hyperparameter_rows(config: dict[str, Any]) -> list[str]:
    rows = ["| hyperparameter | value |", "|---|---|"]
    for k, v in config.items():
        if k != "model" and v is not None:
            rows.append(f"| `{k}` | `{v}` |")
    return rows


def _score_rows(metrics: dict[str, Any]) -> list[str]:
    rows = ["| split | top-1 | top-5 | loss |", "|---|---|---|---|"]
    for split in ("val", "test"):
        m = metrics.get(split)
        if isinstance(m, dict):
            loss = m.get("loss")
            rows.append(f"| {split} | {_pct(m.get('top1'))} | {_pct(m.get('top5'))} | "
                        f"{'n/a' if loss is None else f'{loss:.4f}'} |")
    return rows


def _search_lines(search: dict[str, Any]) -> list[str]:
    keys = (("optimizer", "optimizer"), ("budget_seconds", "budget (s)"),
            ("elapsed_seconds", "search time (s)"), ("steps", "steps"),
            ("trials", "candidates tried"), ("max_epochs", "max epochs"), ("seed", "seed"))
    out = []
    for key, label in keys:
        if search.get(key) is not None:
            v = search[key]
            out.append(f"- {label}: {v:.0f}" if isinstance(v, float) else f"- {label}: {v}")
    return out


def model_card(meta: dict[str, Any], metrics: dict[str, Any], labels: list[str],
               search: dict[str, Any] | None = None) -> str:
    """The Markdown text of ``best/README.md``.

    ``meta`` is ``hubtune.json`` (model, architecture, config, image size, trial),
    ``metrics`` is ``metrics.json``, ``search`` describes the search that found it
    (data, optimizer, budget, steps, trials; optional).
    """
    search = search or {}
    shown = ", ".join(f"`{c}`" for c in labels[:50]) + (" ..." if len(labels) > 50 else "")
    size = meta.get("image_size")
    lines = [
        f"# {meta['model']} finetuned by hubtune",
        "",
        f"Image classifier: hub model `{meta['model']}` (timm architecture `{meta['architecture']}`), "
        f"finetuned at {size}x{size} px.",
        "",
        "## Data",
        "",
        f"- dataset: `{search.get('data', 'n/a')}`",
        f"- {len(labels)} classes (index = output unit): {shown}",
        "",
        "## Scores",
        "",
        *_score_rows(metrics),
        "",
        "## How it was found",
        "",
        f"Trial `{meta.get('trial_id')}` at epoch {meta.get('epoch')}, the checkpoint with the best "
        "validation score among the trials of the search.",
        "",
        *_search_lines(search),
        "",
        "## Hyperparameters",
        "",
        *_hyperparameter_rows(meta.get("config") or {}),
        "",
        "## Use",
        "",
        "With timm (`config.json` is timm's format; the weights are `model.safetensors`):",
        "",
        "```python",
        "import timm",
        'model = timm.create_model("local-dir:PATH/TO/best", pretrained=True).eval()',
        "cfg = timm.data.resolve_data_config(model=model)",
        "transform = timm.data.create_transform(**cfg)",
        "# probs = model(transform(pil_image).unsqueeze(0)).softmax(-1)",
        "```",
        "",
        "With hubtune: `hubtune predict RUN image1.jpg image2.png --top 3`, or export it with "
        "`hubtune export RUN --format onnx`.",
        "",
    ]
    return "\n".join(lines)
