"""In-memory data for ``evoae.search(data=...)``: a Dataset, an array, or ``(X, y)``.

Arrays are scaled as files are, and the scaling is recorded (``Dataset.preprocess``):

* tables ``(N, F)``: min-max per column, like CSV files and
  :class:`evoae.EvolvedAutoencoder` (constant columns become 0);
* images ``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)`` (C = 1 or 3): uint8 pixels
  /255, other numbers kept when already in ``[0, 1]``, else one min-max over the whole
  array, like ``.npy`` files.

Labels ``y`` are kept as int64 (non-integer labels numbered in sorted order).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evoae.data.preprocess import tabular_record
from evoae.data.sources import Dataset, _labels, _to_unit
from evoae.data.transforms import minmax_params
from evoae.errors import EvoaeError

__all__ = ["as_dataset", "from_arrays"]

ARRAY_NAME = "<array>"


def _array(value: Any, what: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "__array__") or isinstance(value, list):
        try:
            return np.asarray(value)
        except (TypeError, ValueError) as e:
            raise EvoaeError(f"{what} cannot be read as an array ({e})") from None
    raise EvoaeError(
        f"data must be a Dataset, a NumPy array or a tuple (X, y), got {type(value).__name__}"
    )


def from_arrays(x: Any, y: Any = None, *, name: str = ARRAY_NAME) -> Dataset:
    """A :class:`Dataset` of the rows of ``x`` (scaled as the module says) and labels ``y``."""
    arr = _array(x, "data X")
    if arr.dtype.kind not in "biuf":
        raise EvoaeError(f"data X holds {arr.dtype} values; it needs numbers")
    if arr.ndim == 0 or arr.shape[0] == 0 or arr.size == 0:
        raise EvoaeError(f"data X holds no rows (shape {arr.shape}); it needs at least one")
    if arr.ndim == 2:
        values = arr.astype(np.float64)
        lo, span = minmax_params(values)  # refuses NaN and infinities in one line
        scaled = np.clip((values - lo) / span, 0.0, 1.0).astype(np.float32)
        record = tabular_record(lo, span)
    elif arr.ndim in (3, 4):
        scaled, record = _to_unit(arr, "data X", None)
    else:
        raise EvoaeError(
            f"data X has shape {arr.shape}; use (N, F) rows of features, (N, H, W) grayscale "
            "images, or (N, C, H, W) / (N, H, W, C) images with C = 1 or 3"
        )
    labels = None
    if y is not None:
        yarr = _array(y, "labels y")
        labels, classes = _labels(yarr, len(arr), "labels y", None)
        if classes is not None:
            record["classes"] = classes
    return Dataset(scaled, labels, name, record)


def as_dataset(data: Any, *, name: str = ARRAY_NAME) -> Dataset:
    """``data`` as a Dataset: a Dataset as is, an array or a tuple ``(X, y)`` converted."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, tuple):
        if len(data) != 2:
            raise EvoaeError(f"data as a tuple must be (X, y), got {len(data)} items")
        return from_arrays(data[0], data[1], name=name)
    return from_arrays(data, name=name)
