"""The exported ensemble in ``best/``: writing it, loading it, its inference cost.

Layout (beside the single best model, which stays as it was)::

    best/ensemble.json               # members: trial, epoch, weight, model, config, mean/std
    best/ensemble/<trial_id>/model.safetensors
    best/ensemble/<trial_id>/config.json   # timm: create_model("local-dir:best/ensemble/<id>")

The ensemble's prediction is ``sum_i weight_i * softmax(member_i((x - mean_i) / std_i))``
with ``x`` the image in [0, 1] (the same preprocessing as the single model).
:func:`add_ensemble_to_best` copies ``best/``, adds these files and swaps the copy
in (:func:`hubtune.tuner.bestdir.publish_best`), so a reader never sees half an
ensemble. :func:`load_ensemble` validates the files (one-line
:class:`~hubtune.tuner.bestdir.ExportError`) and builds an
:class:`EnsembleModule`, which ``hubtune predict`` uses when ``ensemble.json``
exists (``--single`` forces the single model).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from hubtune.tuner.bestdir import ExportError, _check_triplet, _load_weights, _read_json

ENSEMBLE_JSON = "ensemble.json"
MEMBERS_DIR = "ensemble"
LATENCY_RUNS = 20
"""Warm batch-1 forward passes whose median is the reported latency (after 3 warm-ups)."""


class EnsembleModule(torch.nn.Module):
    """Weighted average of members' softmax; input: images in [0, 1], ``[N, 3, S, S]``.

    :meth:`probabilities` returns the averaged probabilities; :meth:`forward`
    returns their log, so ``forward(x).softmax(-1)`` gives them back (what
    :func:`hubtune.tuner.predict.classify_pixels` does with any model).
    """

    def __init__(self, members: list[torch.nn.Module], weights: list[float],
                 means: list[list[float]], stds: list[list[float]]) -> None:
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))
        self.register_buffer("means", torch.tensor(means, dtype=torch.float32).view(-1, 1, 3, 1, 1))
        self.register_buffer("stds", torch.tensor(stds, dtype=torch.float32).view(-1, 1, 3, 1, 1))

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        out = None
        for i, m in enumerate(self.members):
            p = m((x - self.means[i]) / self.stds[i]).float().softmax(-1) * self.weights[i]
            out = p if out is None else out + p
        assert out is not None
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.probabilities(x))


# ------------------------------------------------------------------ writing
def _fsync_tree_deep(folder: Path) -> None:
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with open(Path(root) / name, "rb") as fh:
                os.fsync(fh.fileno())


def _write_members(staged: Path, data: Any, summary: dict[str, Any], trial_dirs: dict[str, Path],
                   device: str) -> list[dict[str, Any]]:
    """Each member's weights + timm config under ``staged/ensemble/<id>``; their metadata."""
    from safetensors.torch import save_file

    from hubtune.tuner.export import (
        _load_trial,
        _plain_state_dict,
        _timm_data_config,
        _write_timm_config,
    )

    labels = [str(c) for c in data.classes]
    size = int(data.train.images.shape[-1])
    out = []
    for m in summary["members"]:
        state, config, trial = _load_trial(trial_dirs[m["trial_id"]], data, device)
        if int(state["epoch"]) != int(m["epoch"]):
            raise ExportError(f"trial {m['trial_id']}: checkpoint at epoch {state['epoch']}, "
                              f"its cached predictions are of epoch {m['epoch']}")
        d = staged / MEMBERS_DIR / m["trial_id"]
        d.mkdir(parents=True)
        save_file(_plain_state_dict(trial.model), str(d / "model.safetensors"))
        _write_timm_config(d, trial.model, labels, _timm_data_config(trial, size))
        n_params = sum(p.numel() for p in trial.model.parameters())
        out.append({**m, "model": config.model, "architecture": trial.hub.descriptor.architecture,
                    "config": config.to_dict(), "mean": list(trial.mean), "std": list(trial.std),
                    "params": int(n_params), "path": f"{MEMBERS_DIR}/{m['trial_id']}"})
    return out


def add_ensemble_to_best(best: Path, data: Any, summary: dict[str, Any],
                         trial_dirs: dict[str, Path], device: str) -> dict[str, Any]:
    """Swap in a copy of ``best`` with the ensemble added; returns the summary with its cost."""
    from hubtune.tuner.bestdir import publish_best, staging_dir
    from hubtune.tuner.ensemble_card import card_section

    staged = staging_dir(best)
    try:
        # A previous ensemble (a re-export of the same best/) is replaced, not merged.
        shutil.copytree(best, staged, dirs_exist_ok=True,
                        ignore=lambda d, names: [n for n in names if Path(d) == best
                                                 and n in (MEMBERS_DIR, ENSEMBLE_JSON)])
        members = _write_members(staged, data, summary, trial_dirs, device)
        spec = {"format_version": 1, "rounds": summary["rounds"], "metric": summary["metric"],
                "image_size": int(data.train.images.shape[-1]), "members": members}
        (staged / ENSEMBLE_JSON).write_text(json.dumps(spec, indent=2))
        summary = {**summary, **inference_cost(staged, device)}
        metrics = json.loads((staged / "metrics.json").read_text())
        metrics["ensemble"] = summary
        (staged / "metrics.json").write_text(json.dumps(metrics, indent=2))
        card = (staged / "README.md").read_text().split("\n## Ensemble\n")[0]
        (staged / "README.md").write_text(card.rstrip("\n") + "\n\n" + card_section(spec, summary, metrics))
        _fsync_tree_deep(staged / MEMBERS_DIR)
        publish_best(staged, best)
    finally:
        if staged.exists():
            shutil.rmtree(staged, ignore_errors=True)
    return summary


# ------------------------------------------------------------------ loading
def _check_spec(d: Path, spec: Any, image_size: int) -> list[dict[str, Any]]:
    where = d / ENSEMBLE_JSON
    if not isinstance(spec, dict) or not isinstance(spec.get("members"), list) or not spec["members"]:
        raise ExportError(f"{where}: expected an object with a non-empty 'members' list")
    if spec.get("image_size") != image_size:
        raise ExportError(f"{where}: image_size {spec.get('image_size')!r} differs from the "
                          f"single model's {image_size} (preprocessing.json)")
    members = spec["members"]
    for i, m in enumerate(members):
        if not isinstance(m, dict) or not all(isinstance(m.get(k), str) for k in ("trial_id", "model", "path")):
            raise ExportError(f"{where}: member {i} needs 'trial_id', 'model' and 'path'")
        w = m.get("weight")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w <= 1:
            raise ExportError(f"{where}: member {m['trial_id']} weight must be in (0, 1], got {w!r}")
        _check_triplet(d, ENSEMBLE_JSON, f"member {m['trial_id']} mean", m.get("mean"))
        _check_triplet(d, ENSEMBLE_JSON, f"member {m['trial_id']} std", m.get("std"))
    total = sum(float(m["weight"]) for m in members)
    if abs(total - 1) > 1e-6:
        raise ExportError(f"{where}: member weights sum to {total}, not 1")
    return members


def load_ensemble(best_dir: str | Path, num_classes: int, image_size: int,
                  device: str = "cpu") -> tuple[EnsembleModule, list[dict[str, Any]]]:
    """Validate ``best_dir/ensemble.json`` and its members; (module in eval mode, members)."""
    from hubtune.hub import HubError, create_model

    d = Path(best_dir)
    members = _check_spec(d, _read_json(d, ENSEMBLE_JSON), image_size)
    models = []
    for m in members:
        md = d / m["path"]
        if not (md / "model.safetensors").is_file():
            raise ExportError(f"{md / 'model.safetensors'}: missing (ensemble member {m['trial_id']})")
        try:
            model = create_model(m["model"], num_classes=num_classes, pretrained=False).model
        except HubError as exc:
            raise ExportError(f"{d / ENSEMBLE_JSON}: member model {m['model']!r} cannot be built "
                              f"({exc})") from None
        _load_weights(md, model, m["model"])
        models.append(model)
    module = EnsembleModule(models, [float(m["weight"]) for m in members],
                            [m["mean"] for m in members], [m["std"] for m in members])
    return module.to(device).eval(), members


# ------------------------------------------------------------------ cost
@torch.no_grad()
def median_latency_ms(fn: Any, x: torch.Tensor, runs: int = LATENCY_RUNS) -> float:
    """Median wall time of ``fn(x)`` in milliseconds over ``runs`` warm calls."""
    cuda = x.is_cuda
    for _ in range(3):
        fn(x)
    times = []
    for _ in range(runs):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn(x)
        if cuda:
            torch.cuda.synchronize()
        times.append(1000 * (time.perf_counter() - t))
    return float(statistics.median(times))


def inference_cost(best_dir: Path, device: str) -> dict[str, Any]:
    """Members, parameters and batch-1 latency of the ensemble and of the single model."""
    from hubtune.tuner.bestdir import load_best

    single = load_best(best_dir, device=device)
    n = int(single.timm_config["num_classes"])
    size = int(single.pre["image_size"])
    module, members = load_ensemble(best_dir, n, size, device)
    x = torch.rand(1, 3, size, size, device=device)
    mean = torch.tensor(single.pre["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(single.pre["std"], device=device).view(1, 3, 1, 1)
    single_ms = median_latency_ms(lambda t: single.model((t - mean) / std).softmax(-1), x)
    ens_ms = median_latency_ms(module.probabilities, x)
    single_params = sum(p.numel() for p in single.model.parameters())
    return {
        "num_members": len(members),
        "params": int(sum(p.numel() for p in module.members.parameters())),
        "latency_ms": ens_ms,
        "single": {"params": int(single_params), "latency_ms": single_ms},
        "latency_ratio": ens_ms / single_ms if single_ms > 0 else None,
        "latency_runs": LATENCY_RUNS, "latency_device": device, "latency_batch": 1,
    }
