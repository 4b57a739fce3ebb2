"""Export the selected model to ``best/`` and use it for predictions.

``best/`` holds everything needed to use the finetuned model without hubtune's
search code (see docs/export.md)::

    model.safetensors     # the finetuned weights (timm architecture, new head)
    config.json           # timm's model config: timm.create_model("local-dir:best", pretrained=True)
    hubtune.json          # the hubtune Config it was trained with, trial, epoch, scores
    labels.json           # class names, index = output unit
    preprocessing.json    # architecture, image size, mean/std, resize policy
    metrics.json          # validation (selection) and test scores
    README.md             # model card

The folder is written next to ``best/`` and swapped in atomically
(:mod:`hubtune.tuner.bestdir`). A few lines of plain timm reproduce a prediction::

    import timm
    model = timm.create_model("local-dir:best", pretrained=True).eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))
    probs = model(transform(pil_image).unsqueeze(0)).softmax(-1)
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from hubtune.space.config import Config
from hubtune.tuner.bestdir import ExportError, load_best, publish_best, staging_dir
from hubtune.tuner.modelcard import model_card
from hubtune.tuner.predict import Prediction, Unreadable, predict_stream

__all__ = ["CHECKPOINT_ERRORS", "ExportError", "export_first_loadable", "Prediction", "Predictor", "export_trial"]

def _checkpoint_errors() -> tuple[type[BaseException], ...]:
    from safetensors import SafetensorError

    from hubtune.finetune.checkpoint import CheckpointError

    # OSError: missing/unreadable file; ValueError: bad JSON, TrainerError, HubError;
    # KeyError: a state without an expected field; RuntimeError: tensors that do not fit.
    return (CheckpointError, SafetensorError, OSError, ValueError, KeyError, RuntimeError)


CHECKPOINT_ERRORS = _checkpoint_errors()
"""What loading a damaged trial checkpoint raises (``_finish`` falls back on them)."""

RESIZE_POLICY = "short side to image_size (bilinear, antialiased), then centre crop"


def _plain_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def _timm_data_config(trial: Any, size: int) -> dict[str, Any]:
    """timm preprocessing equivalent to hubtune's (see :data:`RESIZE_POLICY`)."""
    return {"input_size": (3, size, size), "mean": tuple(trial.mean), "std": tuple(trial.std),
            "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "center"}


def _write_timm_config(out: Path, model: torch.nn.Module, labels: list[str], data_cfg: dict) -> None:
    """``config.json`` in timm's own format (``timm.models._hub.save_config_for_hf``)."""
    from timm.models._hub import save_config_for_hf

    save_config_for_hf(model, str(out / "config.json"), model_config={"label_names": labels},
                       data_config=data_cfg)


def _evaluate(trial_dir: Path, data: Any, device: str) -> dict[str, Any]:
    from hubtune.finetune.engine import evaluate_checkpoint

    scores: dict[str, Any] = {"val": evaluate_checkpoint(trial_dir, data, split="val", device=device)}
    sizes = {"val": len(data.val.labels)}  # for the report's sampling errors
    if getattr(data, "test", None) is not None and len(data.test.labels) > 0:
        scores["test"] = evaluate_checkpoint(trial_dir, data, split="test", device=device)
        sizes["test"] = len(data.test.labels)
    scores["split_sizes"] = sizes
    return scores


def _load_trial(trial_dir: Path, data: Any, device: str) -> tuple[dict[str, Any], Config, Any]:
    """(checkpoint state, Config, Trial with the checkpoint's weights loaded)."""
    from hubtune.finetune.checkpoint import read_state
    from hubtune.finetune.engine import Trial

    state = read_state(trial_dir)
    config = Config.from_dict(state["config"])
    with torch.random.fork_rng(devices=[]):
        trial = Trial(config, data, int(state["max_epochs"]), seed=int(state["seed"]),
                      device=device, pretrained=False, regularizers=False)
        trial.pretrained = bool(state["pretrained"])
        trial.load(trial_dir, model_only=True)
    return state, config, trial


def _write_export(trial_dir: Path, data: Any, out: Path, device: str,
                  extra_metrics: dict[str, Any], search: dict[str, Any],
                  amend_metrics: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Write every file of the export of ``trial_dir`` into the (staging) folder ``out``."""
    state, config, trial = _load_trial(trial_dir, data, device)
    labels = [str(c) for c in data.classes]
    size = int(data.train.images.shape[-1])
    save_file(_plain_state_dict(trial.model), str(out / "model.safetensors"))
    _write_timm_config(out, trial.model, labels, _timm_data_config(trial, size))
    (out / "labels.json").write_text(json.dumps(labels))
    # Normalisation as the trial trained with it (stored in its checkpoint).
    (out / "preprocessing.json").write_text(json.dumps({
        "model": config.model, "architecture": trial.hub.descriptor.architecture,
        "num_classes": int(data.num_classes), "image_size": size,
        "mean": list(trial.mean), "std": list(trial.std),
        "resize": RESIZE_POLICY, "channels": "RGB",
    }, indent=2))
    metrics: dict[str, Any] = {"trial_id": trial_dir.name, "epoch": int(state["epoch"]),
                               "model": config.model, **_evaluate(trial_dir, data, device)}
    metrics.update(extra_metrics)
    if amend_metrics is not None:
        amend_metrics(metrics)  # before anything is written: best/ is never edited once published
    meta = {
        "format_version": 1, "model": config.model,
        "architecture": trial.hub.descriptor.architecture, "config": config.to_dict(),
        "trial_id": trial_dir.name, "epoch": int(state["epoch"]), "image_size": size,
        "scores": {s: metrics[s].get("top1") for s in ("val", "test") if s in metrics},
    }
    (out / "hubtune.json").write_text(json.dumps(meta, indent=2))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "README.md").write_text(model_card(meta, metrics, labels, search))
    return metrics


def export_trial(
    trial_dir: str | Path,
    data: Any,
    out_dir: str | Path,
    *,
    device: str = "cpu",
    extra_metrics: dict[str, Any] | None = None,
    search: dict[str, Any] | None = None,
    amend_metrics: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Export the model checkpointed in ``trial_dir`` as ``out_dir`` (see module doc).

    Evaluates it on the validation split and, when ``data`` has one, the test
    split; returns the metrics written to ``metrics.json``. ``search`` describes
    the search for the model card; ``amend_metrics`` may add to the metrics (after
    the evaluation, before any file is written). The files are written to a staging folder and
    swapped in only when complete: on any error ``out_dir`` keeps the old export.
    """
    best = Path(out_dir)
    staged = staging_dir(best)
    try:
        metrics = _write_export(Path(trial_dir), data, staged, device,
                                dict(extra_metrics or {}), dict(search or {}), amend_metrics)
        publish_best(staged, best)
    finally:
        if staged.exists():
            shutil.rmtree(staged, ignore_errors=True)
    return metrics


def export_first_loadable(
    trial_dirs: list[Path],
    data: Any,
    out_dir: str | Path,
    *,
    on_broken: Callable[[str, str], None],
    **kwargs: Any,
) -> tuple[str | None, dict[str, Any]]:
    """Export the first of ``trial_dirs`` (best first) whose checkpoint loads.

    A checkpoint that cannot be loaded (damaged tensors or JSON, missing file)
    is reported as ``on_broken(trial_id, one-line reason)`` and the next one is
    tried. Returns (exported trial id, metrics), or ``(None, {})`` when none
    could be exported (``out_dir`` is then left as it was). ``kwargs`` go to
    :func:`export_trial`.
    """
    for trial_dir in trial_dirs:
        try:
            return Path(trial_dir).name, export_trial(trial_dir, data, out_dir, **kwargs)
        except CHECKPOINT_ERRORS as exc:
            reason = (f"{type(exc).__name__}: {exc}".splitlines() or [""])[0][:300]
            on_broken(Path(trial_dir).name, reason)
    return None, {}


class Predictor:
    """Loads ``best/`` and classifies image files, with the training preprocessing.

    When ``best/ensemble.json`` exists (``hubtune run --ensemble K``) the
    ensemble predicts (``self.ensemble`` lists its members); ``single=True``
    uses the single best model instead.
    """

    def __init__(self, best_dir: str | Path, device: str = "cpu", single: bool = False) -> None:
        loaded = load_best(best_dir, device=device)  # one-line ExportError on any problem
        self.labels: list[str] = loaded.labels
        self.pre: dict[str, Any] = loaded.pre
        self.meta: dict[str, Any] = loaded.meta
        self.model: torch.nn.Module = loaded.model
        self.device = device
        self.mean = torch.tensor(self.pre["mean"]).view(1, 3, 1, 1)
        self.std = torch.tensor(self.pre["std"]).view(1, 3, 1, 1)
        self.ensemble: list[dict[str, Any]] | None = None
        if not single and (Path(best_dir) / "ensemble.json").exists():
            from hubtune.tuner.ensemble_load import load_ensemble

            # The ensemble normalises per member: it takes the images in [0, 1].
            self.model, self.ensemble = load_ensemble(
                best_dir, len(self.labels), int(self.pre["image_size"]), device)
            self.mean, self.std = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)

    def predict(self, paths: list[str | Path], top_k: int = 3,
                batch_size: int = 64) -> list[Prediction]:
        """Classify image files ``batch_size`` at a time (``top_k`` capped at the class
        count); unreadable files raise :class:`ExportError` naming them.

        :func:`hubtune.tuner.predict.predict_stream` does the batching and can also
        go on past unreadable files.
        """

        k = max(1, min(top_k, len(self.labels)))
        out = []
        for item in predict_stream(self, paths, batch_size=batch_size, top_k=k):
            if isinstance(item, Unreadable):
                raise ExportError(f"cannot read image {item.path}: {item.reason}")
            out.append(item)
        return out
