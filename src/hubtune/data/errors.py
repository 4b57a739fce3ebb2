"""Errors, warnings and skip records of the data layer."""

from __future__ import annotations

from dataclasses import dataclass


class DataError(ValueError):
    """A dataset cannot be loaded; the message names the problem and the path."""


class DataWarning(UserWarning):
    """Something in a dataset was skipped or adjusted, but loading went on."""


@dataclass(frozen=True)
class SkippedFile:
    """An image file that was found but not used, and why."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        """JSON-compatible dict."""
        return {"path": self.path, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> SkippedFile:
        """Inverse of :meth:`to_dict`."""
        return cls(path=str(data["path"]), reason=str(data["reason"]))
