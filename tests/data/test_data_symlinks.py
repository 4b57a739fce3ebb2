"""Symlinks inside an ImageFolder: loops are skipped with a reason, an image under two classes is an error."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hubtune.data.errors import DataError
from hubtune.data.folder import scan_class_folders


def _folder(root: Path, classes: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    for name, n in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def test_symlink_loop_in_a_class_folder_is_skipped_with_a_named_reason(tmp_path, caplog):
    root = _folder(tmp_path / "d", {"cat": 2, "dog": 2})
    os.symlink(root / "cat", root / "cat" / "again")  # cat/again -> cat: a loop
    with caplog.at_level(logging.WARNING, logger="hubtune.data.folder"):
        found = scan_class_folders(root)
    assert [p.name for p in found["cat"]] == ["0.png", "1.png"]
    assert any("symlink loop" in r.getMessage() and "again" in r.getMessage() for r in caplog.records)


def test_self_referencing_symlink_is_skipped_not_a_traceback(tmp_path, caplog):
    root = _folder(tmp_path / "d", {"cat": 2, "dog": 2})
    os.symlink(root / "dog" / "self.png", root / "dog" / "self.png")  # ELOOP on stat
    with caplog.at_level(logging.WARNING, logger="hubtune.data.folder"):
        found = scan_class_folders(root)
    assert [p.name for p in found["dog"]] == ["0.png", "1.png"]
    assert any("self.png" in r.getMessage() for r in caplog.records)


def test_image_reachable_under_two_classes_is_an_error_naming_both_paths(tmp_path):
    root = _folder(tmp_path / "d", {"cat": 2, "dog": 2})
    os.symlink(root / "cat", root / "dog" / "borrowed")  # dog/borrowed/0.png is cat/0.png
    with pytest.raises(DataError, match="two classes") as err:
        scan_class_folders(root)
    message = str(err.value)
    assert str(root / "cat" / "0.png") in message and str(root / "dog" / "borrowed" / "0.png") in message
