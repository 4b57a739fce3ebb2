"""What an optimizer is told about the task it searches.

Every optimizer (hubtune's own, the baselines, the wrapped peers) is built by
a factory ``make(ctx: TaskContext) -> Optimizer``. On a tabular benchmark the
candidates are the table's runs of the test dataset; on a user's data they are
drawn from ``space``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from hubtune.core.metafeatures import DatasetMetaFeatures
from hubtune.hub.descriptor import ModelDescriptor
from hubtune.space.config import Config

if TYPE_CHECKING:  # imported for annotations only (keeps this module light)
    from hubtune.metadata import MetaDataset
    from hubtune.protocol.steps import Optimizer
    from hubtune.space.searchspace import SearchSpace


@dataclass(frozen=True)
class Candidate:
    """One configuration the optimizer may start, under a stable trial id."""

    trial_id: str
    config: Config


@dataclass
class TaskContext:
    """Everything an optimizer may use about the target task.

    Attributes:
        max_epochs: the highest fidelity (epochs) any trial may reach.
        seed: the optimizer's random seed.
        candidates: a fixed pool of configurations (tabular benchmark), or ``None``.
        space: the search space to sample from when ``candidates`` is ``None``.
        meta_features: the target dataset's meta-features.
        train_metadata: meta-training data for meta-learning methods; it never
            contains the target dataset (the benchmark enforces this).
        budget: total budget in seconds, when known.
        descriptors: model descriptors for every model the candidates/space name.
        surrogate_dir: a surrogate folder (``hubtune metatrain`` output) that
            surrogate-based optimizers use instead of the shipped default.
        val_size: number of validation images the scores are measured on, when
            known (optimizers may model the scores' sampling noise from it).
        dataset: the target dataset's name (for logs only; never for lookups
            into meta-training data).
    """

    max_epochs: int
    seed: int = 0
    candidates: list[Candidate] | None = None
    space: SearchSpace | None = None
    meta_features: DatasetMetaFeatures | None = None
    train_metadata: MetaDataset | None = None
    budget: float | None = None
    descriptors: dict[str, ModelDescriptor] = field(default_factory=dict)
    dataset: str | None = None
    val_size: int | None = None
    surrogate_dir: str | None = None

    def __post_init__(self) -> None:
        if self.candidates is None and self.space is None:
            raise ValueError("a TaskContext needs candidates or a search space")
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {self.max_epochs}")
        if (
            self.train_metadata is not None
            and self.dataset is not None
            and self.dataset in self.train_metadata.datasets
        ):
            raise ValueError(
                f"leakage: meta-training data contains the target dataset {self.dataset!r}"
            )


class OptimizerFactory(Protocol):
    """Builds an optimizer for one task."""

    def __call__(self, ctx: TaskContext) -> Optimizer: ...
