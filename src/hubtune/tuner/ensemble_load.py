"""Loading an exported ensemble (``best/ensemble.json`` and its members) for prediction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hubtune.tuner.bestdir import ExportError, _check_triplet, _load_weights, _read_json

ENSEMBLE_JSON = "ensemble.json"
MEMBERS_DIR = "ensemble"


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
