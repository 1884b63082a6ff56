"""Hostile data files: IDX, npy, npz and csv files that are damaged, huge, of the wrong
kind or not files at all, each refused with one line (rules in ``tests/hostile.py``)."""

from __future__ import annotations

import gzip
import io
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from hostile import (
    Env,
    Refused,
    Unchanged,
    refused_test,
    search_argv,
    small_search_argv,
    truncate,
    unchanged_test,
)

from evoae.data.idx import write_idx

# ------------------------------------------------------------------ first table


def _mnist(env: Env, damage: Callable[[Path], None]) -> list[str]:
    folder = env.fake_mnist()
    damage(folder / "train-images-idx3-ubyte.gz")
    return search_argv("--dataset", "mnist", "--data-dir", folder.parent, "--out", env.tmp / "o")


def _garbage_gzip(path: Path) -> None:
    path.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4)


def _wrong_magic(path: Path) -> None:
    header = struct.pack(">HBB", 0, 0x42, 3)  # dtype code 0x42 does not exist
    path.write_bytes(gzip.compress(header + struct.pack(">3I", 60, 28, 28) + bytes(60 * 784)))


def _short_payload(path: Path) -> None:
    header = struct.pack(">HBB3I", 0, 0x08, 3, 60, 28, 28)
    path.write_bytes(gzip.compress(header + bytes(100)))


def _npz(env: Env, arr: np.ndarray) -> Path:
    path = env.tmp / "a.npz"
    np.savez(path, x=arr)
    return path


REFUSED: dict[str, Refused] = {
    "idx truncated gzip": lambda e: _mnist(e, truncate),
    "idx corrupt gzip stream": lambda e: _mnist(e, _garbage_gzip),
    "idx wrong magic number": lambda e: _mnist(e, _wrong_magic),
    "idx payload shorter than header": lambda e: _mnist(e, _short_payload),
    "data dir is a file": lambda e: search_argv(
        "--dataset", "mnist", "--data-dir", e.file("f", "x"), "--out", e.tmp / "o"
    ),
    "npy with NaN": lambda e: search_argv(
        "--dataset", e.npy("a.npy", np.full((30, 8), np.nan, np.float32)), "--out", e.tmp / "o"
    ),
    "npz with infinity": lambda e: search_argv(
        "--dataset", _npz(e, np.array([[1.0, np.inf]] * 30)), "--out", e.tmp / "o"
    ),
    "empty npy": lambda e: search_argv(
        "--dataset", e.npy("a.npy", np.zeros((0, 8), np.float32)), "--out", e.tmp / "o"
    ),
    "1-D npy": lambda e: search_argv(
        "--dataset", e.npy("a.npy", np.zeros(50, np.float32)), "--out", e.tmp / "o"
    ),
    "5-D npy": lambda e: search_argv(
        "--dataset", e.npy("a.npy", np.zeros((5, 1, 2, 3, 4))), "--out", e.tmp / "o"
    ),
    "npy of pickled objects": lambda e: search_argv(
        "--dataset", e.npy("a.npy", np.array([{"a": 1}] * 4, dtype=object)), "--out", e.tmp / "o"
    ),
    "npy that is not npy": lambda e: search_argv(
        "--dataset", e.file("a.npy", b"\x93NUMPY garbage"), "--out", e.tmp / "o"
    ),
    "csv with a text column": lambda e: search_argv(
        "--dataset", e.file("a.csv", "1,2,cat\n3,4,dog\n" * 20), "--out", e.tmp / "o"
    ),
    "empty csv": lambda e: search_argv("--dataset", e.file("a.csv", ""), "--out", e.tmp / "o"),
    "unknown dataset name": lambda e: search_argv("--dataset", "cifar", "--out", e.tmp / "o"),
    "image size on tabular data": lambda e: search_argv(
        "--dataset", e.data, "--image-size", "8", "--out", e.tmp / "o"
    ),
}


# ------------------------------------------------------------------ second table


def _npy_header(shape: tuple[int, ...], descr: str = "<f8", body: int = 1024) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue() + bytes(body)


def _npz_raw(e: Env, name: str, member: bytes, key: str = "x") -> Path:
    path = e.tmp / name
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{key}.npy", member)
    return path


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _npz_with_bad_y(e: Env) -> Path:
    path = e.tmp / "y.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", _npy_bytes(np.zeros((30, 4))))
        zf.writestr("y.npy", _npy_header((10**12,), "<i8"))
    return path


def _fifo(e: Env, name: str) -> Path:
    path = e.tmp / name
    os.mkfifo(path)
    return path


def _link(e: Env, name: str, target: str) -> Path:
    path = e.tmp / name
    path.symlink_to(target)
    return path


def _folder(e: Env, name: str) -> Path:
    path = e.tmp / name
    path.mkdir()
    return path


DATA: dict[str, Callable[[Env], Path | str]] = {
    "npy declaring (10**11, 64) with 1 KB": lambda e: e.file("big.npy", _npy_header((10**11, 64))),
    "npy declaring (10**6, 64) with 1 KB": lambda e: e.file("mid.npy", _npy_header((10**6, 64))),
    "npy declaring (2**62,) uint8": lambda e: e.file("u.npy", _npy_header((2**62,), "|u1")),
    "npy declaring 4-D huge images": lambda e: e.file(
        "img.npy", _npy_header((10**5, 1, 10**4, 10**4), "|u1")
    ),
    "npz member declaring (10**11, 64)": lambda e: _npz_raw(
        e, "big.npz", _npy_header((10**11, 64))
    ),
    "npz member declaring (10**6, 64)": lambda e: _npz_raw(e, "mid.npz", _npy_header((10**6, 64))),
    "npz labels declaring 10**12 rows": lambda e: _npz_with_bad_y(e),
    "npy truncated": lambda e: e.file("t.npy", _npy_bytes(np.zeros((100, 8)))[: 128 + 8 * 100 * 4]),
    "npy header only": lambda e: e.file("h.npy", _npy_bytes(np.zeros((100, 8)))[:128]),
    "npy with a broken header dict": lambda e: e.file(
        "b.npy", np.lib.format.magic(1, 0) + b"\x10\x00{'descr': <f8, }\n" + bytes(64)
    ),
    "npy format version 9": lambda e: e.file("v.npy", b"\x93NUMPY\x09\x00" + bytes(100)),
    "npy of complex numbers": lambda e: e.npy("c.npy", np.ones((30, 4), np.complex128)),
    "npy of strings": lambda e: e.npy("s.npy", np.array([["a", "b"]] * 30)),
    "npy of datetimes": lambda e: e.npy(
        "d.npy", np.array([["2020-01-01"] * 4] * 30, dtype="datetime64[D]")
    ),
    "npy of objects": lambda e: e.npy("o.npy", np.array([[1, {}]] * 30, dtype=object)),
    "npy 1e308 and -1e308 columns": lambda e: e.npy(
        "big.npy", np.array([[1e308, -1e308, 0.5, 1.0]] * 30)
    ),
    "npy float16 with inf": lambda e: e.npy(
        "h.npy", np.array([[np.inf, 1.0, 2.0, 3.0]] * 30, np.float16)
    ),
    "npy float32 with NaN": lambda e: e.npy(
        "n.npy", np.array([[np.nan, 1.0, 2.0, 3.0]] * 30, np.float32)
    ),
    "npy all -inf": lambda e: e.npy("i.npy", np.full((30, 4), -np.inf)),
    "npz with 1e308 and -1e308 columns": lambda e: _npz(
        e, np.array([[1e308, -1e308, 0.5, 1.0]] * 30)
    ),
    "csv with 1e308 and -1e308 columns": lambda e: e.file(
        "big.csv", "1e308,-1e308,0.5\n-1e308,1e308,1\n" * 20
    ),
    "csv with inf": lambda e: e.file("inf.csv", "1,2,inf\n3,4,5\n" * 20),
    "csv with nan": lambda e: e.file("nan.csv", "1,2,nan\n3,4,5\n" * 20),
    "csv of one ragged row": lambda e: e.file("r.csv", "1,2,3\n4,5\n"),
    "csv in UTF-16": lambda e: e.file("u.csv", "1,2,3\n4,5,6\n".encode("utf-16")),
    "a FIFO named .npy": lambda e: _fifo(e, "p.npy"),
    "a FIFO named .csv": lambda e: _fifo(e, "p.csv"),
    "a FIFO named .npz": lambda e: _fifo(e, "p.npz"),
    "a character device behind a .npy link": lambda e: _link(e, "z.npy", "/dev/zero"),
    "a character device behind a .csv link": lambda e: _link(e, "z.csv", "/dev/null"),
    "a folder named .npy": lambda e: _folder(e, "f.npy"),
    "a dangling .npy link": lambda e: _link(e, "gone.npy", "/nonexistent/evoae/x.npy"),
    "a name of 300 characters": lambda e: str(e.tmp / ("d" * 300 + ".npy")),
    "an unknown suffix": lambda e: e.file("data.parquet", "PAR1"),
}


def _mnist_images(e: Env, images: bytes) -> list[str]:
    folder = e.tmp / "data" / "mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_idx(folder / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 60, dtype=np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 28, 28), np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 20, dtype=np.uint8))
    (folder / "train-images-idx3-ubyte.gz").write_bytes(images)
    return small_search_argv(
        "--dataset", "mnist", "--data-dir", folder.parent, "--out", e.tmp / "o"
    )


def _zeros_gz(n: int, prefix: bytes = b"") -> bytes:
    """gzip of ``prefix`` and ``n`` zero bytes, compressed in pieces (cheap to build)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [comp.compress(prefix)]
    block = bytes(1 << 20)
    for _ in range(n >> 20):
        parts.append(comp.compress(block))
    parts.append(comp.flush())
    return b"".join(parts)


IDX = {
    "a gzip bomb of 64 MB of zeros": lambda: _zeros_gz(64 << 20),
    "a gzip bomb behind a valid 60x28x28 header": lambda: _zeros_gz(
        64 << 20, struct.pack(">HBB3I", 0, 8, 3, 60, 28, 28)
    ),
    "a header declaring 60000x60000x60000": lambda: gzip.compress(
        struct.pack(">HBB3I", 0, 8, 3, 60000, 60000, 60000) + bytes(100)
    ),
    "a raw header declaring 10**9 images": lambda: (
        struct.pack(">HBB3I", 0, 8, 3, 10**9, 28, 28) + bytes(784)
    ),
    "a raw file longer than its header": lambda: (
        struct.pack(">HBB3I", 0, 8, 3, 60, 28, 28) + bytes(60 * 784 + 5000)
    ),
    "a header of 255 dimensions": lambda: gzip.compress(
        struct.pack(">HBB", 0, 8, 255) + struct.pack(">255I", *([2] * 255))
    ),
    "float64 images": lambda: gzip.compress(
        struct.pack(">HBB3I", 0, 0x0E, 3, 60, 28, 28) + bytes(60 * 784 * 8)
    ),
    "two gzip members then garbage": lambda: (
        gzip.compress(b"\0\0") + gzip.compress(b"\x08\x03") + b"garbage"
    ),
}

UNCHANGED: dict[str, Unchanged] = {}
for _name, _make in DATA.items():
    UNCHANGED[f"data: {_name}"] = lambda e, m=_make: small_search_argv(
        "--dataset", m(e), "--out", e.tmp / "o"
    )
for _name, _make in IDX.items():
    UNCHANGED[f"idx: {_name}"] = lambda e, m=_make: _mnist_images(e, m())
for _size in ("1025", "100000", "2147483647"):
    UNCHANGED[f"image size {_size}"] = lambda e, s=_size: small_search_argv(
        "--image-size", s, "--out", e.tmp / "o"
    )


test_bad_input_is_refused_with_one_line = refused_test(REFUSED)

test_hostile_input_gives_one_line_and_changes_nothing = unchanged_test(UNCHANGED)
