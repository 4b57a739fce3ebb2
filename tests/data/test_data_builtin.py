"""Built-in datasets (Fashion-MNIST, Animal-MNIST, digits) and the array-file readers."""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle

import numpy as np
import pytest
import torch

from hubtune.data import DataError, load_dataset, parse_builtin_name
from hubtune.data.arrayfiles import read_idx, read_pickled_ndarray
from hubtune.data.builtin import (
    ANIMAL_MNIST_CLASSES,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DEBIAN_DIR,
    plan_builtin,
)

needs_fashion = pytest.mark.skipif(
    not FASHION_MNIST_DEBIAN_DIR.is_dir(),
    reason="Debian package dataset-fashion-mnist not installed (scripts/setup-env.sh installs it)",
)
needs_animal = pytest.mark.skipif(
    importlib.util.find_spec("animal_mnist") is None,
    reason="animal-mnist not installed (requirements/offline-assets.txt)",
)


def rows(images: torch.Tensor) -> set[bytes]:
    return {bytes(x.numpy().tobytes()) for x in images}


@needs_fashion
def test_fashion_mnist_subset_keeps_the_official_test_split():
    ds = load_dataset("fashion-mnist:300", image_size=32, seed=0)
    assert ds.name == "fashion-mnist" and ds.classes == FASHION_MNIST_CLASSES
    assert ds.num_classes == 10
    assert ds.train.images.shape == (300, 3, 32, 32) and ds.train.images.dtype == torch.uint8
    assert ds.train.class_counts(10) == [30] * 10
    # full splits: train 51000 (60000 - 15% val), val 9000, official test 10000
    assert len(ds.val) == 53 and len(ds.test) == 59  # 9000 * 300/51000, 10000 * 300/51000
    assert min(ds.val.class_counts(10)) >= 1 and min(ds.test.class_counts(10)) >= 1
    mf = ds.meta_features
    assert (mf.n_images, mf.n_classes, mf.mean_resolution, mf.channels) == (300, 10, 28.0, 1)
    # grayscale becomes three identical channels
    assert torch.equal(ds.train.images[:, 0], ds.train.images[:, 2])
    assert not rows(ds.train.images) & rows(ds.test.images)


@needs_fashion
def test_fashion_mnist_subset_argument_equals_name_suffix():
    a = load_dataset("fashion-mnist:200", image_size=28, seed=4)
    b = load_dataset("Fashion_MNIST", image_size=28, seed=4, subset=200)
    assert a.fingerprint == b.fingerprint
    assert torch.equal(a.train.images, b.train.images)
    c = load_dataset("fashion-mnist:200", image_size=28, seed=5)
    assert a.fingerprint != c.fingerprint and rows(a.train.images) != rows(c.train.images)
    with pytest.raises(DataError, match=r"subset given twice with different values: 'fashion-mnist:200' and subset=100"):
        load_dataset("fashion-mnist:200", image_size=28, subset=100)


def test_fashion_mnist_absent_and_offline_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HUBTUNE_FASHION_MNIST_DIR", str(tmp_path / "nothing-here"))
    with pytest.raises(DataError, match=r"Fashion-MNIST not found in .*nothing-here and downloading is disabled; install Debian's package \(apt-get install dataset-fashion-mnist\)"):
        load_dataset("fashion-mnist:100", image_size=28, download=False)
    monkeypatch.setenv("HUBTUNE_OFFLINE", "1")
    with pytest.raises(DataError, match=r"downloading is disabled"):
        load_dataset("fashion-mnist", image_size=28)


def test_fashion_mnist_from_a_folder_of_idx_files(tmp_path, monkeypatch):
    # The same IDX reader serves Debian's files and torchvision's downloads.
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 20)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = np.tile(np.arange(10, dtype=np.uint8), n // 10)
        (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(
            bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in x.shape) + x.tobytes()
        )
        with gzip.open(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", "wb") as fh:
            fh.write(bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + y.tobytes())
    monkeypatch.setenv("HUBTUNE_FASHION_MNIST_DIR", str(tmp_path))
    ds = load_dataset("fashion-mnist", image_size=28, val_fraction=0.25)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (30, 10, 20)
    assert ds.train.images.shape[1:] == (3, 28, 28)


@needs_animal
def test_animal_mnist_subset():
    ds = load_dataset("animal-mnist:200", image_size=32, seed=1)
    assert ds.classes == ANIMAL_MNIST_CLASSES and ds.num_classes == 10
    assert ds.train.class_counts(10) == [20] * 10
    # no official test split: 7000 / 1500 / 1500 before the subset
    assert len(ds.val) == 43 and len(ds.test) == 43
    mf = ds.meta_features
    assert (mf.n_images, mf.n_classes, mf.mean_resolution, mf.channels) == (200, 10, 28.0, 1)
    # Animal-MNIST holds some exact duplicate images, so disjointness is checked on row indices.
    plan = plan_builtin("animal-mnist", seed=1, val_fraction=0.15, test_fraction=0.15)
    plan = plan.with_subset(200, seed=1)
    tr, va, te = (set(plan.splits[k].items.tolist()) for k in ("train", "val", "test"))
    assert len(tr) == 200 and not (tr & va) and not (tr & te) and not (va & te)


@needs_animal
def test_animal_mnist_is_reproducible():
    a = load_dataset("animal-mnist:100", image_size=16, seed=7)
    b = load_dataset("animal-mnist:100", image_size=16, seed=7)
    assert torch.equal(a.train.images, b.train.images) and a.fingerprint == b.fingerprint


def test_digits_when_scikit_learn_is_installed():
    pytest.importorskip("sklearn")
    ds = load_dataset("digits", image_size=16, seed=0, test_fraction=0.0)
    assert ds.classes == [str(d) for d in range(10)] and ds.test is None
    assert len(ds.train) + len(ds.val) == 1797
    assert ds.meta_features.mean_resolution == 8.0 and ds.train.images.max() == 255


def test_builtin_dataset_cache(tmp_path):
    pytest.importorskip("sklearn")
    first = load_dataset("digits:100", image_size=8, cache_dir=tmp_path)
    assert (tmp_path / f"{first.fingerprint}.safetensors").is_file()
    second = load_dataset("digits:100", image_size=8, cache_dir=tmp_path)
    assert torch.equal(first.val.images, second.val.images)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("fashion-mnist", ("fashion-mnist", None)),
        ("fashion-mnist:2000", ("fashion-mnist", 2000)),
        ("FashionMNIST:10", ("fashion-mnist", 10)),
        ("animal_mnist", ("animal-mnist", None)),
        ("digits", ("digits", None)),
        ("cifar10", None),
        ("./fashion-mnist", None),
    ],
)
def test_parse_builtin_name(text, parsed):
    assert parse_builtin_name(text) == parsed


@pytest.mark.parametrize("text", ["fashion-mnist:lots", "fashion-mnist:0", "animal-mnist:-5"])
def test_bad_subset_in_name(text):
    with pytest.raises(DataError, match=r"subset size|bad subset size"):
        parse_builtin_name(text)


# --------------------------------------------------------------------------- array files


def test_pickled_ndarray_round_trips_without_unpickling(tmp_path):
    for arr in (
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        np.arange(6, dtype=">f4").reshape(2, 3),
        np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
    ):
        path = tmp_path / "a.gz"
        with gzip.open(path, "wb") as fh:
            fh.write(pickle.dumps(arr, protocol=4))
        out = read_pickled_ndarray(path)
        assert np.array_equal(out, arr) and out.dtype == arr.dtype.newbyteorder("=")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickled_ndarray_reader_refuses_code(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Evil(), protocol=4))
    with pytest.raises(DataError, match=r"evil\.pkl is not a plain pickled numpy array \(refers to (posix|os)\.system\)"):
        read_pickled_ndarray(path)
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(DataError, match=r"unsupported pickle opcode"):
        read_pickled_ndarray(path)


def test_idx_reader_rejects_truncated_and_foreign_files(tmp_path):
    good = bytes([0, 0, 8, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes(range(6))
    (tmp_path / "ok").write_bytes(good)
    assert read_idx(tmp_path / "ok").tolist() == [[0, 1, 2], [3, 4, 5]]
    (tmp_path / "short").write_bytes(good[:-2])
    with pytest.raises(DataError, match=r"short is truncated or corrupt: header says \(2, 3\) \(6 bytes\), file holds 4"):
        read_idx(tmp_path / "short")
    (tmp_path / "png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(DataError, match=r"png is not an IDX file \(bad magic number\)"):
        read_idx(tmp_path / "png")
