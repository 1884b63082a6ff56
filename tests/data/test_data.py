"""Tests for evoae.data: IDX files, downloads, sources, transforms and splits."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import one_line_error

from evoae.data import (
    BUILTIN,
    FILES,
    MIRRORS,
    Dataset,
    default_data_dir,
    fetch,
    load_dataset,
    load_test_dataset,
    md5sum,
    minmax_scale,
    random_split,
    read_idx,
    resize_images,
    seed_split,
    verify_file,
    write_idx,
)
from evoae.data import transforms as transforms_mod

TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")


def fake_mnist(folder: Path, n: int = 12, *, prefix: str = "train", seed: int = 0) -> np.ndarray:
    """Write tiny MNIST-format files into ``folder``; returns the images."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    labels = (np.arange(n) % 10).astype(np.uint8)
    write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return images


def rows_dataset(n: int, *, labels: bool = True) -> Dataset:
    """Tabular dataset whose single feature encodes the row number (as i / n)."""
    x = (np.arange(n, dtype=np.float64) / n)[:, None]
    return Dataset(x, np.arange(n) if labels else None, "rows")


def row_ids(ds: Dataset, n: int) -> np.ndarray:
    return np.rint(ds.x[:, 0].astype(np.float64) * n).astype(int)


# ------------------------------------------------------------------ real datasets


@pytest.mark.parametrize(
    ("name", "train_head", "test_head"),
    [
        ("mnist", [5, 0, 4, 1, 9, 2, 1, 3, 1, 4], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]),
        ("fashion-mnist", [9, 0, 0, 3, 0, 2, 7, 2, 5, 5], [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]),
    ],
)
def test_real_train_and_test(
    shared_data_dir: Path, name: str, train_head: list[int], test_head: list[int]
) -> None:
    train = load_dataset(name, data_dir=shared_data_dir)
    assert train.name == name
    assert train.x.shape == (60_000, 1, 28, 28)
    assert train.x.dtype == np.float32 and train.x.flags.c_contiguous
    assert train.x.min() == 0.0 and train.x.max() == 1.0
    assert train.y is not None and train.y.dtype == np.int64
    assert train.y.min() == 0 and train.y.max() == 9
    assert np.bincount(train.y).min() > 5000  # all ten classes well represented
    assert train.y[:10].tolist() == train_head
    assert train.is_image and train.image_shape == (1, 28, 28) and train.n_features == 784

    test = load_test_dataset(name, data_dir=shared_data_dir)
    assert test is not None and test.x.shape == (10_000, 1, 28, 28) and len(test) == 10_000
    assert test.y is not None and test.y[:10].tolist() == test_head
    assert 0.0 <= test.x.min() and test.x.max() <= 1.0


def test_real_raw_idx_and_folder_layouts(shared_data_dir: Path) -> None:
    images = read_idx(shared_data_dir / "mnist" / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(shared_data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10_000,) and labels.dtype == np.uint8 and labels.max() == 9
    # data_dir may also point straight at the folder with the four files
    direct = load_test_dataset("mnist", data_dir=shared_data_dir / "mnist", limit=50)
    assert direct is not None and len(direct) == 50
    np.testing.assert_array_equal(direct.x[:, 0] * 255, images[:50].astype(np.float32))
    np.testing.assert_array_equal(direct.y, labels[:50])


def test_real_limit_and_resize(shared_data_dir: Path) -> None:
    ds = load_dataset("fashion-mnist", data_dir=shared_data_dir, limit=64, image_size=(16, 16))
    assert ds.x.shape == (64, 1, 16, 16) and ds.y is not None and len(ds.y) == 64
    assert ds.x.min() >= 0.0 and ds.x.max() <= 1.0
    full = load_test_dataset("fashion-mnist", data_dir=shared_data_dir, limit=64)
    assert full is not None and full.x.shape == (64, 1, 28, 28)


@pytest.mark.parametrize(
    ("name", "filename"),
    [(name, filename) for name, files in FILES.items() for filename in files],
)
def test_shared_files_md5(shared_data_dir: Path, name: str, filename: str) -> None:
    verify_file(shared_data_dir / name / filename, FILES[name][filename])


def test_files_table_matches_readme() -> None:
    assert set(FILES) == set(MIRRORS) == {"mnist", "fashion-mnist"}
    assert FILES["mnist"]["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert FILES["fashion-mnist"]["t10k-labels-idx1-ubyte.gz"] == "bb300cfdad3c16e7a12a480ee83cd310"
    assert all(len(files) == 4 for files in FILES.values())


# ------------------------------------------------------------------ digits


def test_digits_default() -> None:
    ds = load_dataset("digits")
    assert ds.name == "digits" and ds.x.shape == (1797, 1, 8, 8)
    assert ds.x.dtype == np.float32 and ds.x.max() == 1.0 and ds.x.min() == 0.0
    assert ds.y is not None and ds.y.shape == (1797,) and set(ds.y.tolist()) == set(range(10))
    assert load_test_dataset("digits") is None
    small = load_dataset("digits", limit=10, image_size=(16, 16))
    assert small.x.shape == (10, 1, 16, 16) and small.y is not None and len(small.y) == 10


# ------------------------------------------------------------------ IDX format


def test_idx_round_trip_gz_and_raw(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", images)
    write_idx(tmp_path / "a.gz.raw", images, gzip=False)
    # compression is sniffed from the content, not the name
    write_idx(tmp_path / "b.gz", images, gzip=False)
    for name in ("a.gz", "a.gz.raw", "b.gz"):
        out = read_idx(tmp_path / name)
        np.testing.assert_array_equal(out, images)
        assert out.dtype == np.uint8 and out.flags.writeable
    raw = (tmp_path / "a.gz.raw").read_bytes()
    assert struct.unpack(">IIII", raw[:16]) == (2051, 2, 3, 4)
    write_idx(tmp_path / "l.gz", np.array([1, 2, 3], np.uint8))
    assert gzip.decompress((tmp_path / "l.gz").read_bytes())[:8] == struct.pack(">II", 2049, 3)
    floats = np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3)
    write_idx(tmp_path / "f.idx", floats, gzip=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "f.idx"), floats)


def good_gz(tmp_path: Path) -> bytes:
    write_idx(tmp_path / "good.gz", np.zeros((5, 28, 28), np.uint8) + 7)
    return (tmp_path / "good.gz").read_bytes()


def test_idx_truncated_gz(tmp_path: Path) -> None:
    data = good_gz(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    bad.write_bytes(data[: len(data) // 2])
    one_line_error(lambda: read_idx(bad), "truncated", str(bad))
    bad.write_bytes(data[:12])  # only part of the gzip header
    one_line_error(lambda: read_idx(bad), str(bad))


def test_idx_garbage_named_gz(tmp_path: Path) -> None:
    bad = tmp_path / "x-idx3-ubyte.gz"
    bad.write_bytes(b"<html>404 Not Found</html>\n" * 10)
    one_line_error(lambda: read_idx(bad), "not an IDX file")
    bad.write_bytes(b"")
    one_line_error(lambda: read_idx(bad), "too short")


def test_idx_corrupt_gzip_stream(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"\x1f\x8b" + b"\xff" * 200)
    one_line_error(lambda: read_idx(bad), "corrupt")
    data = bytearray(good_gz(tmp_path))
    data[-6] ^= 0xFF  # inside the CRC32 / size trailer
    bad.write_bytes(bytes(data))
    one_line_error(lambda: read_idx(bad), "corrupt")
    bad.write_bytes(good_gz(tmp_path) + b"trailing junk")
    one_line_error(lambda: read_idx(bad), "garbage")


def test_idx_wrong_magic(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gz"
    payload = struct.pack(">IIII", 0x12345678, 1, 2, 2) + bytes(4)
    bad.write_bytes(gzip.compress(payload))
    one_line_error(lambda: read_idx(bad), "not an IDX file", "0x12345678")


def test_idx_count_mismatch(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gz"
    images = np.ones((3, 4, 4), np.uint8)
    header_says_more = struct.pack(">IIII", 2051, 5, 4, 4) + images.tobytes()
    bad.write_bytes(gzip.compress(header_says_more))
    one_line_error(lambda: read_idx(bad), "truncated", "expected 96")
    header_says_less = struct.pack(">IIII", 2051, 2, 4, 4) + images.tobytes()
    bad.write_bytes(header_says_less)  # raw, not gzipped
    one_line_error(lambda: read_idx(bad), "does not match its header")
    bad.write_bytes(struct.pack(">II", 2051, 2))  # header cut short
    one_line_error(lambda: read_idx(bad), "header")


def test_idx_unreadable(tmp_path: Path) -> None:
    one_line_error(lambda: read_idx(tmp_path / "missing.gz"), "does not exist")
    one_line_error(lambda: read_idx(tmp_path), "folder")


# ------------------------------------------------------------------ MNIST loader on fake files


def test_fake_mnist_layouts(tmp_path: Path) -> None:
    images = fake_mnist(tmp_path / "mnist", 12)
    fake_mnist(tmp_path / "mnist", 5, prefix="t10k")
    for data_dir in (tmp_path, tmp_path / "mnist", str(tmp_path)):
        ds = load_dataset("mnist", data_dir=data_dir, limit=7)
        assert ds.x.shape == (7, 1, 28, 28) and ds.y is not None
        np.testing.assert_allclose(ds.x[:, 0], images[:7] / 255.0, rtol=0, atol=1e-7)
        assert ds.y.tolist() == list(range(7))
    test = load_test_dataset("MNIST", data_dir=tmp_path)
    assert test is not None and len(test) == 5


def test_default_data_dir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVOAE_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    fake_mnist(tmp_path / "fashion-mnist", 3)
    assert len(load_dataset("fashion-mnist")) == 3
    monkeypatch.delenv("EVOAE_DATA_DIR")
    assert default_data_dir() == Path.home() / ".cache" / "evoae" / "data"


def test_mnist_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    msg = one_line_error(
        lambda: load_dataset("mnist", data_dir=missing),
        "pass --data-dir DIR or --download",
        str(missing / "mnist"),
    )
    assert "train-images-idx3-ubyte.gz" in msg
    # labels alone are not enough
    (tmp_path / "mnist").mkdir()
    write_idx(tmp_path / "mnist" / TRAIN_FILES[1], np.zeros(3, np.uint8))
    one_line_error(lambda: load_dataset("mnist", data_dir=tmp_path), "--download")
    one_line_error(lambda: load_test_dataset("mnist", data_dir=tmp_path), "t10k-images")


def test_mnist_truncated_file_message(tmp_path: Path) -> None:
    fake_mnist(tmp_path / "mnist", 12)
    path = tmp_path / "mnist" / TRAIN_FILES[0]
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[:1000]))
    one_line_error(
        lambda: load_dataset("mnist", data_dir=tmp_path),
        f"MNIST image file {path} is truncated",
        f"expected {16 + 12 * 784} bytes",
        "got 1000",
        "delete it and run with --download",
    )


def test_mnist_files_disagree(tmp_path: Path) -> None:
    fake_mnist(tmp_path, 12)
    write_idx(tmp_path / TRAIN_FILES[1], np.zeros(11, np.uint8))
    one_line_error(lambda: load_dataset("mnist", data_dir=tmp_path), "12 images but 11 labels")
    write_idx(tmp_path / TRAIN_FILES[1], np.zeros((12, 2, 2), np.uint8))
    one_line_error(lambda: load_dataset("mnist", data_dir=tmp_path), "label file")


# ------------------------------------------------------------------ downloads


@pytest.fixture
def tiny_remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A registered dataset "tiny" with one file, served from a file:// mirror."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    write_idx(mirror / "tiny-labels-idx1-ubyte.gz", np.arange(10, dtype=np.uint8))
    md5 = md5sum(mirror / "tiny-labels-idx1-ubyte.gz")
    monkeypatch.setitem(FILES, "tiny", {"tiny-labels-idx1-ubyte.gz": md5})
    return mirror.as_uri(), mirror


def test_md5_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "f.gz"
    path.write_bytes(b"hello")
    assert md5sum(path) == "5d41402abc4b2a76b9719d911017c592"
    verify_file(path, "5D41402ABC4B2A76B9719D911017C592")
    one_line_error(
        lambda: verify_file(path, "0" * 32),
        str(path),
        "5d41402abc4b2a76b9719d911017c592",
        "0" * 32,
    )
    one_line_error(lambda: verify_file(tmp_path / "none.gz", "0" * 32), "does not exist")


def test_fetch_good_file_installs(tmp_path: Path, tiny_remote: tuple[str, Path]) -> None:
    url, _ = tiny_remote
    dest = tmp_path / "data" / "tiny"
    assert fetch("tiny", dest, mirrors=[url]) == dest
    target = dest / "tiny-labels-idx1-ubyte.gz"
    verify_file(target, FILES["tiny"][target.name])
    assert read_idx(target).tolist() == list(range(10))
    assert sorted(p.name for p in dest.iterdir()) == [target.name]
    # present and verified: no mirror needed
    fetch("tiny", dest, mirrors=[])


def test_fetch_bad_file_refused(tmp_path: Path, tiny_remote: tuple[str, Path]) -> None:
    url, mirror = tiny_remote
    (mirror / "tiny-labels-idx1-ubyte.gz").write_bytes(b"not the real file")
    dest = tmp_path / "dest"
    one_line_error(lambda: fetch("tiny", dest, mirrors=[url]), "MD5", "tiny-labels-idx1-ubyte.gz")
    assert list(dest.iterdir()) == []  # no partial or temporary file left behind


def test_fetch_tries_mirrors_in_order(tmp_path: Path, tiny_remote: tuple[str, Path]) -> None:
    url, _ = tiny_remote
    dead = (tmp_path / "dead").as_uri()
    dest = tmp_path / "dest"
    fetch("tiny", dest, mirrors=[dead, "nonsense://x", url])
    assert [p.name for p in dest.iterdir()] == ["tiny-labels-idx1-ubyte.gz"]
    msg = one_line_error(lambda: fetch("tiny", tmp_path / "d2", mirrors=[dead]), "any mirror")
    assert dead in msg
    assert list((tmp_path / "d2").iterdir()) == []


def test_fetch_replaces_stale_file_only_when_verified(
    tmp_path: Path, tiny_remote: tuple[str, Path]
) -> None:
    url, mirror = tiny_remote
    dest = tmp_path / "dest"
    dest.mkdir()
    stale = dest / "tiny-labels-idx1-ubyte.gz"
    stale.write_bytes(b"stale")
    bad_mirror = tmp_path / "bad"
    bad_mirror.mkdir()
    (bad_mirror / stale.name).write_bytes(b"also wrong")
    one_line_error(lambda: fetch("tiny", dest, mirrors=[bad_mirror.as_uri()]), "left untouched")
    assert stale.read_bytes() == b"stale" and [p.name for p in dest.iterdir()] == [stale.name]
    fetch("tiny", dest, mirrors=[url])
    assert stale.read_bytes() == (mirror / stale.name).read_bytes()


def test_fetch_unknown_dataset(tmp_path: Path) -> None:
    one_line_error(lambda: fetch("cifar", tmp_path), "cifar", "mnist")


def test_fetch_real_mnist_from_file_mirror(
    shared_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(MIRRORS, "mnist", [(shared_data_dir / "mnist").as_uri()])
    ds = load_dataset("mnist", data_dir=tmp_path, limit=5, download=True)
    assert ds.y is not None and ds.y.tolist() == [5, 0, 4, 1, 9]
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(FILES["mnist"])
    # a second call finds and verifies the files without touching the (now dead) mirror
    monkeypatch.setitem(MIRRORS, "mnist", [(tmp_path / "dead").as_uri()])
    test = load_test_dataset("mnist", data_dir=tmp_path, limit=3, download=True)
    assert test is not None and test.y is not None and test.y.tolist() == [7, 2, 1]


# ------------------------------------------------------------------ transforms


def test_resize_matches_torch() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((37, 1, 28, 28), dtype=np.float32)
    out = resize_images(x, (16, 16))
    ref = F.interpolate(
        torch.from_numpy(x), size=(16, 16), mode="bilinear", align_corners=False, antialias=False
    ).numpy()
    assert out.shape == (37, 1, 16, 16) and out.dtype == np.float32
    np.testing.assert_array_equal(out, ref)


def test_resize_chunks_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(1).random((10, 3, 9, 7), dtype=np.float32)
    whole = resize_images(x, (5, 11))
    monkeypatch.setattr(transforms_mod, "_CHUNK_ELEMENTS", 1)  # one image per chunk
    np.testing.assert_array_equal(resize_images(x, (5, 11)), whole)


def test_resize_hand_checked() -> None:
    # Half-pixel centres: output pixel j samples input coordinate (j + 0.5) * in/out - 0.5,
    # clamped to the edges.
    row = np.array([0.0, 1.0], np.float32).reshape(1, 1, 1, 2)
    np.testing.assert_allclose(resize_images(row, (1, 4))[0, 0, 0], [0.0, 0.25, 0.75, 1.0])
    row4 = np.array([0.0, 0.1, 0.2, 0.3], np.float32).reshape(1, 1, 1, 4)
    np.testing.assert_allclose(resize_images(row4, (1, 2))[0, 0, 0], [0.05, 0.25], atol=1e-7)
    square = np.array([[0.0, 0.2], [0.4, 0.6]], np.float32).reshape(1, 1, 2, 2)
    np.testing.assert_allclose(resize_images(square, (1, 1)), [[[[0.3]]]], atol=1e-7)


def test_resize_noop_and_errors() -> None:
    x = np.zeros((2, 1, 8, 8), np.float32)
    assert resize_images(x, (8, 8)) is x
    one_line_error(lambda: resize_images(np.zeros((2, 8, 8), np.float32), (4, 4)), "(N, C, H, W)")
    one_line_error(lambda: resize_images(x, (0, 4)), "positive")


def test_minmax_scale() -> None:
    x = np.array([[1.0, 5.0, -2.0], [3.0, 5.0, 2.0], [2.0, 5.0, 0.0]])
    out = minmax_scale(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0, 0, 0], [1, 0, 1], [0.5, 0, 0.5]])
    one_line_error(lambda: minmax_scale(np.array([[np.nan, 1.0]])), "NaN")


# ------------------------------------------------------------------ splits


def test_seed_split_rows() -> None:
    ds = rows_dataset(100)
    test = rows_dataset(7)
    splits = seed_split(ds, n_train=60, n_val=25, test=test)
    assert row_ids(splits.train, 100).tolist() == list(range(60))
    assert row_ids(splits.val, 100).tolist() == list(range(60, 85))
    assert splits.train.y is not None and splits.train.y.tolist() == list(range(60))
    assert splits.test is test
    assert seed_split(ds, 99, 1).test is None
    one_line_error(lambda: seed_split(ds), "100 rows", "15000")
    one_line_error(lambda: seed_split(ds, 0, 5), "n_train")
    one_line_error(lambda: seed_split(ds, 60, 20, test=Dataset(np.zeros((3, 2)), None, "t")))


def test_seed_split_real_defaults(shared_data_dir: Path) -> None:
    ds = load_dataset("mnist", data_dir=shared_data_dir, limit=15_000)
    splits = seed_split(ds)
    assert len(splits.train) == 10_000 and len(splits.val) == 5_000
    np.testing.assert_array_equal(splits.val.x[0], ds.x[10_000])
    assert splits.train.y is not None and splits.train.y[:3].tolist() == [5, 0, 4]


def test_random_split_reproducible_and_disjoint() -> None:
    n = 200
    ds = rows_dataset(n)
    a = random_split(ds, val_fraction=0.2, test_fraction=0.1, seed=3)
    b = random_split(ds, val_fraction=0.2, test_fraction=0.1, seed=3)
    c = random_split(ds, val_fraction=0.2, test_fraction=0.1, seed=4)
    assert a.test is not None and b.test is not None and c.test is not None
    ids = [row_ids(s, n) for s in (a.train, a.val, a.test)]
    assert [len(i) for i in ids] == [140, 40, 20]
    assert sorted(np.concatenate(ids).tolist()) == list(range(n))  # disjoint and complete
    for part_a, part_b in ((a.train, b.train), (a.val, b.val), (a.test, b.test)):
        np.testing.assert_array_equal(part_a.x, part_b.x)
    assert not np.array_equal(row_ids(a.val, n), row_ids(c.val, n))
    assert a.train.y is not None and a.train.y.tolist() == row_ids(a.train, n).tolist()


def test_random_split_with_test_and_errors() -> None:
    ds = rows_dataset(50)
    test = rows_dataset(9, labels=False)
    s = random_split(ds, val_fraction=0.1, test_fraction=0.9, test=test)
    assert s.test is test and len(s.train) == 45 and len(s.val) == 5
    one_line_error(lambda: random_split(rows_dataset(3), val_fraction=0.1), "empty")
    one_line_error(lambda: random_split(ds, val_fraction=0.5, test_fraction=0.5), "empty")
    one_line_error(lambda: random_split(ds, val_fraction=1.5), "val_fraction")
    one_line_error(lambda: random_split(ds, test_fraction=0.0), "test split empty")


# ------------------------------------------------------------------ user files


def test_npy_uint8_images(tmp_path: Path) -> None:
    raw = np.random.default_rng(0).integers(0, 256, (6, 10, 12), dtype=np.uint8)
    np.save(tmp_path / "imgs.npy", raw)
    ds = load_dataset(str(tmp_path / "imgs.npy"))
    assert ds.name == "imgs" and ds.x.shape == (6, 1, 10, 12) and ds.y is None
    np.testing.assert_allclose(ds.x[:, 0], raw / 255.0, atol=1e-7)
    assert load_test_dataset(str(tmp_path / "imgs.npy")) is None
    resized = load_dataset(tmp_path / "imgs.npy", image_size=(5, 6), limit=2)
    assert resized.x.shape == (2, 1, 5, 6)


def test_npy_layouts_and_scaling(tmp_path: Path) -> None:
    nhwc = np.random.default_rng(1).random((4, 8, 9, 3)).astype(np.float32)
    np.save(tmp_path / "nhwc.npy", nhwc)
    ds = load_dataset(str(tmp_path / "nhwc.npy"))
    assert ds.x.shape == (4, 3, 8, 9) and ds.x.flags.c_contiguous
    np.testing.assert_array_equal(ds.x, nhwc.transpose(0, 3, 1, 2))

    nchw = np.random.default_rng(2).random((3, 1, 5, 5))
    np.save(tmp_path / "nchw.npy", nchw)
    np.testing.assert_allclose(load_dataset(str(tmp_path / "nchw.npy")).x, nchw, atol=1e-7)

    wide = np.array([[-10.0, 0.0], [10.0, 30.0]])  # outside [0, 1]: global min-max
    np.save(tmp_path / "wide.npy", wide)
    ds = load_dataset(str(tmp_path / "wide.npy"))
    assert not ds.is_image and ds.image_shape is None and ds.n_features == 2
    np.testing.assert_allclose(ds.x, [[0.0, 0.25], [0.5, 1.0]])
    # limit keeps rows but scaling still uses the whole file
    np.testing.assert_allclose(load_dataset(str(tmp_path / "wide.npy"), limit=1).x, [[0, 0.25]])


def test_npz_round_trip(tmp_path: Path) -> None:
    x = np.random.default_rng(3).random((5, 7))
    np.savez(tmp_path / "d.npz", y=np.array([0, 1, 2, 1, 0]), x=x)
    ds = load_dataset(str(tmp_path / "d.npz"), limit=4)
    np.testing.assert_allclose(ds.x, x[:4], atol=1e-7)
    assert ds.y is not None and ds.y.dtype == np.int64 and ds.y.tolist() == [0, 1, 2, 1]
    np.savez(tmp_path / "first.npz", np.zeros((3, 4, 4), np.uint8))
    first = load_dataset(str(tmp_path / "first.npz"))
    assert first.x.shape == (3, 1, 4, 4) and first.y is None
    np.savez(tmp_path / "bady.npz", x=x, y=np.zeros(3))
    one_line_error(lambda: load_dataset(str(tmp_path / "bady.npz")), "labels")


def test_csv_header_detection_and_scaling(tmp_path: Path) -> None:
    body = "1,10,5\n3,20,5\n2,30,5\n"
    (tmp_path / "plain.csv").write_text(body)
    (tmp_path / "head.csv").write_text("a, b ,c\n" + body + "\n")
    expected = [[0.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.5, 1.0, 0.0]]
    for name in ("plain", "head"):
        ds = load_dataset(str(tmp_path / f"{name}.csv"))
        assert ds.name == name and ds.x.shape == (3, 3) and ds.y is None
        np.testing.assert_allclose(ds.x, expected)
    assert load_dataset(str(tmp_path / "head.csv"), limit=2).x.shape == (2, 3)
    (tmp_path / "semi.csv").write_text("1;2\n3;4\n")
    np.testing.assert_allclose(load_dataset(str(tmp_path / "semi.csv")).x, [[0, 0], [1, 1]])
    one_line_error(lambda: load_dataset(str(tmp_path / "head.csv"), image_size=(2, 2)), "tabular")


# ------------------------------------------------------------------ bad user files


def test_npy_nan(tmp_path: Path) -> None:
    x = np.ones((4, 3))
    x[1, 2] = np.nan
    x[3, 0] = np.inf
    np.save(tmp_path / "nan.npy", x)
    one_line_error(lambda: load_dataset(str(tmp_path / "nan.npy")), "2 NaN or infinite")


def test_npy_empty_and_bad_shapes(tmp_path: Path) -> None:
    np.save(tmp_path / "empty.npy", np.zeros((0, 5)))
    one_line_error(lambda: load_dataset(str(tmp_path / "empty.npy")), "no data")
    np.save(tmp_path / "vec.npy", np.zeros(5))
    one_line_error(lambda: load_dataset(str(tmp_path / "vec.npy")), "unsupported shape")
    np.save(tmp_path / "c5.npy", np.zeros((2, 5, 6, 7)))
    one_line_error(lambda: load_dataset(str(tmp_path / "c5.npy")), "unsupported shape")
    np.save(tmp_path / "text.npy", np.array([["a", "b"]]))
    one_line_error(lambda: load_dataset(str(tmp_path / "text.npy")), "numbers")
    (tmp_path / "junk.npy").write_bytes(b"definitely not numpy")
    one_line_error(lambda: load_dataset(str(tmp_path / "junk.npy")), "cannot read")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    one_line_error(lambda: load_dataset(str(tmp_path / "junk.npz")), "cannot read")


def test_csv_text_column(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("f1,f2,f3\n1,2,3\n4,cat,6\n")
    one_line_error(lambda: load_dataset(str(path)), "row 3, column 2", "'cat'")
    path.write_text("1,2\n3,nan\n")
    one_line_error(lambda: load_dataset(str(path)), "row 2, column 2")


def test_csv_ragged_and_empty(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("1,2,3\n4,5\n")
    one_line_error(lambda: load_dataset(str(path)), "row 2 has 2 columns", "3")
    path.write_text("")
    one_line_error(lambda: load_dataset(str(path)), "empty")
    path.write_text("a,b\n\n")
    one_line_error(lambda: load_dataset(str(path)), "no data rows")
    path.write_bytes(b"\xff\xfe\x00\x01binary")
    one_line_error(lambda: load_dataset(str(path)), "cannot read")


def test_unknown_sources(tmp_path: Path) -> None:
    msg = one_line_error(lambda: load_dataset("cifar10"), "cifar10")
    assert all(name in msg for name in BUILTIN)
    one_line_error(lambda: load_test_dataset("cifar10"), "cifar10")
    (tmp_path / "d.parquet").write_bytes(b"x")
    one_line_error(lambda: load_dataset(str(tmp_path / "d.parquet")), ".npy", ".csv")
    one_line_error(lambda: load_dataset(str(tmp_path)), "folder")
    one_line_error(lambda: load_dataset("digits", limit=0), "limit")
    one_line_error(lambda: load_dataset("digits", image_size=(16,)), "image_size")


def test_dataset_basics() -> None:
    ds = Dataset(np.zeros((4, 3), np.float64), [1, 2, 3, 4], "t")
    assert ds.x.dtype == np.float32 and ds.y is not None and ds.y.dtype == np.int64
    assert len(ds) == 4 and ds.n_features == 3 and "t" in repr(ds)
    sub = ds.subset(np.array([True, False, True, False]))
    assert sub.name == "t" and sub.y is not None and sub.y.tolist() == [1, 3]
    assert len(ds.subset(slice(1, 3))) == 2
    one_line_error(lambda: Dataset(np.zeros((4, 3)), np.zeros(3), "t"), "labels")
    one_line_error(lambda: Dataset(np.zeros(4), None, "t"), "shape")


def test_digits_read_without_scikit_learn_equal_load_digits() -> None:
    from sklearn.datasets import load_digits

    from evoae.data.sources import _digits_arrays

    images, target = _digits_arrays()
    bunch = load_digits()
    np.testing.assert_array_equal(images, bunch.images)
    np.testing.assert_array_equal(target, bunch.target)
