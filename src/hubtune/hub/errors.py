"""Errors raised by the model hub."""

from __future__ import annotations


class HubError(ValueError):
    """A hub model, weight source or weights file cannot be used as asked.

    The message always names the model or file at fault and, where possible,
    what to do instead (close name matches, how to get weights offline).
    """
