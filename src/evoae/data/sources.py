"""Dataset sources: the built-in datasets and user files (.npy, .npz, .csv).

Every loader returns a :class:`Dataset` whose ``x`` is C-contiguous float32 in
``[0, 1]``: ``(N, C, H, W)`` for images and ``(N, F)`` for tabular data.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import math
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from evoae.data.download import FILES, fetch
from evoae.data.idx import read_idx
from evoae.data.preprocess import image_record, tabular_record
from evoae.data.tabular import encode_labels, is_number, select_columns
from evoae.data.transforms import check_size, minmax_params, minmax_scale, resize_images
from evoae.errors import EvoaeError

__all__ = [
    "Dataset",
    "BUILTIN",
    "SUFFIXES",
    "load_dataset",
    "load_test_dataset",
    "default_data_dir",
]

BUILTIN = ("digits", "mnist", "fashion-mnist")
SUFFIXES = (".npy", ".npz", ".csv")

_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_REDOWNLOAD = "delete it and run with --download"


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """An in-memory dataset.

    Attributes
    ----------
    x
        float32, C-contiguous, values in ``[0, 1]``; ``(N, C, H, W)`` for images or
        ``(N, F)`` for tabular data. Other float inputs are converted on construction.
    y
        int64 labels of shape ``(N,)``, or None.
    name
        A short name for reports ("mnist", or a file's stem).
    preprocess
        How the loader made ``x`` from the raw data (:mod:`evoae.data.preprocess`), or
        None when ``x`` is used as given; stored with the model.
    """

    x: np.ndarray
    y: np.ndarray | None
    name: str
    preprocess: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        x = np.ascontiguousarray(self.x, dtype=np.float32)
        if x.ndim not in (2, 4):
            raise EvoaeError(
                f"dataset {self.name!r} has x of shape {x.shape}; expected (N, F) or (N, C, H, W)"
            )
        object.__setattr__(self, "x", x)
        if self.y is not None:
            y = np.asarray(self.y)
            if y.ndim != 1 or len(y) != len(x):
                raise EvoaeError(
                    f"dataset {self.name!r} has {len(x)} rows but labels of shape {y.shape}; "
                    f"expected ({len(x)},)"
                )
            object.__setattr__(self, "y", y.astype(np.int64, copy=False))

    @property
    def is_image(self) -> bool:
        """True for ``(N, C, H, W)`` image data."""
        return self.x.ndim == 4

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """``(C, H, W)`` for image data, else None."""
        if not self.is_image:
            return None
        c, h, w = self.x.shape[1:]
        return int(c), int(h), int(w)

    @property
    def n_features(self) -> int:
        """Number of values per example (``C*H*W`` for images)."""
        return int(math.prod(self.x.shape[1:]))

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, idx: slice | np.ndarray) -> Dataset:
        """Rows ``idx`` (a slice, integer indices or a boolean mask) as a new Dataset."""
        y = None if self.y is None else self.y[idx]
        return Dataset(self.x[idx], y, self.name, self.preprocess)

    @property
    def classes(self) -> list[Any] | None:
        """Original label values when they were not integers (label ``i`` is ``classes[i]``)."""
        return None if self.preprocess is None else self.preprocess.get("classes")

    def __repr__(self) -> str:
        y = "None" if self.y is None else f"int64{tuple(self.y.shape)}"
        return f"Dataset(name={self.name!r}, x=float32{tuple(self.x.shape)}, y={y})"


def default_data_dir() -> Path:
    """``$EVOAE_DATA_DIR`` if set, else ``~/.cache/evoae/data``."""
    env = os.environ.get("EVOAE_DATA_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "evoae" / "data"


# --------------------------------------------------------------------------- helpers


def _check_image_size(image_size: tuple[int, int]) -> tuple[int, int]:
    size = check_size(image_size)
    if max(size) > MAX_IMAGE_SIDE:
        raise EvoaeError(
            f"image size {size[0]}x{size[1]} is too large (at most {MAX_IMAGE_SIDE} per side): "
            "pass a smaller --image-size"
        )
    return size


def _check_limit(limit: int | None) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit < 1:
        raise EvoaeError(f"limit must be a positive integer or None, got {limit!r}")
    return int(limit)


def _builtin_name(source: str) -> str | None:
    key = source.strip().lower().replace("_", "-")
    return key if key in BUILTIN else None


def _unknown_source(source: str) -> EvoaeError:
    return EvoaeError(
        f"unknown dataset {source!r}: not a built-in dataset ({', '.join(BUILTIN)}) and no such "
        f"file; pass one of those names or the path of a {'/'.join(SUFFIXES)} file"
    )


def _finish(ds: Dataset, image_size: tuple[int, int] | None) -> Dataset:
    if image_size is None:
        return ds
    size = _check_image_size(image_size)
    if not ds.is_image:
        raise EvoaeError(
            f"image_size only applies to image data, but {ds.name!r} is tabular with shape "
            f"{ds.x.shape}; drop the image size option"
        )
    n, c = ds.x.shape[:2]
    need = n * c * size[0] * size[1] * 4
    if need > MAX_DATA_BYTES:
        raise EvoaeError(
            f"resizing {n} images to {size[0]}x{size[1]} needs {need} bytes, more than the "
            f"{MAX_DATA_BYTES} evoae allows (EVOAE_MAX_DATA_BYTES); pass a smaller "
            "--image-size or --limit"
        )
    x = resize_images(ds.x, size)
    if x is not ds.x:
        # Bilinear weights can sum to a hair above 1 in float32.
        np.clip(x, 0.0, 1.0, out=x)
    record = None if ds.preprocess is None else {**ds.preprocess, "resize": list(size)}
    return Dataset(x, ds.y, ds.name, record)


# --------------------------------------------------------------------------- builtin


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (1797 images 0..16, labels), read from its data
    file without importing scikit-learn (a second of start-up the quick start would pay)."""
    spec = importlib.util.find_spec("sklearn")
    origin = Path(spec.origin).parent if spec is not None and spec.origin else None
    path = origin / "datasets" / "data" / "digits.csv.gz" if origin else None
    if path is not None and path.is_file() and path.stat().st_size < 2**20:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float64)
        if table.shape == (1797, 65):
            return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits  # the file moved: ask scikit-learn

    bunch = load_digits()
    return np.asarray(bunch.images, dtype=np.float64), np.asarray(bunch.target)


def _load_digits(limit: int | None) -> Dataset:
    images, target = _digits_arrays()
    x = (images[:limit] / 16.0).astype(np.float32)[:, None, :, :]
    record = image_record(x.shape[1:], 0.0, 16.0)
    return Dataset(x, target[:limit], "digits", record)


def _find_idx_folder(name: str, data_dir: Path, files: tuple[str, ...]) -> Path | None:
    """The first of ``data_dir/name`` and ``data_dir`` that holds all ``files``."""
    for folder in (data_dir / name, data_dir):
        if all(_idx_path(folder, f) is not None for f in files):
            return folder
    return None


def _idx_path(folder: Path, filename: str) -> Path | None:
    """``folder/filename``, or its gunzipped twin (read_idx sniffs the compression)."""
    for candidate in (folder / filename, folder / filename.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _download_folder(name: str, data_dir: Path) -> Path:
    """Where to download to when the files are not found anywhere."""
    if data_dir.name == name or any((data_dir / f).exists() for f in FILES[name]):
        return data_dir
    return data_dir / name


def _load_idx_pair(
    name: str,
    part: str,
    data_dir: str | Path | None,
    limit: int | None,
    download: bool,
) -> Dataset:
    title = _TITLES[name]
    files = _IDX_FILES[part]
    root = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    if root.exists() and not root.is_dir():
        raise EvoaeError(f"data dir {root} is a file, not a folder; pass --data-dir DIR")
    folder = _find_idx_folder(name, root, files)
    if download:
        folder = fetch(name, folder or _download_folder(name, root))
    if folder is None:
        searched = f"{root / name} and {root}"
        raise EvoaeError(
            f"{title} files not found: looked for {' and '.join(files)} in {searched}; "
            "pass --data-dir DIR or --download"
        )
    img_path = _idx_path(folder, files[0])
    lab_path = _idx_path(folder, files[1])
    assert img_path is not None and lab_path is not None  # ensured by _find_idx_folder/fetch

    images = read_idx(img_path, what=f"{title} image file", hint=_REDOWNLOAD)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise EvoaeError(
            f"{title} image file {img_path} holds a {images.ndim}-D {images.dtype} array, not "
            f"uint8 (N, rows, cols) images (magic 2051); {_REDOWNLOAD}"
        )
    labels = read_idx(lab_path, what=f"{title} label file", hint=_REDOWNLOAD)
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise EvoaeError(
            f"{title} label file {lab_path} holds a {labels.ndim}-D {labels.dtype} array, not "
            f"uint8 labels (magic 2049); {_REDOWNLOAD}"
        )
    if len(images) != len(labels):
        raise EvoaeError(
            f"{title} files in {folder} disagree: {len(images)} images but {len(labels)} "
            f"labels; {_REDOWNLOAD}"
        )
    if len(images) == 0:
        raise EvoaeError(f"{title} image file {img_path} holds no images; {_REDOWNLOAD}")
    images = images[:limit]
    x = images.astype(np.float32)[:, None, :, :]
    np.divide(x, 255.0, out=x)
    return Dataset(x, labels[:limit], name, image_record(x.shape[1:], 0.0, 255.0))


# --------------------------------------------------------------------------- files


def _bad_file(path: Path, kind: str, exc: BaseException) -> EvoaeError:
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return EvoaeError(
        f"cannot read {kind} file {path}: {detail}; check that it is a valid {kind} file"
    )


def _to_unit(
    arr: np.ndarray, path: Path | str, limit: int | None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Validate, scale to [0, 1] and reshape to (N, F) or (N, C, H, W) float32.

    Range statistics use all rows, so ``limit`` never changes the values of the rows kept.
    Returns the data and its preprocessing record (one ``data_min, data_range`` pair).
    """
    if arr.ndim == 0 or arr.shape[0] == 0 or arr.size == 0:
        raise EvoaeError(f"{path} holds no data (shape {arr.shape}); it needs at least one row")
    shape = arr.shape
    if arr.ndim == 2:
        layout = "tabular"
    elif arr.ndim == 3:
        layout = "nhw"
    elif arr.ndim == 4 and shape[1] in (1, 3):
        layout = "nchw"
    elif arr.ndim == 4 and shape[3] in (1, 3) and shape[1] >= 4 and shape[2] >= 4:
        layout = "nhwc"
    else:
        raise EvoaeError(
            f"{path} has unsupported shape {shape}; use (N, F) tabular data, (N, H, W) "
            "grayscale images, or (N, C, H, W) / (N, H, W, C) images with C = 1 or 3"
        )

    kind = arr.dtype.kind
    lo, span = 0.0, 1.0
    if arr.dtype == np.uint8:
        x = arr[:limit].astype(np.float32)
        np.divide(x, 255.0, out=x)
        span = 255.0
    elif kind in "biuf":
        if kind == "f":
            bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
            if bad:
                raise EvoaeError(
                    f"{path} contains {bad} NaN or infinite values; remove or fill them first"
                )
        lo, hi = float(arr.min()), float(arr.max())
        part = arr[:limit]
        if lo >= 0.0 and hi <= 1.0:
            x = part.astype(np.float32)
            lo = 0.0  # kept as is: the record is the identity
        else:
            span = hi - lo
            if not math.isfinite(span):
                raise EvoaeError(
                    f"{path} holds values from {lo:g} to {hi:g}, a range too wide to scale "
                    "to [0, 1] in float64; divide the data by a large constant first"
                )
            if span == 0:
                x = np.zeros(part.shape, np.float32)
                span = 1.0
            else:
                x = ((part.astype(np.float64) - lo) / span).astype(np.float32)
                np.clip(x, 0.0, 1.0, out=x)
    else:
        raise EvoaeError(
            f"{path} holds {arr.dtype} values; it needs numbers (uint8 pixels or floats)"
        )

    if not np.all(np.isfinite(x)):
        raise EvoaeError(f"{path}: scaling to [0, 1] gave non-finite values; rescale the data")
    if layout == "nhw":
        x = x[:, None, :, :]
    elif layout == "nhwc":
        x = x.transpose(0, 3, 1, 2)
    x = np.ascontiguousarray(x)
    if layout == "tabular":
        return x, tabular_record(lo, span, n_features=x.shape[1])
    return x, image_record(x.shape[1:], lo, span)


def _labels(
    y: np.ndarray, n: int, path: Path | str, limit: int | None
) -> tuple[np.ndarray, list[Any] | None]:
    """Labels as int64 (non-integer labels numbered in sorted order) and their classes."""
    if y.ndim != 1 or len(y) != n:
        raise EvoaeError(
            f"{path}: labels 'y' have shape {y.shape} but x has {n} rows; store y as shape ({n},)"
        )
    codes, classes = encode_labels(y, f"{path}")
    return codes[:limit], classes


#: Largest array evoae loads from a user file (bytes as stored); EVOAE_MAX_DATA_BYTES.
MAX_DATA_BYTES = int(os.environ.get("EVOAE_MAX_DATA_BYTES", 4 * 1024**3))
#: Most rows (examples) a dataset may have.
MAX_ROWS = 50_000_000
#: Largest --image-size side.
MAX_IMAGE_SIDE = 1024


def _npy_header(fh: BinaryIO, path: Path, kind: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a ``.npy`` header, without reading the data."""
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        raise _bad_file(path, kind, exc) from None
    return tuple(int(d) for d in shape), np.dtype(dtype)


def _check_declared(
    shape: tuple[int, ...], dtype: np.dtype, available: int, path: Path, kind: str
) -> None:
    """The declared array must fit the bytes on disk and the memory budget."""
    if dtype.hasobject:
        raise EvoaeError(
            f"{path} holds Python objects (dtype {dtype}), which evoae never unpickles; save "
            "a numeric array"
        )
    nbytes = math.prod(shape) * dtype.itemsize
    if shape and shape[0] > MAX_ROWS:
        raise EvoaeError(f"{path} declares {shape[0]} rows, more than the {MAX_ROWS} evoae loads")
    if nbytes > available:
        raise EvoaeError(
            f"cannot read {kind} file {path}: its header declares shape {shape} ({nbytes} bytes) "
            f"but the file holds only {available} bytes of data; it is truncated or damaged"
        )
    # Loading converts to float: 3 float64 copies at most besides the stored bytes.
    need = math.prod(shape) * 8
    if nbytes > MAX_DATA_BYTES or need > 3 * MAX_DATA_BYTES:
        raise EvoaeError(
            f"{path} holds an array of shape {shape} ({nbytes} bytes), more than the "
            f"{MAX_DATA_BYTES} bytes evoae loads (EVOAE_MAX_DATA_BYTES); use --limit on a "
            "smaller file"
        )


def _load_npy(path: Path, limit: int | None) -> Dataset:
    try:
        with open(path, "rb") as fh:
            shape, dtype = _npy_header(fh, path, ".npy")
            _check_declared(shape, dtype, path.stat().st_size - fh.tell(), path, ".npy")
            fh.seek(0)
            arr = np.lib.format.read_array(fh, allow_pickle=False)
    except EvoaeError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise _bad_file(path, ".npy", exc) from None
    x, record = _to_unit(arr, path, limit)
    return Dataset(x, None, path.stem, record)


def _npz_member(zf: zipfile.ZipFile, key: str, path: Path) -> np.ndarray:
    """One array of an ``.npz``: its header checked against the member's size first."""
    info = zf.getinfo(f"{key}.npy")
    if info.file_size > MAX_DATA_BYTES + 65536:
        raise EvoaeError(
            f"{path}: array {key!r} is {info.file_size} bytes, more than the {MAX_DATA_BYTES} "
            "bytes evoae loads (EVOAE_MAX_DATA_BYTES)"
        )
    with zf.open(info) as fh:
        shape, dtype = _npy_header(fh, path, ".npz")  # type: ignore[arg-type]
        header = fh.tell()
        _check_declared(shape, dtype, info.file_size - header, path, ".npz")
    with zf.open(info) as fh:  # read_array reads the header again
        return np.lib.format.read_array(fh, allow_pickle=False)  # type: ignore[arg-type]


def _load_npz(path: Path, limit: int | None) -> Dataset:
    try:
        with zipfile.ZipFile(path) as zf:
            keys = [n.removesuffix(".npy") for n in zf.namelist() if n.endswith(".npy")]
            if len(keys) > 1000:
                raise EvoaeError(f"{path} holds {len(keys)} arrays; save the data under key 'x'")
            xkey = "x" if "x" in keys else next((k for k in keys if k != "y"), None)
            if xkey is None:
                raise EvoaeError(
                    f"{path} holds no data arrays (keys: {keys}); save the data under key 'x'"
                )
            arr = _npz_member(zf, xkey, path)
            y = _npz_member(zf, "y", path) if "y" in keys else None
    except EvoaeError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError) as exc:
        raise _bad_file(path, ".npz", exc) from None
    x, record = _to_unit(arr, path, limit)
    labels, classes = (None, None) if y is None else _labels(y, len(arr), path, limit)
    if classes is not None:
        record["classes"] = classes
    return Dataset(x, labels, path.stem, record)


def _load_csv(
    path: Path, limit: int | None, columns: Any = None, label_column: Any = None
) -> Dataset:
    size = path.stat().st_size
    if size > MAX_DATA_BYTES // 4:  # parsed as Python strings: ~10x the file in memory
        raise EvoaeError(
            f"CSV file {path} is {size} bytes, more than the {MAX_DATA_BYTES // 4} evoae parses; "
            "convert it to .npy"
        )
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            first = fh.readline()
            fh.seek(0)
            # Comma unless the first line clearly uses tabs or semicolons instead.
            delim = ","
            if "," not in first:
                delim = next((d for d in ("\t", ";") if d in first), ",")
            reader = csv.reader(fh, delimiter=delim)
            rows: list[tuple[int, list[str]]] = []
            for row in reader:
                cells = [c.strip() for c in row]
                if any(cells):  # blank lines carry no data
                    rows.append((reader.line_num, cells))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise _bad_file(path, ".csv", exc) from None

    if not rows:
        raise EvoaeError(f"CSV file {path} is empty; it needs rows of numbers")
    width = len(rows[0][1])
    pick = select_columns(rows[0][1], columns, label_column, f"CSV file {path}")
    body = rows[1:] if pick.has_header else rows
    if not body:
        raise EvoaeError(f"CSV file {path} has a header but no data rows; add rows of numbers")
    for line, cells in body:
        if len(cells) != width:
            raise EvoaeError(
                f"CSV file {path}: row {line} has {len(cells)} columns but row {rows[0][0]} has "
                f"{width}; every row needs the same number of columns"
            )
    table = np.array([cells for _, cells in body], dtype=str)
    try:
        # numpy parses all cells in C; only on failure do we look for the culprit.
        values = table[:, pick.features].astype(np.float64)
    except ValueError:
        values = None
    if values is None or not np.all(np.isfinite(values)):
        for line, cells in body:
            for col in pick.features:
                cell = cells[col]
                if not is_number(cell) or not math.isfinite(float(cell)):
                    raise EvoaeError(
                        f"CSV file {path}: row {line}, column {col + 1} is {cell!r}, not a finite "
                        "number; every feature cell below the header must be numeric "
                        "(choose columns with --columns)"
                    )
    assert values is not None
    with np.errstate(over="ignore"):
        span = values.max(axis=0) - values.min(axis=0)
    if not np.all(np.isfinite(span)):
        col = int(np.argmin(np.isfinite(span))) + 1
        raise EvoaeError(
            f"CSV file {path}: column {col} spans a range too wide to scale to [0, 1] in "
            "float64; divide the data by a large constant first"
        )
    x = minmax_scale(values)[:limit]
    record = tabular_record(*minmax_params(values), columns=pick.names)
    labels = None
    if pick.label is not None:
        labels, classes = encode_labels(table[:, pick.label], f"CSV file {path}")
        labels = labels[:limit]
        record["label_column"] = pick.label_name
        if classes is not None:
            record["classes"] = classes
    return Dataset(x, labels, path.stem, record)


def _load_file(
    source: str, limit: int | None, columns: Any = None, label_column: Any = None
) -> Dataset:
    path = Path(source).expanduser()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _unknown_source(source) from None
    except OSError as exc:
        detail = " ".join(str(exc.strerror or exc).split())
        raise EvoaeError(f"cannot read dataset {source!r} ({detail}): check the path") from None
    if stat.S_ISDIR(st.st_mode):
        raise EvoaeError(
            f"{path} is a folder; pass a {'/'.join(SUFFIXES)} file, or a built-in dataset "
            f"name ({', '.join(BUILTIN)}) with --data-dir {path}"
        )
    if not stat.S_ISREG(st.st_mode):
        raise EvoaeError(
            f"{path} is not a regular file (a pipe, socket or device): save the data to a "
            f"{'/'.join(SUFFIXES)} file"
        )
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _load_npy(path, limit)
    if suffix == ".npz":
        return _load_npz(path, limit)
    if suffix == ".csv":
        return _load_csv(path, limit, columns, label_column)
    raise EvoaeError(
        f"unsupported file type {suffix or '(no suffix)'!r} for {path}; supported: "
        f"{', '.join(SUFFIXES)}"
    )


# --------------------------------------------------------------------------- public


def load_dataset(
    source: str,
    *,
    data_dir: str | Path | None = None,
    image_size: tuple[int, int] | None = None,
    limit: int | None = None,
    download: bool = False,
    columns: list[str | int] | None = None,
    label_column: str | int | None = None,
) -> Dataset:
    """Load the training pool.

    Parameters
    ----------
    source
        ``"digits"`` (scikit-learn's 8x8 digits, /16, 1797 images), ``"mnist"`` or
        ``"fashion-mnist"`` (the 60k training files, /255), or the path of a ``.npy``,
        ``.npz`` or ``.csv`` file.
    data_dir
        Folder with ``mnist/`` and ``fashion-mnist/`` subfolders, or the folder holding the
        four files itself; defaults to :func:`default_data_dir`.
    image_size
        Resize image data to ``(H, W)`` (bilinear, as TensorFlow); an error for tabular data.
    limit
        Keep only the first ``limit`` rows (applied before resizing).
    download
        Fetch missing (or MD5-mismatched) MNIST / Fashion-MNIST files into the data dir.
    columns, label_column
        CSV files only: the feature columns (header names or 0-based indices; default
        every column but the label) and the column of labels (kept in ``y``, never a
        feature; non-integer labels are numbered in sorted order, see ``classes``).
    """
    limit = _check_limit(limit)
    if image_size is not None:
        _check_image_size(image_size)
    if not isinstance(source, str | os.PathLike):
        raise EvoaeError(f"dataset source must be a name or a path, got {source!r}")
    source = os.fspath(source)
    if not source.strip():
        raise EvoaeError(
            f"the dataset name is empty: pass a built-in dataset ({', '.join(BUILTIN)}) or the "
            f"path of a {'/'.join(SUFFIXES)} file"
        )
    if isinstance(source, str) and "\x00" in source:
        raise EvoaeError(f"dataset {source!r} contains a NUL byte: pass a real file name")
    if (columns is not None or label_column is not None) and not source.lower().endswith(".csv"):
        raise EvoaeError(f"--columns and --label-column apply to CSV files only, not {source}")
    name = _builtin_name(source)
    if name == "digits":
        ds = _load_digits(limit)
    elif name is not None:
        ds = _load_idx_pair(name, "train", data_dir, limit, download)
    else:
        ds = _load_file(source, limit, columns, label_column)
    return _finish(ds, image_size)


def load_test_dataset(
    source: str,
    *,
    data_dir: str | Path | None = None,
    image_size: tuple[int, int] | None = None,
    limit: int | None = None,
    download: bool = False,
) -> Dataset | None:
    """Load the official test set (the t10k files) of ``"mnist"`` / ``"fashion-mnist"``.

    Returns None for other sources (``"digits"`` and files have no official test set).
    Parameters are as for :func:`load_dataset`; an unknown name that is not an existing
    file raises the same error as there.
    """
    limit = _check_limit(limit)
    if image_size is not None:
        _check_image_size(image_size)
    source = os.fspath(source)
    name = _builtin_name(source)
    if name is None:
        if not Path(source).expanduser().exists():
            raise _unknown_source(source)
        return None
    if name == "digits":
        return None
    return _finish(_load_idx_pair(name, "test", data_dir, limit, download), image_size)
