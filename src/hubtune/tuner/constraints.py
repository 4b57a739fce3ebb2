"""Deployment constraints of a search: ``--max-latency-ms``, ``--max-params``, ``--max-gflops``.

A model that violates a limit is removed from the search's model list before the
optimizer is built, so no candidate of it is ever proposed (latency, parameters
and GFLOPs are properties of the model at the run's fixed image size, not of the
hyperparameters). Parameters and GFLOPs are the hub descriptor's figures (as
``hubtune hub list`` shows them: ImageNet head, the model's native input size).
Latency is measured here, on the run's device: a forward pass at batch 1 (what
``--max-latency-ms`` limits) and at ``--latency-batch`` images, at the run's image
size and the dataset's number of classes, under ``torch.inference_mode`` with the
run's thread count, warm-up passes first, then the median of ``repeats`` timed
passes. Measurements are cached in ``RUN/latency.json`` and reused by a resumed run.

Example::

    >>> limits = Limits(max_params=0.4)
    >>> decide(["test_resnet", "test_convnext"], limits, {}).allowed
    ['test_convnext']
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hubtune.core.errors import RunError

LATENCY_FILE = "latency.json"
WARMUP = 5
REPEATS = 20


@dataclass(frozen=True)
class Limits:
    """The run's deployment limits (``None``: no limit)."""

    max_latency_ms: float | None = None
    max_params: float | None = None  # millions
    max_gflops: float | None = None
    latency_batch: int = 32

    @property
    def active(self) -> bool:
        """Whether any limit is set."""
        return any(v is not None for v in (self.max_latency_ms, self.max_params, self.max_gflops))

    def describe(self) -> str:
        """The limits as CLI flags, e.g. ``--max-latency-ms 2.5, --max-params 0.4``."""
        parts = [f"{flag} {value:g}" for flag, value in (
            ("--max-latency-ms", self.max_latency_ms), ("--max-params", self.max_params),
            ("--max-gflops", self.max_gflops)) if value is not None]
        return ", ".join(parts)


@dataclass(frozen=True)
class Conditions:
    """What a latency measurement depends on; a cache made under others is not reused."""

    device: str
    image_size: int
    num_classes: int
    num_threads: int | None
    batches: tuple[int, ...]
    warmup: int = WARMUP
    repeats: int = REPEATS

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["batches"] = list(self.batches)
        return d


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def measure_latency(name: str, cond: Conditions) -> dict[str, Any]:
    """Time forward passes of hub model ``name`` (random init) under ``cond``.

    Returns ``{"ms": {batch: median ms}, "spread_ms": {batch: max - min ms},
    "measured_at": unix time, "seconds": wall time of the measurement}``.
    """
    import torch

    from hubtune.hub import create_model

    t_start = time.time()
    old_threads = torch.get_num_threads()
    if cond.num_threads:
        torch.set_num_threads(cond.num_threads)
    try:
        device = torch.device(cond.device)
        model = create_model(name, num_classes=cond.num_classes, pretrained=False).model
        model = model.to(device).eval()
        ms: dict[str, float] = {}
        spread: dict[str, float] = {}
        with torch.inference_mode():
            for batch in cond.batches:
                x = torch.randn(batch, 3, cond.image_size, cond.image_size, device=device)
                for _ in range(cond.warmup):
                    model(x)
                _sync(device)
                times = []
                for _ in range(cond.repeats):
                    t = time.perf_counter()
                    model(x)
                    _sync(device)
                    times.append(1000 * (time.perf_counter() - t))
                ms[str(batch)] = round(statistics.median(times), 4)
                spread[str(batch)] = round(max(times) - min(times), 4)
        del model
    finally:
        torch.set_num_threads(old_threads)
    return {"ms": ms, "spread_ms": spread, "measured_at": t_start,
            "seconds": round(time.time() - t_start, 3)}


def read_cache(path: Path, cond: Conditions) -> dict[str, dict[str, Any]]:
    """The cached measurements in ``path`` made under ``cond`` (``{}`` if none or others)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("conditions") != cond.to_dict():
        return {}
    models = data.get("models")
    return dict(models) if isinstance(models, dict) else {}


def write_cache(path: Path, cond: Conditions, models: dict[str, dict[str, Any]]) -> None:
    """Write ``models``' measurements with their conditions to ``path`` (atomically)."""
    from hubtune.core.atomic import write_json_atomic

    write_json_atomic(path, {"conditions": cond.to_dict(), "models": models})


def latencies(models: Sequence[str], cond: Conditions, cache: Path,
              measure: Callable[[str, Conditions], dict[str, Any]] = measure_latency,
              on_model: Callable[[str], None] | None = None,
              ) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Measurements of ``models`` under ``cond``: cached ones from ``cache``, others measured.

    Returns ``(measurements, newly measured names)``; nothing is written here (the
    caller writes the cache once the run folder is claimed).
    """
    known = read_cache(cache, cond)
    new = [m for m in models if m not in known]
    for m in new:
        if on_model is not None:
            on_model(m)
        try:
            known[m] = measure(m, cond)
        except (RuntimeError, ValueError) as exc:  # e.g. the device is not usable here
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RunError(f"--max-latency-ms: measuring {m} on {cond.device} failed: "
                           f"{first}") from None
    return {m: known[m] for m in models}, new


@dataclass
class Decision:
    """Which models the search may use under the limits, and why the others may not."""

    allowed: list[str]
    excluded: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)

    def note(self, limits: Limits) -> dict[str, Any]:
        """The journal note (``what="constraints"``) recording these decisions."""
        return {"limits": {k: v for k, v in asdict(limits).items() if v is not None},
                "allowed": list(self.allowed), "excluded": list(self.excluded),
                "figures": self.figures}


def _figures(name: str, latency: dict[str, dict[str, Any]], batch: int) -> dict[str, Any]:
    from hubtune.hub import get_descriptor

    d = get_descriptor(name)
    fig: dict[str, Any] = {"params_m": d.params_m, "gflops": d.gflops}
    if name in latency:
        fig["latency_ms"] = latency[name]["ms"].get("1")
        fig[f"latency_batch{batch}_ms"] = latency[name]["ms"].get(str(batch))
    return fig


def _violations(fig: dict[str, Any], limits: Limits) -> list[str]:
    out = []
    for key, limit, unit in (("latency_ms", limits.max_latency_ms, "ms"),
                             ("params_m", limits.max_params, "M params"),
                             ("gflops", limits.max_gflops, "GFLOPs")):
        value = fig.get(key)
        if limit is not None and value is not None and not value <= limit:
            out.append(f"{value:.3g} {unit} > {limit:g} {unit}")
        elif limit is not None and value is None:
            out.append(f"{key} unknown")
    return out


def _best_of(figures: dict[str, dict[str, Any]], limits: Limits) -> str:
    parts = []
    for key, limit, what, unit in (("latency_ms", limits.max_latency_ms, "fastest", "ms"),
                                   ("params_m", limits.max_params, "smallest", "M params"),
                                   ("gflops", limits.max_gflops, "cheapest", "GFLOPs")):
        known = {m: f[key] for m, f in figures.items()
                 if isinstance(f.get(key), (int, float)) and math.isfinite(f[key])}
        if limit is None or not known:
            continue
        m = min(known, key=known.__getitem__)
        parts.append(f"the {what}, {m}, has {known[m]:.3g} {unit}")
    return "; ".join(parts)


def decide(models: Sequence[str], limits: Limits,
           latency: dict[str, dict[str, Any]]) -> Decision:
    """Split ``models`` into allowed and excluded under ``limits``.

    ``latency``: measurements (see :func:`latencies`); a latency limit with a model
    left unmeasured is not checked for it here (call again once measured).

    Raises:
        RunError: every model violates a limit (one line naming the limits and
            the best model's figures).
    """
    figures = {m: _figures(m, latency, limits.latency_batch) for m in models}
    allowed, excluded = [], []
    for m in models:
        why = _violations(figures[m], limits if m in latency
                          else replace(limits, max_latency_ms=None))
        if why:
            excluded.append({"model": m, "why": why, **figures[m]})
        else:
            allowed.append(m)
    if not allowed:
        raise RunError(f"every model violates the deployment limits ({limits.describe()}): "
                       f"{_best_of(figures, limits)}; relax a limit or choose other models")
    return Decision(allowed, excluded, figures)


def excluded_summary(decision: Decision) -> str:
    """One line naming the excluded models and why, e.g. for the display."""
    return "; ".join(f"{e['model']} ({', '.join(e['why'])})" for e in decision.excluded)
