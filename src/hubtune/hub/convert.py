"""Convert state dicts from other model zoos into timm's key layout.

Two layouts are supported, both for the MobileNet/EfficientNet family that timm
builds with ``timm.models.efficientnet.EfficientNet``:

* torchvision's ``mobilenet_v2`` (``features.N...``, ``classifier.1``) -> timm
  ``mobilenetv2_100``;
* lukemelas-style ``EfficientNet`` (``_conv_stem``, ``_blocks.N._expand_conv`` ...,
  as in the ``efficientnet_lite_pytorch`` package) -> timm ``tf_efficientnet_lite*``.

Blocks are mapped in order onto timm's blocks (flattened over stages), with the
sub-layer names of each block chosen by its kind (depthwise-separable or
inverted-residual). Every converted tensor is checked against the target
model's shape, so a wrong mapping fails loudly instead of loading garbage.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from hubtune.hub.errors import HubError

# Sub-layer renames inside one block, by timm block kind.
_TV_DS = {"conv.0.0": "conv_dw", "conv.0.1": "bn1", "conv.1": "conv_pw", "conv.2": "bn2"}
_TV_IR = {
    "conv.0.0": "conv_pw",
    "conv.0.1": "bn1",
    "conv.1.0": "conv_dw",
    "conv.1.1": "bn2",
    "conv.2": "conv_pwl",
    "conv.3": "bn3",
}
_LM_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LM_IR = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_LM_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def timm_block_layout(model: nn.Module) -> list[tuple[str, str]]:
    """Flat list of ``(timm prefix, kind)`` for the blocks of a timm EfficientNet-style model.

    ``kind`` is ``"ds"`` (depthwise-separable: conv_dw, conv_pw) or ``"ir"``
    (inverted residual: conv_pw, conv_dw, conv_pwl).
    """
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.Sequential):
        raise HubError(f"{type(model).__name__} has no timm EfficientNet-style 'blocks'")
    layout = []
    for si, stage in enumerate(blocks):
        for bi, block in enumerate(stage):
            kind = "ir" if hasattr(block, "conv_pwl") else "ds"
            layout.append((f"blocks.{si}.{bi}", kind))
    return layout


def torchvision_mobilenetv2_to_timm(
    state_dict: Mapping[str, torch.Tensor], target: nn.Module
) -> dict[str, torch.Tensor]:
    """Rename a torchvision ``mobilenet_v2`` state dict for timm's ``mobilenetv2_*`` model ``target``."""
    layout = timm_block_layout(target)
    last = len(layout) + 1  # features.0 = stem, features.1..n = blocks, features.n+1 = head conv
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        m = re.fullmatch(r"features\.(\d+)\.(.+)", key)
        if key.startswith("classifier.1."):
            new = "classifier." + key[len("classifier.1."):]
        elif m and int(m.group(1)) == 0:
            new = _rename(m.group(2), {"0": "conv_stem", "1": "bn1"}, key)
        elif m and int(m.group(1)) == last:
            new = _rename(m.group(2), {"0": "conv_head", "1": "bn2"}, key)
        elif m and 1 <= int(m.group(1)) < last:
            prefix, kind = layout[int(m.group(1)) - 1]
            new = prefix + "." + _rename(m.group(2), _TV_DS if kind == "ds" else _TV_IR, key)
        else:
            raise HubError(f"unexpected key '{key}' in a torchvision MobileNetV2 state dict")
        out[new] = value
    return _checked(out, target, "torchvision MobileNetV2")


def lukemelas_efficientnet_to_timm(
    state_dict: Mapping[str, torch.Tensor], target: nn.Module
) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-style EfficientNet(-Lite) state dict for the timm model ``target``."""
    layout = timm_block_layout(target)
    source_blocks = {int(k.split(".")[1]) for k in state_dict if k.startswith("_blocks.")}
    if len(source_blocks) != len(layout):
        raise HubError(
            f"the weights have {len(source_blocks)} blocks but timm's "
            f"{type(target).__name__} has {len(layout)}: wrong architecture for these weights"
        )
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(.+)", key)
        if m:
            prefix, kind = layout[int(m.group(1))]
            new = prefix + "." + _rename(m.group(2), _LM_DS if kind == "ds" else _LM_IR, key)
        else:
            new = _rename(key, _LM_TOP, key)
        out[new] = value
    return _checked(out, target, "EfficientNet (lukemelas layout)")


def looks_like_torchvision_mobilenetv2(keys: set[str]) -> bool:
    """Whether a state dict's keys have torchvision's MobileNetV2 layout."""
    return "features.0.0.weight" in keys and "classifier.1.weight" in keys


def looks_like_lukemelas_efficientnet(keys: set[str]) -> bool:
    """Whether a state dict's keys have the lukemelas EfficientNet layout."""
    return "_conv_stem.weight" in keys and "_fc.weight" in keys


def _rename(rest: str, table: Mapping[str, str], key: str) -> str:
    # Longest matching module prefix wins ("conv.0.0" before "conv.0").
    for old in sorted(table, key=len, reverse=True):
        if rest == old or rest.startswith(old + "."):
            return table[old] + rest[len(old):]
    raise HubError(f"cannot map weight '{key}' onto timm's layout")


def _checked(
    converted: dict[str, torch.Tensor], target: nn.Module, what: str
) -> dict[str, torch.Tensor]:
    expected = target.state_dict()
    missing = sorted(set(expected) - set(converted))
    extra = sorted(set(converted) - set(expected))
    if missing or extra:
        raise HubError(
            f"converted {what} weights do not fit timm's {type(target).__name__}: "
            f"missing {missing[:5]}, unexpected {extra[:5]}"
        )
    for key, value in converted.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise HubError(
                f"converted {what} weight '{key}' has shape {tuple(value.shape)}, "
                f"timm expects {tuple(expected[key].shape)}"
            )
    return converted
