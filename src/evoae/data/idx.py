"""Read and write IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a big-endian header (two zero bytes, a dtype code, the number of
dimensions, then one uint32 per dimension) followed by the raw array. MNIST ships
the files gzipped; :func:`read_idx` recognises gzip by its magic bytes, so a file
that was gunzipped but kept its ``.gz`` name (or vice versa) still loads.

Every problem with a file is raised as a one-line :class:`~evoae.errors.EvoaeError`.
"""

from __future__ import annotations

import gzip as _gzip
import math
import os
import stat
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from evoae.errors import EvoaeError

__all__ = ["read_idx", "write_idx", "IDX_DTYPES"]

#: IDX dtype code -> numpy dtype (multi-byte types are big-endian on disk).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}

_GZIP_MAGIC = b"\x1f\x8b"
_DEFAULT_HINT = "replace it with a good copy"


def _one_line(text: object) -> str:
    """Collapse whitespace so that a wrapped low-level message stays on one line."""
    return " ".join(str(text).split())


#: Largest decoded IDX payload evoae reads (MNIST's training images are 47 MB).
MAX_IDX_BYTES = int(os.environ.get("EVOAE_MAX_DATA_BYTES", 4 * 1024**3))
_CHUNK = 1 << 20
_MAX_HEADER = 4 + 4 * 255


def _header_limit(data: bytes | bytearray, path: Path, what: str, hint: str) -> int | None:
    """How many decoded bytes the file may have, as far as its header is known.

    ``None`` while the header is incomplete; the header's own size when it is not a valid
    IDX header (the caller then reports it); else header + payload size.
    """
    if len(data) < 4:
        return None
    zero, code, ndim = struct.unpack(">HBB", bytes(data[:4]))
    if zero != 0 or code not in IDX_DTYPES or ndim == 0:
        return 4
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        return None
    dims = struct.unpack(f">{ndim}I", bytes(data[4:header_len]))
    expected = header_len + math.prod(dims) * IDX_DTYPES[code].itemsize
    if expected > MAX_IDX_BYTES:
        shape = "x".join(str(d) for d in dims)
        raise EvoaeError(
            f"{what} {path} declares shape {shape} ({expected} bytes), more than the "
            f"{MAX_IDX_BYTES} bytes evoae reads (EVOAE_MAX_DATA_BYTES); {hint}"
        )
    return expected


def _gunzip(fh: BinaryIO, path: Path, what: str, hint: str) -> tuple[bytes, bool, bool]:
    """Decompress the gzip members of ``fh``, never more than the IDX header implies.

    Returns the data, whether the stream was complete and whether decoding stopped
    because the data was longer than its header says. A truncated stream is not an error
    here so that the caller can report how many bytes it did get.
    """
    out = bytearray()
    dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
    buf = b""
    eof = False
    limit: int | None = None
    try:
        while True:
            if dec.eof:
                tail = dec.unused_data + buf
                buf = b""
                while not tail.strip(b"\0") and not eof:  # GNU gzip allows zero padding
                    more = fh.read(_CHUNK)
                    eof = not more
                    tail = tail.lstrip(b"\0") + more
                tail = tail.lstrip(b"\0")
                if not tail:
                    return bytes(out), True, False
                if len(tail) < 2 and not eof:
                    tail += fh.read(_CHUNK)
                if not tail.startswith(_GZIP_MAGIC):
                    raise EvoaeError(
                        f"{what} {path} is corrupt: garbage after the gzip data; {hint}"
                    )
                dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
                buf = tail
                continue
            if not buf:
                if eof:
                    return bytes(out), False, False
                buf = fh.read(_CHUNK)
                eof = not buf
                continue
            cap = (limit + 1 if limit is not None else _MAX_HEADER) - len(out)
            if cap <= 0:
                return bytes(out), True, limit is not None and len(out) > limit
            out += dec.decompress(buf, cap)
            buf = dec.unconsumed_tail
            if limit is None or limit == 4:
                limit = _header_limit(out, path, what, hint)
                if limit == 4:  # not IDX: the caller says so from the first bytes
                    return bytes(out), True, False
    except zlib.error as exc:
        raise EvoaeError(
            f"{what} {path} is corrupt (bad gzip data: {_one_line(exc)}); {hint}"
        ) from None


def _read_raw(fh: BinaryIO, size: int, path: Path, what: str, hint: str) -> bytes:
    """A raw IDX file, its size checked against its header before the payload is read."""
    head = fh.read(_MAX_HEADER)
    limit = _header_limit(head, path, what, hint)
    if limit is not None and limit != 4 and size > limit:
        return head  # the caller reports "does not match its header" from the header
    return head + fh.read()


def _open_regular(path: Path, what: str, hint: str) -> tuple[BinaryIO, int]:
    """Open ``path`` for reading if it is a regular file (never a FIFO or device)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise EvoaeError(f"{what} {path} does not exist; {hint}") from None
    except OSError as exc:
        raise EvoaeError(
            f"cannot read {what} {path}: {_one_line(exc.strerror or exc)}; "
            "check that it exists and is readable"
        ) from None
    if stat.S_ISDIR(st.st_mode):
        raise EvoaeError(f"{what} {path} is a folder, not a file; {hint}")
    if not stat.S_ISREG(st.st_mode):
        raise EvoaeError(f"{what} {path} is not a regular file (a pipe or device); {hint}")
    try:
        return open(path, "rb"), st.st_size  # noqa: SIM115
    except OSError as exc:
        raise EvoaeError(
            f"cannot read {what} {path}: {_one_line(exc.strerror or exc)}; "
            "check that it exists and is readable"
        ) from None


def _read_bytes(path: Path, what: str, hint: str) -> tuple[bytes, bool, bool, str | None]:
    """The file's bytes (gunzipped, capped at what the header allows), whether it was
    compressed, whether the stream was complete, and what to say if it held more."""
    fh, size = _open_regular(path, what, hint)
    longer = False
    try:
        with fh:
            magic = fh.read(2)
            fh.seek(0)
            compressed = magic == _GZIP_MAGIC
            if compressed:
                data, complete, longer = _gunzip(fh, path, what, hint)
            else:
                data, complete = _read_raw(fh, size, path, what, hint), True
    except OSError as exc:
        raise EvoaeError(
            f"cannot read {what} {path}: {_one_line(exc.strerror or exc)}; "
            "check that it exists and is readable"
        ) from None
    size_note = " (after gunzip)" if compressed else ""
    held = f"more than that{size_note}" if longer or len(data) < size and not compressed else None
    return data, compressed, complete, held


def read_idx(path: str | Path, *, what: str = "IDX file", hint: str = _DEFAULT_HINT) -> np.ndarray:
    """Read an IDX file, gzipped or raw.

    Parameters
    ----------
    path
        The file. Gzip is detected from the content (bytes ``1f 8b``), not the suffix.
    what, hint
        Used in error messages: what the file is ("MNIST image file") and how to fix it
        ("delete it and run with --download").

    Returns
    -------
    numpy.ndarray
        The array in native byte order, e.g. uint8 ``(N, R, C)`` for images (magic 2051)
        or uint8 ``(N,)`` for labels (magic 2049). The array is writeable.

    Raises
    ------
    EvoaeError
        If the file cannot be read, is not IDX, is corrupt, truncated or too long, or
        declares more than ``EVOAE_MAX_DATA_BYTES`` (default 4 GiB). Sizes are checked
        against the header before the payload is read or decompressed: a gzip bomb stops
        at the size its header implies.
    """
    path = Path(path)
    data, compressed, complete, held = _read_bytes(path, what, hint)
    size_note = " (after gunzip)" if compressed else ""
    if len(data) < 4:
        if compressed and not complete:
            raise EvoaeError(f"{what} {path} is truncated: the gzip stream ends early; {hint}")
        raise EvoaeError(
            f"{what} {path} is too short to be an IDX file ({len(data)} bytes{size_note}); {hint}"
        )
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in IDX_DTYPES or ndim == 0:
        magic_number = struct.unpack(">I", data[:4])[0]
        kind = "gzip-compressed data" if compressed else "not gzip-compressed and"
        raise EvoaeError(
            f"{what} {path} is not an IDX file ({kind} has magic number 0x{magic_number:08x}; "
            f"expected 2049 for labels or 2051 for images); {hint}"
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise EvoaeError(
            f"{what} {path} is truncated: its {ndim}-D IDX header needs {header_len} bytes, "
            f"got {len(data)}{size_note}; {hint}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = IDX_DTYPES[code]
    expected = header_len + math.prod(dims) * dtype.itemsize
    if held is None and (len(data) < expected or not complete):
        shape = "x".join(str(d) for d in dims)
        raise EvoaeError(
            f"{what} {path} is truncated: header declares shape {shape}, expected {expected} "
            f"bytes{size_note}, got {len(data)}; {hint}"
        )
    if held is not None or len(data) > expected:
        shape = "x".join(str(d) for d in dims)
        got = held or str(len(data))
        raise EvoaeError(
            f"{what} {path} does not match its header: header declares shape {shape} "
            f"({expected} bytes{size_note}) but the file holds {got}; {hint}"
        )
    arr = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=header_len)
    # astype copies, which also makes the array writeable and native-endian.
    return arr.reshape(dims).astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | Path, array: np.ndarray, *, gzip: bool = True) -> None:
    """Write ``array`` as an IDX file (gzipped by default).

    Parameters
    ----------
    path
        Destination; written in place (tests use this to make good and bad files).
    array
        uint8 array of ndim 1 (labels, magic 2049) or 3 (images, magic 2051). Other IDX
        dtypes (int8, int16, int32, float32, float64) and ndims 1-255 are written too.
    gzip
        Compress with gzip (mtime 0, so output is reproducible).
    """
    arr = np.asarray(array)
    code = _CODES.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise EvoaeError(
            f"cannot write dtype {arr.dtype} as IDX; use one of uint8, int8, int16, int32, "
            "float32, float64"
        )
    if not 1 <= arr.ndim <= 255:
        raise EvoaeError(f"cannot write a {arr.ndim}-D array as IDX; it needs 1 to 255 dims")
    header = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = header + np.ascontiguousarray(arr, dtype=IDX_DTYPES[code]).tobytes()
    if gzip:
        payload = _gzip.compress(payload, compresslevel=6, mtime=0)
    try:
        with open(os.fspath(path), "wb") as fh:
            fh.write(payload)
    except OSError as exc:
        raise EvoaeError(
            f"cannot write IDX file {path}: {_one_line(exc.strerror or exc)}; "
            "check that its folder exists and is writable"
        ) from None
