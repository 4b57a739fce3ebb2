"""The one typed finetuning configuration shared by sampler, surrogate and trainer.

A :class:`Config` names a hub model and every finetuning hyperparameter of the
Quick-Tune "v6" search space (plus the few extra ones the Quick-Tune
meta-dataset recorded: ``amp``, ``cotuning_reg``, batch sizes up to 512).
Conditional hyperparameters are ``None`` when inactive, so two configs that
train identically compare equal.

Example:
    >>> cfg = Config(model="mobilenetv2_100", opt="sgd", lr=0.01)
    >>> Config.from_json(cfg.to_json()) == cfg
    True
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

Optimizer = Literal["sgd", "momentum", "adam", "adamw", "adamp"]
Schedule = Literal["cosine", "step", "multistep", "plateau"]
Augmentation = Literal["none", "trivial_augment", "random_augment", "auto_augment"]
AutoAugmentPolicy = Literal["v0", "original"]

OPTIMIZERS: tuple[str, ...] = ("sgd", "momentum", "adam", "adamw", "adamp")
ADAM_FAMILY: tuple[str, ...] = ("adam", "adamw", "adamp")
SCHEDULES: tuple[str, ...] = ("cosine", "step", "multistep", "plateau")
AUGMENTATIONS: tuple[str, ...] = ("none", "trivial_augment", "random_augment", "auto_augment")
AUTO_AUGMENT_POLICIES: tuple[str, ...] = ("v0", "original")


class ConfigError(ValueError):
    """Raised when a configuration is invalid; the message names the problem."""


def _active_conditionals(opt: str, sched: str, data_augmentation: str) -> set[str]:
    """Names of the conditional hyperparameters that are active for these parents."""
    active: set[str] = set()
    if opt in ADAM_FAMILY:
        active.add("opt_betas")
    if opt == "momentum":
        active.add("momentum")
    if sched in ("step", "multistep", "plateau"):
        active.add("decay_rate")
    if sched in ("step", "multistep"):
        active.add("decay_epochs")
    if sched == "plateau":
        active.add("patience_epochs")
    if data_augmentation == "random_augment":
        active.update(("ra_num_ops", "ra_magnitude"))
    if data_augmentation == "auto_augment":
        active.add("auto_augment")
    return active


LINEAR_PROBING_FRACTION = 0.2
"""Share of ``max_epochs`` spent in the linear-probing (head-only) phase."""


def linear_probing_epochs(max_epochs: int) -> int:
    """Length of the head-only phase for ``linear_probing=True``.

    ``round(0.2 * max_epochs)``, at least 1, and at most ``max_epochs - 1`` so
    the full finetuning phase always gets at least one epoch (for
    ``max_epochs == 1`` the single epoch is linear probing).

    >>> [linear_probing_epochs(m) for m in (1, 2, 4, 10, 50)]
    [1, 1, 1, 2, 10]
    """
    lp = max(1, round(LINEAR_PROBING_FRACTION * max_epochs))
    return min(lp, max(1, max_epochs - 1))


CONDITIONAL_DEFAULTS: dict[str, Any] = {
    "opt_betas": (0.9, 0.999),
    "momentum": 0.9,
    "decay_rate": 0.1,
    "decay_epochs": 20,
    "patience_epochs": 5,
    "ra_num_ops": 2,
    "ra_magnitude": 9,
    "auto_augment": "v0",
}
"""Value a conditional hyperparameter takes when it becomes active without one."""


@dataclass(frozen=True)
class Config:
    """A finetuning configuration: which hub model, and how to finetune it.

    Attributes follow the Quick-Tune search space. ``None`` means "inactive"
    for conditional hyperparameters and "off" for ``clip_grad`` and
    ``layer_decay``. Construct with keyword arguments; invalid values raise
    :class:`ConfigError`.
    """

    model: str
    # what to train
    pct_to_freeze: float = 0.0
    linear_probing: bool = False
    stoch_norm: bool = False
    # optimisation
    batch_size: int = 32
    opt: Optimizer = "adamw"
    opt_betas: tuple[float, float] | None = field(default=None)
    momentum: float | None = None
    lr: float = 1e-3
    weight_decay: float = 1e-4
    clip_grad: float | None = None
    layer_decay: float | None = None
    # schedule (defined over the maximum number of epochs)
    sched: Schedule = "cosine"
    decay_rate: float | None = None
    decay_epochs: int | None = None
    patience_epochs: int | None = None
    warmup_epochs: int = 0
    warmup_lr: float = 0.0
    # finetuning regularizers
    sp_reg: float = 0.0
    delta_reg: float = 0.0
    bss_reg: float = 0.0
    cotuning_reg: float = 0.0
    # data regularization
    mixup: float = 0.0
    cutmix: float = 0.0
    mixup_prob: float = 0.0
    smoothing: float = 0.0
    drop: float = 0.0
    data_augmentation: Augmentation = "none"
    ra_num_ops: int | None = None
    ra_magnitude: int | None = None
    auto_augment: AutoAugmentPolicy | None = None
    # numerics
    amp: bool = True

    def __post_init__(self) -> None:
        # Fill conditionals that became active without a value; reject values
        # given for inactive ones (they would be silently ignored otherwise).
        active = _active_conditionals(self.opt, self.sched, self.data_augmentation)
        for name, default in CONDITIONAL_DEFAULTS.items():
            value = getattr(self, name)
            if name in active and value is None:
                object.__setattr__(self, name, default)
            elif name not in active and value is not None:
                raise ConfigError(
                    f"{name}={value!r} has no effect with opt={self.opt!r}, "
                    f"sched={self.sched!r}, data_augmentation={self.data_augmentation!r}; "
                    f"leave it unset (None) or use Config.replace(), which drops it"
                )
        if self.opt_betas is not None:
            object.__setattr__(self, "opt_betas", tuple(float(b) for b in self.opt_betas))
        self._validate()

    # ------------------------------------------------------------------ checks
    def _bad(self, name: str, why: str) -> ConfigError:
        return ConfigError(f"invalid {name}={getattr(self, name)!r}: {why}")

    def _validate(self) -> None:
        """Check every field (the first problem found is raised); numbers become floats."""
        self._validate_choices_and_counts()
        self._validate_numbers()

    def _validate_choices_and_counts(self) -> None:
        bad = self._bad
        if not isinstance(self.model, str) or not self.model:
            raise bad("model", "must be a non-empty model name")
        if self.opt not in OPTIMIZERS:
            raise bad("opt", f"must be one of {OPTIMIZERS}")
        if self.sched not in SCHEDULES:
            raise bad("sched", f"must be one of {SCHEDULES}")
        if self.data_augmentation not in AUGMENTATIONS:
            raise bad("data_augmentation", f"must be one of {AUGMENTATIONS}")
        if self.auto_augment is not None and self.auto_augment not in AUTO_AUGMENT_POLICIES:
            raise bad("auto_augment", f"must be one of {AUTO_AUGMENT_POLICIES}")
        for name in ("linear_probing", "stoch_norm", "amp"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "must be true or false")
        for name in ("batch_size", "warmup_epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise bad(name, "must be an integer")
        if not 1 <= self.batch_size <= 4096:
            raise bad("batch_size", "must be between 1 and 4096")
        if self.warmup_epochs < 0:
            raise bad("warmup_epochs", "must be >= 0")
        for name in ("decay_epochs", "patience_epochs", "ra_num_ops", "ra_magnitude"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise bad(name, "must be a non-negative integer")
        if self.decay_epochs is not None and self.decay_epochs < 1:
            raise bad("decay_epochs", "must be >= 1")

    def _validate_numbers(self) -> None:
        bad = self._bad
        floats = (
            "pct_to_freeze", "lr", "weight_decay", "warmup_lr", "sp_reg", "delta_reg",
            "bss_reg", "cotuning_reg", "mixup", "cutmix", "mixup_prob", "smoothing", "drop",
        )
        for name in floats:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise bad(name, "must be a finite number")
            if v < 0:
                raise bad(name, "must be >= 0")
            object.__setattr__(self, name, float(v))
        if not 0 < self.lr <= 10:
            raise bad("lr", "must be in (0, 10]")
        for name in ("pct_to_freeze", "mixup_prob", "drop"):
            if getattr(self, name) > 1:
                raise bad(name, "must be in [0, 1]")
        if self.smoothing >= 1:
            raise bad("smoothing", "must be in [0, 1)")
        if self.momentum is not None and not 0 <= self.momentum < 1:
            raise bad("momentum", "must be in [0, 1)")
        if self.decay_rate is not None and not 0 <= self.decay_rate <= 1:
            raise bad("decay_rate", "must be in [0, 1]")
        if self.opt_betas is not None and (
            len(self.opt_betas) != 2 or not all(0 <= b < 1 for b in self.opt_betas)
        ):
            raise bad("opt_betas", "must be two numbers in [0, 1)")
        if self.clip_grad is not None and not self.clip_grad > 0:
            raise bad("clip_grad", "must be > 0 or null (no clipping)")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise bad("layer_decay", "must be in (0, 1] or null (off)")

    # ------------------------------------------------------------ conversion
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        if d["opt_betas"] is not None:
            d["opt_betas"] = list(d["opt_betas"])
        return d

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict` (keys sorted, stable)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Build a config from a dict, rejecting unknown keys by name."""
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown hyperparameter(s): {', '.join(unknown)}")
        if "model" not in data:
            raise ConfigError("a config must name a model")
        kwargs = dict(data)
        if kwargs.get("opt_betas") is not None:
            kwargs["opt_betas"] = tuple(kwargs["opt_betas"])
        try:
            return cls(**kwargs)
        except TypeError as exc:  # pragma: no cover - dataclass signature errors
            raise ConfigError(str(exc)) from None

    @classmethod
    def from_json(cls, text: str) -> Config:
        """Parse JSON text produced by :meth:`to_json` (or written by a user)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied; conditionals made inactive are dropped."""
        data = self.to_dict()
        data.update(changes)
        active = _active_conditionals(data["opt"], data["sched"], data["data_augmentation"])
        for name in CONDITIONAL_DEFAULTS:
            if name not in active and name not in changes:
                data[name] = None
        return Config.from_dict(data)

    def active_hyperparameters(self) -> dict[str, Any]:
        """The hyperparameters that affect training (inactive conditionals left out)."""
        active = _active_conditionals(self.opt, self.sched, self.data_augmentation)
        return {
            k: v
            for k, v in self.to_dict().items()
            if k not in CONDITIONAL_DEFAULTS or k in active
        }

    def effective_key(self) -> str:
        """Like :meth:`key`, but equal for configs that train identically.

        Values without effect are normalised first: ``warmup_lr`` without warmup
        epochs, and the mixing strengths/probability when no mixing happens
        (``mixup_prob == 0`` or ``mixup == cutmix == 0``). Search-space samplers use
        it so a "new" candidate is never a no-op variant of one already there.
        """
        import hashlib

        d = self.to_dict()
        if self.warmup_epochs == 0:
            d["warmup_lr"] = 0.0
        if self.mixup_prob == 0 or (self.mixup == 0 and self.cutmix == 0):
            d["mixup"] = d["cutmix"] = d["mixup_prob"] = 0.0
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def key(self) -> str:
        """A short stable identifier of this configuration (hash of its JSON)."""
        import hashlib

        return hashlib.sha1(self.to_json().encode()).hexdigest()[:12]


def hyperparameter_names() -> list[str]:
    """Every field of :class:`Config`, in declaration order."""
    return [f.name for f in dataclasses.fields(Config)]
