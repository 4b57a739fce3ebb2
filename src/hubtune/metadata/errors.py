"""Errors and the record of runs a loader could not use."""

from __future__ import annotations

from dataclasses import dataclass


class MetadataError(ValueError):
    """A meta-dataset cannot be read or combined; the message names the file and problem."""


@dataclass(frozen=True)
class UnmappedRun:
    """A run that is in the source files but could not become a usable run.

    Loaders report these instead of dropping them silently: ``reason`` says
    why (for example the hyperparameters do not form a valid
    :class:`~hubtune.space.config.Config`, or the run has no recorded epoch).
    """

    dataset: str
    run_id: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        """JSON-compatible dict."""
        return {"dataset": self.dataset, "run_id": self.run_id, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> UnmappedRun:
        """Inverse of :meth:`to_dict`."""
        return cls(dataset=str(data["dataset"]), run_id=str(data["run_id"]), reason=str(data["reason"]))
