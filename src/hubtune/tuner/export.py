"""Export the selected model to ``best/`` and use it for predictions.

``best/`` holds everything needed to use the finetuned model without hubtune's
search code::

    model.safetensors     # the finetuned weights (timm architecture, new head)
    config.json           # the hubtune Config it was trained with
    labels.json           # class names, index = output unit
    preprocessing.json    # architecture, image size, mean/std, resize policy
    metrics.json          # validation (selection) and test scores

A few lines of plain Python reproduce a prediction::

    import json, timm, torch
    from safetensors.torch import load_file
    pre = json.load(open("best/preprocessing.json"))
    model = timm.create_model(pre["architecture"], num_classes=pre["num_classes"])
    model.load_state_dict(load_file("best/model.safetensors")); model.eval()
    # x: float tensor [N, 3, S, S] in [0, 1], resized as pre["resize"] says
    x = (x - torch.tensor(pre["mean"])[:, None, None]) / torch.tensor(pre["std"])[:, None, None]
    probs = model(x).softmax(-1)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from hubtune.space.config import Config

RESIZE_POLICY = "short side to image_size (bilinear, antialiased), then centre crop"


class ExportError(RuntimeError):
    """The exported model folder is missing pieces or cannot be used."""


def _plain_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def export_trial(
    trial_dir: str | Path,
    data: Any,
    out_dir: str | Path,
    *,
    device: str = "cpu",
    extra_metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the model checkpointed in ``trial_dir`` to ``out_dir`` (see module doc).

    Evaluates it on the validation split and, when ``data`` has one, the test
    split; returns the metrics written to ``metrics.json``.
    """
    from hubtune.finetune.checkpoint import read_state
    from hubtune.finetune.engine import Trial, evaluate_checkpoint

    trial_dir, out = Path(trial_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = read_state(trial_dir)
    config = Config.from_dict(state["config"])
    with torch.random.fork_rng(devices=[]):
        trial = Trial(config, data, int(state["max_epochs"]), seed=int(state["seed"]),
                      device=device, pretrained=False, regularizers=False)
        trial.pretrained = bool(state["pretrained"])
        trial.load(trial_dir, model_only=True)
    save_file(_plain_state_dict(trial.model), str(out / "model.safetensors"))
    (out / "config.json").write_text(config.to_json())
    (out / "labels.json").write_text(json.dumps(list(data.classes)))
    # Normalisation as the trial trained with it (stored in its checkpoint).
    (out / "preprocessing.json").write_text(json.dumps({
        "model": config.model,
        "architecture": trial.hub.descriptor.architecture,
        "num_classes": int(data.num_classes),
        "image_size": int(data.train.images.shape[-1]),
        "mean": list(trial.mean),
        "std": list(trial.std),
        "resize": RESIZE_POLICY,
        "channels": "RGB",
    }, indent=2))
    metrics: dict[str, Any] = {
        "trial_id": trial_dir.name,
        "epoch": int(state["epoch"]),
        "model": config.model,
        "val": evaluate_checkpoint(trial_dir, data, split="val", device=device),
    }
    if getattr(data, "test", None) is not None and len(data.test.labels) > 0:
        metrics["test"] = evaluate_checkpoint(trial_dir, data, split="test", device=device)
    metrics.update(extra_metrics or {})
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


@dataclass
class Prediction:
    """One image's predicted class and probability (plus the top-k)."""

    path: str
    label: str
    probability: float
    top: list[tuple[str, float]]


class Predictor:
    """Loads ``best/`` and classifies image files, with the training preprocessing."""

    def __init__(self, best_dir: str | Path, device: str = "cpu") -> None:
        from hubtune.hub import create_model

        d = Path(best_dir)
        needed = ["model.safetensors", "labels.json", "preprocessing.json", "config.json"]
        missing = [n for n in needed if not (d / n).exists()]
        if missing:
            raise ExportError(f"{d} is not an exported hubtune model (missing {', '.join(missing)})")
        self.labels: list[str] = json.loads((d / "labels.json").read_text())
        self.pre: dict[str, Any] = json.loads((d / "preprocessing.json").read_text())
        hm = create_model(self.pre["model"], num_classes=int(self.pre["num_classes"]),
                          pretrained=False)
        self.model = hm.model
        self.model.load_state_dict(load_file(str(d / "model.safetensors")))
        self.model.to(device).eval()
        self.device = device
        self.mean = torch.tensor(self.pre["mean"]).view(1, 3, 1, 1)
        self.std = torch.tensor(self.pre["std"]).view(1, 3, 1, 1)

    def predict(self, paths: list[str | Path], top_k: int = 3,
                batch_size: int = 64) -> list[Prediction]:
        """Classify image files ``batch_size`` at a time (``top_k`` capped at the class
        count); unreadable files raise :class:`ExportError` naming them.

        :func:`hubtune.tuner.predict.predict_stream` does the batching and can also
        go on past unreadable files.
        """
        from hubtune.tuner.predict import Unreadable, predict_stream

        k = max(1, min(top_k, len(self.labels)))
        out = []
        for item in predict_stream(self, paths, batch_size=batch_size, top_k=k):
            if isinstance(item, Unreadable):
                raise ExportError(f"cannot read image {item.path}: {item.reason}")
            out.append(item)
        return out
