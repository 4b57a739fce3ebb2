"""Units: time budgets (``"30m"``, ``"4h"``, ``"1h30m"``, ``"3600"``) in seconds and back; disk sizes (``"5GB"``) in bytes.

Example:
    >>> parse_duration("1h30m")
    5400.0
    >>> format_duration(5400)
    '1h30m'
"""

from __future__ import annotations

import math
import re

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(sec|min|s|m|h|d)")


class DurationError(ValueError):
    """Raised for a duration that cannot be parsed; the message shows the accepted forms."""


def parse_duration(text: str | float | int) -> float:
    """Seconds in a duration such as ``"90"``, ``"90s"``, ``"30m"``, ``"4h"``, ``"1h30m"``, ``"2d"``.

    A bare number means seconds. The result must be positive and finite.

    Raises:
        DurationError: empty, negative, zero or malformed input.
    """
    if isinstance(text, bool):
        raise DurationError(f"invalid duration {text!r}")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        s = str(text).strip().lower()
        if not s:
            raise DurationError("empty duration; use e.g. '3600', '30m', '4h' or '1h30m'")
        try:
            seconds = float(s)
        except ValueError:
            pos, seconds = 0, 0.0
            for match in _PART.finditer(s):
                if s[pos:match.start()].strip():
                    break
                seconds += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos == 0 or s[pos:].strip():
                raise DurationError(
                    f"invalid duration {text!r}; use seconds ('3600') or units s/m/h/d "
                    f"('30m', '4h', '1h30m')"
                ) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise DurationError(f"duration must be positive and finite, got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Compact human form of ``seconds`` (``"16h"``, ``"1h30m"``, ``"45s"``)."""
    if not math.isfinite(seconds):
        return "inf"
    total = int(round(seconds))
    if total < 60:
        return f"{seconds:.3g}s" if seconds < 1 else f"{total}s"
    d, rem = divmod(total, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    parts = [f"{v}{u}" for v, u in ((d, "d"), (h, "h"), (m, "m"), (s, "s")) if v]
    return "".join(parts)


_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


class QuotaError(ValueError):
    """Raised for a disk quota that cannot be parsed."""


def parse_size(text: str | int | float) -> int:
    """Bytes from ``"5GB"``, ``"500MiB"``, ``"1e9"`` or a number.

    >>> parse_size("2GB")
    2000000000
    """
    if isinstance(text, (int, float)):
        return int(text)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise QuotaError(f"cannot read disk size {text!r}: use e.g. 500MB, 5GB or 2GiB")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
