"""Files that are never seen half-written: write a temporary sibling, fsync, ``os.replace``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: str | Path, data: Any, *, indent: int | None = None) -> None:
    """Write ``data`` as JSON to ``path`` so a reader sees the old file or the new one, never a torn one.

    The temporary file is named after this process, so two processes writing the
    same path cannot clobber each other's temporary file.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.json"
    >>> write_json_atomic(p, {"a": 1}); p.read_text()
    '{"a": 1}'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=indent)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
