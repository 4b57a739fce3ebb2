"""Method registry: benchmark/CLI method name -> optimizer factory.

Every search method (hubtune's Quick-Tune, the simple baselines, the wrapped
peers) is registered under a short name with a factory
``make(ctx: TaskContext) -> Optimizer``. A factory may be given as an import
path ``"package.module:attribute"`` so that a method's (possibly heavy)
imports only happen when it is used.

Example:
    >>> from hubtune.optim.registry import get_method, list_methods
    >>> "random" in [m.name for m in list_methods()]
    True
    >>> get_method("random").needs_metadata
    False

Registering a method (from your own module, or in :func:`_register_builtins`)::

    register_method("my_method", "my_package.my_module:make",
                    needs_metadata=True, description="what it does")

Extra keyword options bound at registration (``options={...}``) are passed
to the factory as ``factory(ctx, **options)``, so one factory can back
several variants (e.g. ``qtt`` and ``qtt_cost``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hubtune.protocol.context import TaskContext
    from hubtune.protocol.steps import Optimizer

FactoryRef = str | Callable[..., Any]
"""A factory callable, or its import path ``"module:attribute"``."""


class UnknownMethodError(KeyError):
    """Raised for a method name that is not registered; the message lists known names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class MethodRegistrationError(ValueError):
    """Raised for an invalid registration (bad name, bad factory path, duplicate)."""


@dataclass(frozen=True)
class MethodSpec:
    """A registered search method.

    Attributes:
        name: registry name (what ``--methods`` accepts).
        factory: the factory, or its lazy import path ``"module:attribute"``.
        needs_metadata: the method meta-learns from ``ctx.train_metadata``
            (the benchmark then passes a leakage-free meta-training set).
        supports_async: the method can have several pending steps at once
            (several simulated or real workers).
        subprocess: the method runs in its own process/virtual environment
            (its decision time is then measured in wall-clock seconds).
        description: one line shown by ``hubtune bench --list-methods``.
        options: keyword arguments bound to the factory.
        prepare: optional offline preparation ``prepare(ctx, **options)`` (or its
            ``"module:attribute"`` path), e.g. meta-training and caching a
            per-fold surrogate. The benchmark runs it before the simulated clock
            starts; the factory, which is charged, should then only load the result.
    """

    name: str
    factory: FactoryRef
    needs_metadata: bool = False
    supports_async: bool = False
    subprocess: bool = False
    description: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    prepare: FactoryRef | None = None

    def load(self) -> Callable[..., Any]:
        """Import (if lazy) and return the factory callable."""
        return self._resolve(self.factory)

    def run_prepare(self, ctx: TaskContext) -> None:
        """Run the method's offline preparation for ``ctx`` (no-op without one)."""
        if self.prepare is not None:
            self._resolve(self.prepare)(ctx, **dict(self.options))

    def _resolve(self, ref: FactoryRef) -> Callable[..., Any]:
        if callable(ref):
            return ref
        module_name, _, attr = ref.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ImportError(
                f"method {self.name!r}: cannot import {module_name!r} ({exc}); "
                f"is the package providing it installed?"
            ) from exc
        try:
            return getattr(module, attr)
        except AttributeError:
            raise ImportError(
                f"method {self.name!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None

    def make(self, ctx: TaskContext) -> Optimizer:
        """Build the method's optimizer for one task."""
        return self.load()(ctx, **dict(self.options))


_REGISTRY: dict[str, MethodSpec] = {}
_BUILTINS_LOADED = False

def register_method(
    name: str,
    factory: FactoryRef,
    *,
    needs_metadata: bool = False,
    supports_async: bool = False,
    subprocess: bool = False,
    description: str = "",
    options: Mapping[str, Any] | None = None,
    replace: bool = False,
    prepare: FactoryRef | None = None,
) -> MethodSpec:
    """Register ``factory`` under ``name`` and return its :class:`MethodSpec`.

    ``factory`` is a callable ``make(ctx, **options) -> Optimizer`` or a lazy
    import path ``"module:attribute"``; so is ``prepare`` (see :class:`MethodSpec`). Registering a taken name raises
    :class:`MethodRegistrationError` unless ``replace=True``.
    """
    if not isinstance(name, str) or not name or any(c in name for c in " ,/\\:"):
        raise MethodRegistrationError(
            f"invalid method name {name!r}: use a non-empty name without spaces, commas, "
            f"slashes or colons"
        )
    for what, ref in (("factory", factory), ("prepare", prepare)):
        if ref is None and what == "prepare":
            continue
        if isinstance(ref, str):
            module_name, sep, attr = ref.partition(":")
            if not sep or not module_name or not attr:
                raise MethodRegistrationError(
                    f"method {name!r}: {what} path {ref!r} must look like 'module:attribute'"
                )
        elif not callable(ref):
            raise MethodRegistrationError(
                f"method {name!r}: {what} must be callable or a 'module:attribute' path"
            )
    if name in _REGISTRY and not replace:
        raise MethodRegistrationError(f"method {name!r} is already registered")
    spec = MethodSpec(
        name=name,
        factory=factory,
        needs_metadata=needs_metadata,
        supports_async=supports_async,
        subprocess=subprocess,
        description=description,
        options=dict(options or {}),
        prepare=prepare,
    )
    _REGISTRY[name] = spec
    return spec


def unregister_method(name: str) -> None:
    """Remove a registered method (mainly for tests); unknown names are ignored."""
    _REGISTRY.pop(name, None)


def get_method(name: str) -> MethodSpec:
    """The :class:`MethodSpec` registered under ``name``.

    Raises:
        UnknownMethodError: no such method (the message lists the known ones).
    """
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise UnknownMethodError(f"unknown method {name!r}; known methods: {known}") from None


def list_methods() -> list[MethodSpec]:
    """All registered methods, sorted by name."""
    _ensure_loaded()
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


def _ensure_loaded() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    _register_builtins()


# Long by design: a declarative table, one register_method call per built-in method and its
# description; splitting it would only scatter the list of what `--optimizer` accepts.
def _register_builtins() -> None:
    """hubtune's own methods (lazy paths: nothing heavy is imported here)."""
    builtin = [
        ("random", "hubtune.optim.random_search:make_random_search", False, True,
         "uniform random configs without replacement, each trained to max_epochs in one step"),
        ("asha", "hubtune.optim.asha:make_asha", False, True,
         "asynchronous successive halving (rungs 1,3,9,27,max; eta=3), promotions continue "
         "from the checkpoint"),
        ("hyperband", "hubtune.optim.asha:make_hyperband", False, True,
         "Hyperband brackets of successive halving (eta=3), promotions continue from the "
         "checkpoint"),
        ("one_epoch_topk", "hubtune.optim.baselines:make_one_epoch_topk", False, True,
         "every candidate 1 epoch (random order), then top 10% to 3 epochs, halving up to "
         "max_epochs"),
        ("largest_model_default", "hubtune.optim.baselines:make_largest_model_default",
         False, True,
         "largest model first with the config closest to a default, trained to the end"),
        ("best_on_average", "hubtune.optim.baselines:make_best_on_average", True, True,
         "configs ranked by mean normalized final score on the meta-training datasets, "
         "trained to the end in that order"),
        ("defaults", "hubtune.optim.defaults:make_default_configs", False, True,
         "every model with default hyperparameters, round robin one epoch at a time "
         "(the practitioner's baseline for hubtune run)"),
    ]
    for name, path, needs_md, is_async, desc in builtin:
        register_method(
            name, path, needs_metadata=needs_md, supports_async=is_async, description=desc,
            replace=True,
        )
    register_method(
        "defaults_sequential", "hubtune.optim.defaults:make_default_configs",
        supports_async=True, options={"order": "sequential"}, replace=True,
        description="every model with default hyperparameters, one model at a time to the "
        "end of its schedule, cheapest first",
    )
    # Quick-Tune and its ablations: one factory, per-fold surrogate meta-trained in `prepare`.
    quicktune = [
        ("quicktune", "full",
         "Quick-Tune: meta-learned deep-kernel GP over config, model descriptors, curve and "
         "budget; EI per predicted second over several step lengths (freeze-thaw)"),
        ("qt_no_meta", "no_meta", "Quick-Tune ablation: surrogate not meta-trained"),
        ("qt_no_cost", "no_cost", "Quick-Tune ablation: EI without dividing by predicted cost"),
        ("qt_blackbox", "blackbox", "Quick-Tune ablation: full curves only (no freeze-thaw)"),
        ("qt_onehot", "onehot",
         "Quick-Tune ablation: model one-hot instead of hub descriptor features"),
        ("qt_specialised", "specialised",
         "Quick-Tune with the shipped surrogate meta-trained further on the fold's meta-training data"),
    ]
    for name, variant, desc in quicktune:
        register_method(
            name, "hubtune.optim.qt_factory:make_quicktune", needs_metadata=True,
            supports_async=True, description=desc, options={"variant": variant},
            prepare="hubtune.optim.qt_factory:prepare_quicktune", replace=True,
        )
    register_method(
        "qt_shipped", "hubtune.optim.qt_factory:make_quicktune", supports_async=True,
        description="Quick-Tune with the shipped surrogate as is (no per-fold meta-training)",
        options={"variant": "full"}, replace=True,
    )
    # Quick-Tune with one end-of-budget setting switched on (both off in `quicktune`), and
    # `quicktune` as it was before issue #13's per-task calibration and installments.
    settings_variants = [
        ("qt_main", {"calibrate_new": None, "calibrate_continue": None, "installment_growth": None,
                     "finish_reserve": False},
         "Quick-Tune before issue #13: no per-task calibration, every winning step runs in full, "
         "no finish reserve (the reference of the issue's replays and real runs)"),
        ("qt_finish", {"finish_reserve": True},
         "Quick-Tune variant: keeps the time to train the most promising started "
         "trial to the end of its schedule (the default when searching a search space)"),
        ("qt_endgame", {"endgame": True},
         "Quick-Tune variant: no new config starts once it cannot reach the "
         "incumbent's epoch before the budget ends"),
    ]
    for name, extra, desc in settings_variants:
        register_method(
            name, "hubtune.optim.qt_factory:make_quicktune", needs_metadata=True,
            supports_async=True, description=desc, options={"variant": "full", **extra},
            prepare="hubtune.optim.qt_factory:prepare_quicktune", replace=True,
        )
