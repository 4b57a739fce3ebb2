"""Data layer: ImageFolder loading, bad input, image conversion, splits and the cache."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hubtune.data import DataError, DataWarning, ImageDataset, decode_count, load_dataset
from hubtune.data.images import ImageDecodeError, decode_image, open_image_reduced

RNG = np.random.default_rng(1234)


def save_noise(path: Path, size: tuple[int, int] = (12, 10), fmt: str | None = None) -> None:
    """A unique random RGB image (width, height) -- unique so splits can be compared by content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = RNG.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)


def make_tree(root: Path, counts: dict[str, int], ext: str = ".png") -> Path:
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            save_noise(root / cls / f"img{i:03d}{ext}")
    return root


def load(source, **kw) -> ImageDataset:
    kw.setdefault("image_size", 8)
    kw.setdefault("workers", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # unexpected skips fail the test
        return load_dataset(source, **kw)


def rows(images: torch.Tensor) -> set[bytes]:
    return {bytes(x.numpy().tobytes()) for x in images}


# --------------------------------------------------------------------------- structure


def test_single_folder_is_split_into_train_val_test(tmp_path):
    root = make_tree(tmp_path / "ds", {"ant": 20, "bee": 20, "cow": 10})
    ds = load(root, image_size=16)
    assert ds.name == "ds"
    assert ds.classes == ["ant", "bee", "cow"] and ds.num_classes == 3
    # per class: 0.15 * n rounded half up (3, 3, 2) for val and again for test
    assert (len(ds.train), len(ds.val), len(ds.test)) == (34, 8, 8)
    assert ds.val.class_counts(3) == [3, 3, 2] and ds.test.class_counts(3) == [3, 3, 2]
    for split in ds.splits().values():
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (3, 16, 16)
        assert split.labels.dtype == torch.int64
    mf = ds.meta_features
    assert (mf.n_images, mf.n_classes, mf.mean_resolution, mf.channels) == (34, 3, 11.0, 3)
    assert ds.skipped == [] and len(ds.fingerprint) == 32


def test_splits_are_reproducible_disjoint_and_seed_dependent(tmp_path):
    root = make_tree(tmp_path / "ds", {"a": 30, "b": 30})
    one, again, other = load(root, seed=0), load(root, seed=0), load(root, seed=1)
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(one, name).images, getattr(again, name).images)
        assert torch.equal(getattr(one, name).labels, getattr(again, name).labels)
    assert one.fingerprint == again.fingerprint != other.fingerprint
    assert rows(one.val.images) != rows(other.val.images)
    tr, va, te = rows(one.train.images), rows(one.val.images), rows(one.test.images)
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert len(tr | va | te) == 60
    assert one.val.class_counts(2) == [5, 5] and one.test.class_counts(2) == [5, 5]  # 4.5 -> 5


def test_small_classes_keep_one_training_image(tmp_path):
    root = make_tree(tmp_path / "ds", {"a": 1, "b": 2, "c": 3, "d": 40})
    ds = load(root)
    assert ds.train.class_counts(4) == [1, 1, 1, 28]
    assert ds.val.class_counts(4) == [0, 1, 1, 6]
    assert ds.test.class_counts(4) == [0, 0, 1, 6]


def test_presplit_tree_is_used_as_given(tmp_path):
    root = tmp_path / "ds"
    make_tree(root / "train", {"x": 6, "y": 5})
    make_tree(root / "val", {"x": 2, "y": 3})
    make_tree(root / "test", {"x": 1, "y": 1})
    ds = load(root, val_fraction=0.5, test_fraction=0.3)  # fractions do not apply
    assert (len(ds.train), len(ds.val), len(ds.test)) == (11, 5, 2)
    assert ds.val.class_counts(2) == [2, 3]


def test_presplit_without_val_carves_val_from_train(tmp_path):
    root = tmp_path / "ds"
    make_tree(root / "train", {"x": 20, "y": 20})
    ds = load(root, val_fraction=0.25)
    assert (len(ds.train), len(ds.val), ds.test) == (30, 10, None)
    assert not rows(ds.train.images) & rows(ds.val.images)


def test_subset_is_stratified_and_shrinks_val_and_test(tmp_path):
    root = make_tree(tmp_path / "ds", {"a": 60, "b": 30, "c": 10})
    full = load(root, seed=3)
    ds = load(root, subset=35, seed=3)
    assert len(ds.train) == 35 and full.train.class_counts(3) == [42, 20, 6]
    assert ds.train.class_counts(3) == [22, 10, 3]  # 35 * (42, 20, 6) / 68, largest remainder
    assert len(full.val) == 16 and len(ds.val) == 8 and len(ds.test) == 8  # 16 * 35/68, rounded
    assert min(ds.val.class_counts(3)) >= 1 and min(ds.test.class_counts(3)) >= 1
    assert rows(ds.train.images) <= rows(full.train.images)
    assert ds.meta_features.n_images == 35


def test_non_image_files_and_hidden_entries_are_ignored(tmp_path):
    root = make_tree(tmp_path / "ds", {"a": 4, "b": 4})
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "a" / "labels.csv").write_text("x,y")
    save_noise(root / "a" / ".hidden.png")
    save_noise(root / ".cache" / "z.png")  # hidden folder is not a class
    save_noise(root / "b" / "nested" / "deep.png")  # nested files belong to the class
    ds = load(root, test_fraction=0.0)
    assert ds.classes == ["a", "b"] and ds.skipped == [] and ds.test is None
    assert len(ds.train) + len(ds.val) == 9


# --------------------------------------------------------------------------- bad input


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"dataset folder .*nope does not exist"):
        load(tmp_path / "nope")


def test_path_is_a_file(tmp_path):
    f = tmp_path / "file.png"
    save_noise(f)
    with pytest.raises(DataError, match=r"dataset path .*file\.png is not a directory"):
        load(f)


def test_unknown_name_is_neither_folder_nor_builtin():
    with pytest.raises(DataError, match=r"'imagenet-xl' is neither an existing folder nor a built-in dataset \(fashion-mnist, animal-mnist, digits"):
        load("imagenet-xl")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no class folders \(and so no images\) found in .*empty$"):
        load(tmp_path / "empty")


def test_loose_images_without_class_folders(tmp_path):
    for i in range(3):
        save_noise(tmp_path / "flat" / f"{i}.png")
    with pytest.raises(DataError, match=r"3 image files lie directly in it; put each class's images in a subfolder"):
        load(tmp_path / "flat")


def test_no_images_at_all(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "ds" / cls).mkdir(parents=True)
        (tmp_path / "ds" / cls / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"no image files found in .*ds \(class folders: a, b\)"):
        load(tmp_path / "ds")


def test_class_folder_without_images_is_named(tmp_path):
    root = make_tree(tmp_path / "ds", {"cat": 3, "dog": 3})
    (root / "emu").mkdir()
    (root / "emu" / "info.txt").write_text("x")
    with pytest.raises(DataError, match=r"class folder 'emu' in .*ds contains no image files"):
        load(root)


def test_only_one_class(tmp_path):
    root = make_tree(tmp_path / "ds", {"solo": 5})
    with pytest.raises(DataError, match=r"only one class \('solo'\) found in .*ds; classification needs at least two"):
        load(root)


def test_train_and_val_class_sets_differ(tmp_path):
    root = tmp_path / "ds"
    make_tree(root / "train", {"a": 3, "b": 3, "c": 3})
    make_tree(root / "val", {"a": 2, "b": 2, "d": 2})
    with pytest.raises(DataError, match=r"class folders differ between .*train and .*val \(missing from .*val: c; not in .*train: d\)"):
        load(root)


def test_class_whose_every_file_is_corrupt(tmp_path):
    root = make_tree(tmp_path / "ds", {"good": 6})
    for i in range(4):
        (root / "bad" / f"{i}.jpg").parent.mkdir(exist_ok=True)
        (root / "bad" / f"{i}.jpg").write_text("definitely not a jpeg")
    with pytest.warns(DataWarning), pytest.raises(DataError, match=r"class 'bad' of .*ds has no readable training images"):
        load_dataset(root, image_size=8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 0}, r"image_size must be between 1 and 4096, got 0"),
        ({"image_size": 32.0}, r"image_size must be an integer, got 32\.0"),
        ({"image_size": 8, "val_fraction": 0.0}, r"val_fraction must be in \(0, 1\), got 0\.0"),
        ({"image_size": 8, "test_fraction": -0.1}, r"test_fraction must be in \[0, 1\), got -0\.1"),
        ({"image_size": 8, "val_fraction": 0.5, "test_fraction": 0.45}, r"must leave at least 10% for training"),
        ({"image_size": 8, "subset": 0}, r"subset must be a positive integer or None, got 0"),
        ({"image_size": 8, "subset": 1000}, r"subset=1000 is larger than the 6 training images of ds"),
        ({"image_size": 8, "subset": 1}, r"subset=1 is smaller than the number of classes \(2\) of ds"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    root = make_tree(tmp_path / "ds", {"a": 5, "b": 5})
    with pytest.raises(DataError, match=message):
        load_dataset(root, **kwargs)


def _as_unprivileged_user(fn):
    """Run ``fn()`` where file permissions apply: directly for a normal user; as
    root (as in CI), in a forked child that drops to uid/gid 65534 (nobody).
    Returns ``fn``'s JSON-serialisable result, or ``{"error": message}``."""

    def call():
        try:
            return fn()
        except DataError as exc:
            return {"error": str(exc)}

    if os.geteuid() != 0:
        return call()
    Image.init()  # load PIL's format plugins before losing access to site-packages
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(read_fd)
            os.setgid(65534)
            os.setuid(65534)
            with os.fdopen(write_fd, "w") as out:
                json.dump(call(), out)
        except BaseException:  # noqa: B036 - report anything, then leave without pytest's cleanup
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as inp:
        text = inp.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and text, "unprivileged child failed"
    return json.loads(text)


@pytest.fixture
def shared_tree():
    """A tree that uid 65534 may read (pytest's tmp_path under /tmp/pytest-of-root is not)."""
    base = Path(tempfile.mkdtemp(prefix="hubtune-perm-"))
    base.chmod(0o755)
    root = make_tree(base / "ds", {"a": 4, "b": 4})
    for p in [root, *root.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    yield root
    for p in [base, *base.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    shutil.rmtree(base)


def test_unreadable_file_is_skipped(shared_tree):
    locked = shared_tree / "a" / "img001.png"
    locked.chmod(0)

    def run():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = load_dataset(shared_tree, image_size=8, workers=1, test_fraction=0.0)
        return {
            "skipped": [[Path(s.path).name, s.reason] for s in ds.skipped],
            "warnings": [str(w.message) for w in caught if w.category is DataWarning],
            "n": len(ds.train) + len(ds.val),
        }

    result = _as_unprivileged_user(run)
    assert result["skipped"] == [["img001.png", "permission denied"]]
    assert result["n"] == 7
    assert "img001.png: permission denied" in result["warnings"][0]


def test_unreadable_class_folder_is_an_error(shared_tree):
    (shared_tree / "b").chmod(0)
    result = _as_unprivileged_user(lambda: load_dataset(shared_tree, image_size=8) and {})
    assert re.fullmatch(r"cannot read folder .*/ds/b: permission denied", result["error"])


# --------------------------------------------------------------------------- decoding


def test_truncated_and_fake_jpegs_are_skipped_with_warning(tmp_path):
    root = make_tree(tmp_path / "ds", {"a": 8, "b": 8}, ext=".jpg")
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
    (root / "a" / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "b" / "fake.jpg").write_text("this is a text file, not a JPEG")
    with pytest.warns(DataWarning, match=r"ds: skipped 2 of 18 image files"):
        ds = load_dataset(root, image_size=8, test_fraction=0.0, val_fraction=0.2, seed=5)
    reasons = {Path(s.path).name: s.reason for s in ds.skipped}
    assert set(reasons) == {"truncated.jpg", "fake.jpg"}
    assert "truncated" in reasons["truncated.jpg"]
    assert reasons["fake.jpg"] == "not a readable image (unknown or corrupt format)"
    assert len(ds.train) + len(ds.val) == 16


@pytest.mark.parametrize(
    ("make", "expected_rgb", "channels"),
    [
        (lambda: Image.new("L", (6, 6), 77), (77, 77, 77), 1),
        (lambda: Image.new("1", (6, 6), 1), (255, 255, 255), 1),
        (lambda: Image.new("RGBA", (6, 6), (10, 20, 30, 255)), (10, 20, 30), 3),
        (lambda: Image.new("RGBA", (6, 6), (0, 0, 0, 0)), (255, 255, 255), 3),  # transparent -> white
        (lambda: Image.new("LA", (6, 6), (40, 255)), (40, 40, 40), 1),
        (lambda: Image.new("RGB", (6, 6), (200, 100, 50)).convert("P", palette=Image.Palette.ADAPTIVE), (200, 100, 50), 3),
        (lambda: Image.fromarray(np.full((6, 6), 65535, np.uint16)), (255, 255, 255), 1),
        (lambda: Image.fromarray(np.full((6, 6), 32896, np.uint16)), (128, 128, 128), 1),
        (lambda: Image.new("CMYK", (6, 6), (0, 255, 255, 0)), (255, 0, 0), 3),
    ],
    ids=["L", "1bit", "RGBA", "RGBA-transparent", "LA", "palette", "16bit-max", "16bit-mid", "CMYK"],
)
def test_modes_become_rgb(tmp_path, make, expected_rgb, channels):
    img = make()
    path = tmp_path / ("x.tif" if img.mode == "CMYK" else "x.png")
    img.save(path)
    out = decode_image(path, 4)
    assert out.pixels.shape == (4, 4, 3) and out.pixels.dtype == np.uint8
    assert (out.width, out.height, out.channels) == (6, 6, channels)
    assert np.all(np.abs(out.pixels.astype(int) - np.array(expected_rgb)) <= 1)


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (5, 5), 1)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.info["transparency"] = 1
    img.save(tmp_path / "p.png", transparency=1)
    out = decode_image(tmp_path / "p.png", 5)
    assert np.all(out.pixels == 255)  # fully transparent red -> white background


def test_resize_short_side_then_center_crop(tmp_path):
    # 60 x 20: short side 20 -> 10 gives 30 x 10; the centre crop sees columns 20..40.
    pixels = np.zeros((20, 60, 3), np.uint8)
    pixels[:, :] = (0, 255, 0)
    pixels[:, 15:45] = (255, 0, 0)
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    out = decode_image(tmp_path / "wide.png", 10)
    assert out.pixels.shape == (10, 10, 3)
    assert np.all(out.pixels[..., 0] >= 250) and np.all(out.pixels[..., 1] <= 5)
    # upscaling works too
    assert decode_image(tmp_path / "wide.png", 64).pixels.shape == (64, 64, 3)


def test_large_jpeg_is_decoded_at_reduced_scale(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (6000, 6000), (30, 60, 90)).save(path, quality=80)
    img, original = open_image_reduced(path, 32)
    assert original == (6000, 6000)
    assert img.size == (750, 750)  # libjpeg's 1/8 scale, never 6000 x 6000 in memory
    img.close()
    out = decode_image(path, 32)
    assert (out.width, out.height) == (6000, 6000)
    assert np.all(np.abs(out.pixels.astype(int) - (30, 60, 90)) <= 3)


def test_images_above_the_pixel_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500_000)  # limit 1e6 pixels
    Image.new("RGB", (2000, 2000), (250, 10, 10)).save(tmp_path / "huge.jpg")
    Image.new("RGB", (2000, 2000), (250, 10, 10)).save(tmp_path / "huge.png")
    out = decode_image(tmp_path / "huge.jpg", 16)  # JPEG: decoded at 1/8 scale instead
    assert out.width == 2000 and np.all(out.pixels[..., 0] > 240)
    with pytest.raises(ImageDecodeError, match=r"too large to decode safely \(.*exceeds limit"):
        decode_image(tmp_path / "huge.png", 16)


def test_huge_png_in_a_folder_is_skipped_not_fatal(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "ds", {"a": 4, "b": 4})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500_000)
    Image.new("L", (2000, 2000), 5).save(root / "a" / "bomb.png")
    with pytest.warns(DataWarning, match="bomb.png: too large to decode safely"):
        ds = load_dataset(root, image_size=8, test_fraction=0.0, seed=2)
    assert [Path(s.path).name for s in ds.skipped] == ["bomb.png"]


def test_threaded_decoding_gives_the_same_tensors(tmp_path):
    root = make_tree(tmp_path / "ds", {"a": 25, "b": 25}, ext=".jpg")
    serial = load_dataset(root, image_size=8, workers=1)
    threaded = load_dataset(root, image_size=8, workers=2)
    assert torch.equal(serial.train.images, threaded.train.images)
    assert serial.fingerprint == threaded.fingerprint


# --------------------------------------------------------------------------- cache


def test_second_load_reads_the_cache(tmp_path):
    root = make_tree(tmp_path / "ds", {"a": 10, "b": 10})
    cache = tmp_path / "cache"
    before = decode_count()
    first = load(root, cache_dir=cache)
    assert decode_count() - before == 20
    files = sorted(p.name for p in cache.iterdir())
    assert files == [f"{first.fingerprint}.json", f"{first.fingerprint}.safetensors"]
    before = decode_count()
    second = load(root, cache_dir=cache)
    assert decode_count() == before  # nothing decoded
    assert second.fingerprint == first.fingerprint and second.classes == first.classes
    assert second.meta_features == first.meta_features
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(first, name).images, getattr(second, name).images)
        assert torch.equal(getattr(first, name).labels, getattr(second, name).labels)


def test_cache_is_keyed_by_files_and_image_size(tmp_path):
    root = make_tree(tmp_path / "ds", {"a": 6, "b": 6})
    cache = tmp_path / "cache"
    first = load(root, cache_dir=cache)
    bigger = load(root, cache_dir=cache, image_size=12)
    assert bigger.fingerprint != first.fingerprint
    target = root / "a" / "img000.png"
    save_noise(target, size=(14, 9))  # content, size and mtime change
    os.utime(target, ns=(1, 1))
    before = decode_count()
    changed = load(root, cache_dir=cache)
    assert changed.fingerprint != first.fingerprint
    assert decode_count() - before == 12


def test_skipped_files_survive_the_cache(tmp_path):
    root = make_tree(tmp_path / "ds", {"a": 5, "b": 5})
    (root / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.warns(DataWarning):
        first = load_dataset(root, image_size=8, cache_dir=tmp_path / "c")
    with pytest.warns(DataWarning, match="broken.png"):
        second = load_dataset(root, image_size=8, cache_dir=tmp_path / "c")
    assert second.skipped == first.skipped and len(second.skipped) == 1


def test_damaged_cache_entry_is_ignored(tmp_path):
    root = make_tree(tmp_path / "ds", {"a": 5, "b": 5})
    cache = tmp_path / "cache"
    first = load(root, cache_dir=cache)
    (cache / f"{first.fingerprint}.safetensors").write_bytes(b"not safetensors")
    before = decode_count()
    again = load(root, cache_dir=cache)
    assert decode_count() - before == 10
    assert torch.equal(again.train.images, first.train.images)
