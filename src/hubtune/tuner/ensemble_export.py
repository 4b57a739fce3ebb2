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

from hubtune.tuner.bestdir import ExportError
from hubtune.tuner.ensemble_load import (  # noqa: F401  (re-exported)
    ENSEMBLE_JSON,
    MEMBERS_DIR,
    EnsembleModule,
    _check_spec,
    load_ensemble,
)

LATENCY_RUNS = 20


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
