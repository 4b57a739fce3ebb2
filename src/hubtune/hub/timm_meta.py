"""Facts about timm architectures, read from timm's registry and measured on the ``meta`` device.

Nothing here downloads or allocates weights: architectures are instantiated on
PyTorch's ``meta`` device, where tensors have shapes but no storage, so counting
parameters and FLOPs of a 300M-parameter model costs a second and no memory.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from hubtune.hub.descriptor import ModelDescriptor, WeightSource
from hubtune.hub.errors import HubError

# timm puts several families in one module; a finer family name is more useful as a feature.
_FAMILY_BY_PREFIX: tuple[tuple[str, str], ...] = (
    ("mobilenetv2", "mobilenetv2"),
    ("mobilenetv3", "mobilenetv3"),
    ("tf_mobilenetv3", "mobilenetv3"),
    ("efficientnet_lite", "efficientnet_lite"),
    ("tf_efficientnet_lite", "efficientnet_lite"),
    ("tf_efficientnetv2", "efficientnetv2"),
    ("efficientnetv2", "efficientnetv2"),
    ("tf_efficientnet", "efficientnet"),
    ("efficientnet", "efficientnet"),
    ("mobilevitv2", "mobilevitv2"),
    ("mobilevit", "mobilevit"),
    ("deit3", "deit3"),
    ("swinv2", "swinv2"),
)


def resolve_timm_name(name: str) -> tuple[str, str | None]:
    """Split a timm model name into ``(architecture, pretrained tag)``.

    Handles current names (``"convnext_small"``), tagged names
    (``"convnext_small.fb_in22k_ft_in1k_384"``) and the deprecated pre-1.0 names
    the Quick-Tune meta-dataset uses (``"convnext_small_384_in22ft1k"``).
    The tag is ``None`` when the architecture has no pretrained weights.

    Raises:
        HubError: timm does not know the name.
    """
    from timm.models import (
        get_deprecated_models,
        get_pretrained_cfg,
        is_model,
        split_model_name_tag,
    )

    current = get_deprecated_models().get(name, name)
    arch, tag = split_model_name_tag(current)
    if not is_model(arch):
        raise HubError(f"unknown timm model '{name}'{_suggest(name, _timm_names())}")
    cfg = get_pretrained_cfg(f"{arch}.{tag}" if tag else arch, allow_unregistered=False)
    if cfg is None and tag:
        raise HubError(f"timm model '{arch}' has no pretrained tag '{tag}'")
    return arch, (cfg.tag if cfg is not None and cfg.tag else tag or None)


def is_timm_name(name: str) -> bool:
    """Whether timm can build ``name`` (current, tagged or deprecated name)."""
    try:
        resolve_timm_name(name)
    except HubError:
        return False
    return True


def pretrained_cfg_dict(architecture: str, tag: str | None) -> dict[str, Any]:
    """timm's pretrained config (input size, mean, std, classifier name ...) as a dict."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(f"{architecture}.{tag}" if tag else architecture)
    return cfg.to_dict() if cfg is not None else {}


def build_on_meta(architecture: str, tag: str | None = None, **kwargs: Any) -> nn.Module:
    """Instantiate a timm architecture on the ``meta`` device (shapes only, no storage)."""
    import timm

    full = f"{architecture}.{tag}" if tag else architecture
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return timm.create_model(full, pretrained=False, **kwargs)


def count_params_and_flops(model: nn.Module, input_size: int, channels: int = 3) -> tuple[int, int]:
    """Parameter count and forward FLOPs for one ``input_size``² image.

    FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode`
    (matmuls, convolutions, attention; a multiply-add counts as 2 FLOPs, so the
    value is about twice the "GMACs" timm's tables list). Works on ``meta`` models.
    """
    from torch.utils.flop_counter import FlopCounterMode

    n_params = sum(p.numel() for p in model.parameters())
    device = next(model.parameters()).device
    x = torch.empty(1, channels, input_size, input_size, device=device)
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.eval()
    with counter:  # no torch.no_grad(): its module tracker asserts on some heads under no_grad
        model(x)
    model.train(was_training)
    return n_params, int(counter.get_total_flops())


def family_of(architecture: str) -> str:
    """Architecture family: a known prefix, else timm's module name for it."""
    for prefix, family in _FAMILY_BY_PREFIX:
        if architecture.startswith(prefix):
            return family
    from timm.models._registry import _model_to_module

    return _model_to_module.get(architecture, architecture.split("_")[0])


def describe_timm_model(
    name: str,
    *,
    imagenet_top1: float | None = None,
    weights: WeightSource | None = None,
    pretrained_tag: str | None = None,
) -> ModelDescriptor:
    """Build a :class:`ModelDescriptor` for a timm model by measuring it on the meta device.

    Args:
        name: hub name; any timm name (current, tagged or deprecated).
        imagenet_top1: published ImageNet-1k top-1 (%) if known.
        weights: weight source; default ``"timm"`` when timm has pretrained weights, else ``"none"``.
        pretrained_tag: override of the tag recorded (e.g. a wheel file for offline weights).
    """
    arch, tag = resolve_timm_name(name)
    cfg = pretrained_cfg_dict(arch, tag)
    input_size = int(cfg.get("input_size", (3, 224, 224))[-1])
    channels = int(cfg.get("input_size", (3, 224, 224))[0])
    model = build_on_meta(arch, tag)
    n_params, flops = count_params_and_flops(model, input_size, channels)
    has_weights = bool(tag) and bool(cfg.get("hf_hub_id") or cfg.get("url"))
    return ModelDescriptor(
        name=name,
        architecture=arch,
        family=family_of(arch),
        params_m=round(n_params / 1e6, 4),
        input_size=input_size,
        gflops=round(flops / 1e9, 4),
        imagenet_top1=imagenet_top1,
        weights=weights or ("timm" if has_weights else "none"),
        pretrained_tag=pretrained_tag if pretrained_tag is not None else (tag if has_weights else None),
    )


def _timm_names() -> list[str]:
    import timm

    return timm.list_models()


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=5, cutoff=0.6)
    return f"; did you mean: {', '.join(close)}?" if close else ""
