"""What a meta-dataset generation runs: dataset specs, its settings, the planned runs and their outcomes."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hubtune.core.metafeatures import DatasetMetaFeatures
from hubtune.core.records import EpochRecord
from hubtune.metagen.design import design_configs
from hubtune.space.config import Config

RESULT_FILE = "result.json"
SETTINGS_FILE = "generate.json"
SUMMARY_FILE = "summary.json"
LOCK_FILE = ".generate.lock"
RESULT_FORMAT = 1


class GenerateError(ValueError):
    """Bad input for meta-dataset generation (the message names the problem)."""


# ------------------------------------------------------------------ datasets
@dataclass(frozen=True)
class DatasetSpec:
    """One dataset to generate runs on.

    Attributes:
        source: what :func:`hubtune.data.load_dataset` takes (built-in name or folder).
        name: the dataset's name in the meta-dataset.
        subset: stratified training-subset size, or ``None`` for all images.
        data_seed: seed of the split and the subset.
    """

    source: str
    name: str
    subset: int | None
    data_seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetSpec:
        return cls(str(data["source"]), str(data["name"]),
                   None if data.get("subset") is None else int(data["subset"]), int(data["data_seed"]))


_SEED_SUFFIX = re.compile(r"^(.*)@(\d+)$")
_NAME_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def parse_datasets(text: str | Sequence[str], seed: int = 0, subset: int | None = None) -> list[DatasetSpec]:
    """Parse ``"fashion-mnist:600,animal-mnist:600@1,path/to/folder"`` into :class:`DatasetSpec` s.

    Each entry is a built-in name (``fashion-mnist``, ``animal-mnist``, ``digits``,
    optionally ``:K`` for a K-image training subset) or an ImageFolder path, with an
    optional ``@S`` suffix for the split/subset seed (default ``seed``). ``subset``
    applies to entries without their own ``:K``. Names in the meta-dataset are
    ``fashion-mnist-600``, ``animal-mnist-600-seed1``, ``<folder name>[-K]``.

    Raises:
        GenerateError: an empty list, an unknown name/path, or two entries with one name.
    """
    from hubtune.data import DataError, parse_builtin_name

    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if not items:
        raise GenerateError("no datasets given: pass e.g. --datasets fashion-mnist:600,digits")
    specs: list[DatasetSpec] = []
    for item in items:
        data_seed = seed
        m = _SEED_SUFFIX.match(item)
        body = item
        if m and not Path(item).exists():
            body, data_seed = m.group(1), int(m.group(2))
        try:
            builtin = parse_builtin_name(body)
        except DataError as exc:
            raise GenerateError(str(exc)) from None
        if builtin is not None:
            base, own_subset = builtin
            source = base
        else:
            path = Path(body).expanduser()
            if not path.is_dir():
                raise GenerateError(
                    f"dataset {item!r} is neither a built-in dataset (fashion-mnist, animal-mnist, "
                    f"digits; optionally ':K' and '@SEED') nor an existing folder"
                )
            source, own_subset = str(path.resolve()), None
            base = _NAME_SAFE.sub("-", path.resolve().name) or "folder"
        k = own_subset if own_subset is not None else subset
        if k is not None and k <= 0:
            raise GenerateError(f"subset size must be positive, got {k} in {item!r}")
        name = base + (f"-{k}" if k is not None else "") + (f"-seed{data_seed}" if data_seed != seed else "")
        specs.append(DatasetSpec(source, name, k, data_seed))
    names = Counter(s.name for s in specs)
    clash = [n for n, c in names.items() if c > 1]
    if clash:
        raise GenerateError(f"dataset(s) given twice: {', '.join(clash)} (use '@SEED' for another split)")
    return specs


# ------------------------------------------------------------------ settings
@dataclass
class GenerateSettings:
    """What defines the runs (stored as ``generate.json``; must match when resuming).

    ``device``, ``num_threads`` and ``keep_checkpoints`` may change between
    invocations; the rest may not (the recorded runs would mean something else).
    """

    models: list[str]
    max_epochs: int = 4
    image_size: int = 32
    seed: int = 0
    space: dict[str, Any] | None = None
    portfolio: bool = True
    extra_configs: list[dict[str, Any]] = field(default_factory=list)
    pretrained: bool = True
    device: str = "cpu"
    num_threads: int | None = 1
    keep_checkpoints: bool = False

    CHANGEABLE = ("device", "num_threads", "keep_checkpoints")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerateSettings:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def search_space(self):
        """The :class:`~hubtune.space.SearchSpace` the design samples."""
        from hubtune.space import SearchSpace

        spec = dict(self.space or {})
        if not self.pretrained:
            # Co-Tuning needs the pretrained ImageNet head (as in `hubtune run --no-pretrained`).
            spec["fixed"] = {**spec.get("fixed", {}), "cotuning_reg": 0.0}
        return SearchSpace.from_dict(spec, models=self.models, schedule_epochs=self.max_epochs)


@dataclass(frozen=True)
class RunTask:
    """One (dataset, config) run."""

    dataset: DatasetSpec
    run_id: str
    origin: str
    config: Config

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset.to_dict(), "run_id": self.run_id, "origin": self.origin,
                "config": self.config.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunTask:
        return cls(DatasetSpec.from_dict(data["dataset"]), str(data["run_id"]), str(data["origin"]),
                   Config.from_dict(data["config"]))


@dataclass
class RunOutcome:
    """What one run produced: ``status`` is ``ok``, ``diverged`` or ``failed`` (with ``reason``)."""

    task: RunTask
    status: str
    reason: str | None
    records: list[EpochRecord]
    meta_features: DatasetMetaFeatures | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RESULT_FORMAT,
            **self.task.to_dict(),
            "status": self.status,
            "reason": self.reason,
            "seconds": self.seconds,
            "meta_features": None if self.meta_features is None else self.meta_features.to_dict(),
            "records": [r.to_dict() for r in self.records],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunOutcome:
        mf = data.get("meta_features")
        return cls(
            RunTask.from_dict(data), str(data["status"]), data.get("reason"),
            [EpochRecord.from_dict(r) for r in data.get("records", [])],
            None if mf is None else DatasetMetaFeatures.from_dict(mf), float(data.get("seconds", 0.0)),
        )


# ------------------------------------------------------------------ planning
def plan_runs(settings: GenerateSettings, datasets: Sequence[DatasetSpec], n_configs: int) -> list[RunTask]:
    """Every (dataset, config) run, round robin over datasets (config 0 of each, then 1, ...).

    Every dataset gets the same design, so curves are comparable across datasets.
    Run ids are ``<index>-<origin>-<config key>`` and stable under a longer design.
    """
    from hubtune.space import ConfigError

    space = settings.search_space()
    try:
        extra = [Config.from_dict(c) for c in settings.extra_configs]
    except ConfigError as exc:
        raise GenerateError(f"a given configuration is invalid: {exc}") from None
    design = design_configs(space, n_configs, seed=settings.seed, portfolio=settings.portfolio, extra=extra)
    return [
        RunTask(ds, f"{i:03d}-{origin}-{cfg.key()}", origin, cfg)
        for i, (origin, cfg) in enumerate(design)
        for ds in datasets
    ]
