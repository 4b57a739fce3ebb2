"""ImageFolder trees: ``root/<class>/*.jpg`` or ``root/{train,val,test}/<class>/*.jpg``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from hubtune.data.errors import DataError
from hubtune.data.images import is_image_file
from hubtune.data.plan import DatasetPlan, SplitPlan
from hubtune.data.split import stratified_partition

log = logging.getLogger(__name__)

VAL_DIR_NAMES = ("val", "valid", "validation")
TEST_DIR_NAMES = ("test",)


def _list_dir(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except PermissionError:
        raise DataError(f"cannot read folder {path}: permission denied") from None
    except NotADirectoryError:
        raise DataError(f"{path} is not a directory") from None
    except FileNotFoundError:
        raise DataError(f"folder {path} does not exist") from None
    except OSError as exc:
        raise DataError(f"cannot read folder {path}: {exc.strerror or exc}") from None




def _follows(entry: os.DirEntry[str], kind: str) -> bool:
    """``entry.is_dir()`` / ``is_file()`` through symlinks; False (with a warning) for a symlink loop."""
    try:
        return entry.is_dir(follow_symlinks=True) if kind == "dir" else entry.is_file(follow_symlinks=True)
    except OSError as exc:
        log.warning("skipping %s: %s", entry.path, exc.strerror or exc)
        return False


def _is_visible_dir(entry: os.DirEntry[str]) -> bool:
    return not entry.name.startswith(".") and _follows(entry, "dir")


def _image_files(class_dir: Path) -> list[Path]:
    """Image files under ``class_dir`` (recursively, sorted, hidden entries skipped).

    Symlinked folders are followed once: a link back into a folder already being
    scanned (a symlink loop) is skipped with a warning naming it.
    """
    files: list[Path] = []
    pending = [class_dir]
    seen = {os.path.realpath(class_dir)}
    while pending:
        folder = pending.pop()
        for entry in _list_dir(folder):
            if entry.name.startswith("."):
                continue
            if _follows(entry, "dir"):
                real = os.path.realpath(entry.path)
                if real in seen:
                    log.warning("skipping %s: symlink loop (it leads back to %s)", entry.path, real)
                    continue
                seen.add(real)
                pending.append(Path(entry.path))
            elif is_image_file(entry.name) and _follows(entry, "file"):
                files.append(Path(entry.path))
    return sorted(files)


def _check_one_label_per_image(found: dict[str, list[Path]], root: Path) -> None:
    """Raise when one image file (after resolving symlinks) lies under two class folders."""
    owner: dict[str, tuple[str, Path]] = {}
    for name, files in found.items():
        for path in files:
            real = os.path.realpath(path)
            first = owner.setdefault(real, (name, path))
            if first[0] != name:
                raise DataError(
                    f"image {real} in {root} is reachable under two classes: {first[1]} "
                    f"(class {first[0]!r}) and {path} (class {name!r}); an image needs one label"
                )


def scan_class_folders(root: Path, *, min_classes: int = 2) -> dict[str, list[Path]]:
    """Map class name -> image files for a folder of class folders.

    Raises :class:`DataError` for a folder without class folders, a class
    folder without image files, or fewer than ``min_classes`` classes.
    """
    class_dirs = [e for e in _list_dir(root) if _is_visible_dir(e)]
    if not class_dirs:
        loose = [e.name for e in _list_dir(root) if e.is_file() and is_image_file(e.name)]
        hint = (
            f" ({len(loose)} image files lie directly in it; put each class's images "
            "in a subfolder named after the class)"
            if loose
            else ""
        )
        raise DataError(f"no class folders (and so no images) found in {root}{hint}")
    found: dict[str, list[Path]] = {}
    empty: list[str] = []
    for entry in class_dirs:
        files = _image_files(Path(entry.path))
        if not files:
            empty.append(entry.name)
        found[entry.name] = files
    if empty and len(empty) == len(found):
        raise DataError(f"no image files found in {root} (class folders: {', '.join(sorted(found))})")
    if empty:
        names = ", ".join(repr(n) for n in empty)
        raise DataError(f"class folder {names} in {root} contains no image files")
    if len(found) < min_classes:
        only = next(iter(found))
        raise DataError(
            f"only one class ({only!r}) found in {root}; classification needs at least two "
            "class folders"
        )
    _check_one_label_per_image(found, root)
    return found


def _find_named(root: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None


def _as_split(found: dict[str, list[Path]], classes: list[str]) -> SplitPlan:
    items: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        files = found.get(name, [])
        items.extend(files)
        labels.extend([index] * len(files))
    return SplitPlan(items=items, labels=np.asarray(labels, dtype=np.int64))


def _check_same_classes(reference: set[str], other: set[str], ref_dir: Path, other_dir: Path) -> None:
    if reference == other:
        return
    missing = sorted(reference - other)
    extra = sorted(other - reference)
    parts = []
    if missing:
        parts.append(f"missing from {other_dir}: {', '.join(missing)}")
    if extra:
        parts.append(f"not in {ref_dir}: {', '.join(extra)}")
    raise DataError(f"class folders differ between {ref_dir} and {other_dir} ({'; '.join(parts)})")


def plan_image_folder(
    root: Path, *, seed: int, val_fraction: float, test_fraction: float
) -> DatasetPlan:
    """Plan an ImageFolder tree.

    With a ``train/`` subfolder, ``train/`` is used as given, ``val/`` (or
    ``valid/``, ``validation/``) and ``test/`` too when present; a missing
    ``val/`` is carved from ``train/`` (stratified, by ``seed``), a missing
    ``test/`` stays absent. Without ``train/``, ``root`` is one folder of class
    folders split into train / val / test by ``seed``.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"dataset path {root} is not a directory")
    name = root.resolve().name or str(root)
    train_dir = root / "train"
    if not train_dir.is_dir():
        found = scan_class_folders(root)
        classes = sorted(found)
        pool = _as_split(found, classes)
        parts = stratified_partition(
            pool.labels,
            {"val": val_fraction, "test": test_fraction},
            len(classes),
            np.random.default_rng([seed, 1]),
        )
        splits = {k: pool.take(v) for k, v in parts.items()}
        if test_fraction <= 0:
            splits.pop("test")
        return DatasetPlan(name=name, classes=classes, splits=splits, identity=[str(root.resolve())])

    found_train = scan_class_folders(train_dir)
    classes = sorted(found_train)
    splits = {"train": _as_split(found_train, classes)}
    val_dir = _find_named(root, VAL_DIR_NAMES)
    test_dir = _find_named(root, TEST_DIR_NAMES)
    known = {"train", *VAL_DIR_NAMES, *TEST_DIR_NAMES}
    others = [e.name for e in _list_dir(root) if _is_visible_dir(e) and e.name not in known]
    if others:
        log.warning("ignoring folders %s in %s (expected train/, val/, test/)", others, root)
    for kind, folder in (("val", val_dir), ("test", test_dir)):
        if folder is None:
            continue
        found = scan_class_folders(folder, min_classes=1)
        _check_same_classes(set(classes), set(found), train_dir, folder)
        splits[kind] = _as_split(found, classes)
    if val_dir is None:
        parts = stratified_partition(
            splits["train"].labels, {"val": val_fraction}, len(classes), np.random.default_rng([seed, 2])
        )
        base = splits["train"]
        splits["train"], splits["val"] = base.take(parts["train"]), base.take(parts["val"])
    return DatasetPlan(name=name, classes=classes, splits=splits, identity=[str(root.resolve())])
