"""Errors shared across layers."""

from __future__ import annotations


class RunError(ValueError):
    """A run cannot start or resume (bad settings, mismatching run folder)."""
