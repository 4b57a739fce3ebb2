"""Built-in datasets: Fashion-MNIST, Animal-MNIST and scikit-learn's digits.

All are read from files that a package installs, never fetched at run time,
except Fashion-MNIST which, when Debian's ``dataset-fashion-mnist`` is not
installed, can be downloaded once through torchvision.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hubtune.data.arrayfiles import read_idx, read_pickled_ndarray
from hubtune.data.errors import DataError
from hubtune.data.plan import DatasetPlan, SplitPlan
from hubtune.data.split import stratified_partition

log = logging.getLogger(__name__)

FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
ANIMAL_MNIST_CLASSES = [
    "bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra",
]  # fmt: skip
_FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class _Source:
    """Rows of a built-in dataset: labels now, pixels on demand."""

    classes: list[str]
    labels: np.ndarray  # int64 [N]
    official_test: np.ndarray | None  # bool [N]: rows of the official test split
    load_rows: Callable[[], np.ndarray]
    identity: list[str]


def data_home(cache_dir: Path | None = None) -> Path:
    """Where downloadable built-ins are stored: ``cache_dir``, else
    ``$HUBTUNE_DATA_HOME``, else ``~/.cache/hubtune/datasets``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("HUBTUNE_DATA_HOME", "~/.cache/hubtune/datasets")).expanduser()


_ROWS_MEMO: dict[tuple[str, ...], np.ndarray] = {}
_ROWS_MEMO_SIZE = 2


def _memo_rows(identity: list[str], read: Callable[[], np.ndarray]) -> np.ndarray:
    """``read()``, remembered (read-only) for the last few sources of this process,
    so repeated loads with other seeds or subsets do not re-read the files."""
    key = tuple(identity)
    if key not in _ROWS_MEMO:
        rows = read()
        rows.setflags(write=False)
        while len(_ROWS_MEMO) >= _ROWS_MEMO_SIZE:
            _ROWS_MEMO.pop(next(iter(_ROWS_MEMO)))
        _ROWS_MEMO[key] = rows
    return _ROWS_MEMO[key]


def _stat_identity(paths: list[Path]) -> list[str]:
    out = []
    for p in paths:
        st = p.stat()
        out.append(f"{p}:{st.st_size}:{st.st_mtime_ns}")
    return out


def _find_idx_files(folder: Path) -> dict[str, Path] | None:
    found = {}
    for key, stem in _FASHION_FILES.items():
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def _fashion_mnist_dirs(cache_dir: Path | None) -> list[Path]:
    override = os.environ.get("HUBTUNE_FASHION_MNIST_DIR")
    if override:
        return [Path(override).expanduser()]
    return [FASHION_MNIST_DEBIAN_DIR, data_home(cache_dir) / "FashionMNIST" / "raw"]


def _download_fashion_mnist(root: Path) -> None:
    try:
        from torchvision.datasets import FashionMNIST
    except ImportError as exc:  # pragma: no cover - torchvision is a dependency
        raise DataError(f"cannot download Fashion-MNIST: torchvision unavailable ({exc})") from None
    root.mkdir(parents=True, exist_ok=True)
    for train in (True, False):
        FashionMNIST(root=str(root), train=train, download=True)


def _offline_default() -> bool:
    return os.environ.get("HUBTUNE_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def _fashion_mnist(cache_dir: Path | None, download: bool | None) -> _Source:
    dirs = _fashion_mnist_dirs(cache_dir)
    files = next((f for f in map(_find_idx_files, dirs) if f is not None), None)
    if files is None:
        allowed = (not _offline_default()) if download is None else download
        how = (
            "install Debian's package (apt-get install dataset-fashion-mnist), or allow a "
            "one-time download"
        )
        if not allowed:
            raise DataError(
                f"Fashion-MNIST not found in {', '.join(map(str, dirs))} and downloading is "
                f"disabled; {how}"
            )
        root = data_home(cache_dir)
        try:
            _download_fashion_mnist(root)
        except Exception as exc:  # network errors come in many types
            raise DataError(
                f"Fashion-MNIST not found in {', '.join(map(str, dirs))} and downloading it into "
                f"{root} failed ({type(exc).__name__}: {exc}); {how}"
            ) from None
        files = _find_idx_files(root / "FashionMNIST" / "raw")
        if files is None:
            raise DataError(f"Fashion-MNIST download into {root} left no IDX files; {how}")
    train_y = read_idx(files["train_labels"]).astype(np.int64)
    test_y = read_idx(files["test_labels"]).astype(np.int64)
    labels = np.concatenate([train_y, test_y])
    official_test = np.concatenate([np.zeros(len(train_y), bool), np.ones(len(test_y), bool)])

    identity = _stat_identity(list(files.values()))

    def read() -> np.ndarray:
        x = np.concatenate([read_idx(files["train_images"]), read_idx(files["test_images"])])
        if x.shape != (len(labels), 28, 28):
            raise DataError(f"Fashion-MNIST images in {files['train_images'].parent} have shape {x.shape}")
        return x

    return _Source(
        classes=list(FASHION_MNIST_CLASSES),
        labels=labels,
        official_test=official_test,
        load_rows=lambda: _memo_rows(identity, read),
        identity=identity,
    )


def _animal_mnist(cache_dir: Path | None, download: bool | None) -> _Source:
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "Animal-MNIST is not installed; install it with "
            "`pip install --no-deps animal-mnist==0.4` (its data files are read directly)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "Animal_MNIST"
    data_file, label_file = folder / "animal_data_version_3.gz", folder / "animal_label_version_3.gz"
    for f in (data_file, label_file):
        if not f.is_file():
            raise DataError(f"Animal-MNIST data file {f} is missing; reinstall animal-mnist==0.4")
    labels = read_pickled_ndarray(label_file).astype(np.int64).reshape(-1)

    identity = _stat_identity([data_file, label_file])

    def read() -> np.ndarray:
        x = read_pickled_ndarray(data_file)
        if x.dtype != np.uint8 or x.shape != (len(labels), 28, 28):
            raise DataError(f"{data_file} holds {x.dtype} {x.shape}, expected uint8 ({len(labels)}, 28, 28)")
        return x

    return _Source(
        classes=list(ANIMAL_MNIST_CLASSES),
        labels=labels,
        official_test=None,
        load_rows=lambda: _memo_rows(identity, read),
        identity=identity,
    )


def _digits(cache_dir: Path | None, download: bool | None) -> _Source:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the 'digits' dataset needs scikit-learn (pip install scikit-learn)") from None
    bunch = load_digits()
    labels = np.asarray(bunch.target, dtype=np.int64)
    images = np.clip(np.rint(np.asarray(bunch.images) * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    import sklearn

    return _Source(
        classes=[str(d) for d in range(10)],
        labels=labels,
        official_test=None,
        load_rows=lambda: images,
        identity=[f"scikit-learn {sklearn.__version__}"],
    )


BUILTIN_DATASETS: dict[str, Callable[[Path | None, bool | None], _Source]] = {
    "fashion-mnist": _fashion_mnist,
    "animal-mnist": _animal_mnist,
    "digits": _digits,
}
"""Built-in dataset names and their loaders."""

_NAME_RE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_\- ]*?)\s*(?::\s*(\S+))?\s*$")


def parse_builtin_name(source: str) -> tuple[str, int | None] | None:
    """``"fashion-mnist:2000"`` -> ``("fashion-mnist", 2000)``; ``None`` if not a built-in name.

    Names are case-insensitive; ``_`` and spaces count as ``-``, and
    ``fashionmnist`` / ``animalmnist`` are accepted too.
    """
    match = _NAME_RE.match(source)
    if not match:
        return None
    name = re.sub(r"[_\s]+", "-", match.group(1).lower())
    name = {"fashionmnist": "fashion-mnist", "animalmnist": "animal-mnist"}.get(name, name)
    if name not in BUILTIN_DATASETS:
        return None
    if match.group(2) is None:
        return name, None
    try:
        subset = int(match.group(2))
    except ValueError:
        raise DataError(
            f"bad subset size {match.group(2)!r} in {source!r}; write e.g. '{name}:2000'"
        ) from None
    if subset <= 0:
        raise DataError(f"subset size in {source!r} must be positive")
    return name, subset


def plan_builtin(
    name: str,
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    cache_dir: Path | None = None,
    download: bool | None = None,
) -> DatasetPlan:
    """Plan a built-in dataset. An official test split is kept and validation is
    carved from the official training split; without an official test split,
    validation and test are both carved (stratified, by ``seed``)."""
    src = BUILTIN_DATASETS[name](cache_dir, download)
    rows = np.arange(len(src.labels), dtype=np.int64)
    rng = np.random.default_rng([seed, 3])
    k = len(src.classes)
    if src.official_test is not None:
        pool = rows[~src.official_test]
        parts = stratified_partition(src.labels[pool], {"val": val_fraction}, k, rng)
        index = {key: pool[ix] for key, ix in parts.items()}
        index["test"] = rows[src.official_test]
    else:
        index = stratified_partition(src.labels, {"val": val_fraction, "test": test_fraction}, k, rng)
        if test_fraction <= 0:
            index.pop("test")
    splits = {key: SplitPlan(items=ix, labels=src.labels[ix]) for key, ix in index.items()}
    return DatasetPlan(
        name=name, classes=src.classes, splits=splits, identity=src.identity, load_rows=src.load_rows
    )
