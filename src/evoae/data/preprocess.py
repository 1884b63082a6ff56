"""What a model expects of its inputs, recorded as JSON and applied to raw data.

Every loader scales its data to ``[0, 1]`` with ``x = (raw - data_min) / data_range``
(per feature for CSV files and in-memory tables, one pair for images and ``.npy`` /
``.npz`` arrays) and may resize images. The loader's *record* of those steps travels with
the data (``Dataset.preprocess``), is stored in ``model.json`` and ``export.json``, and
:class:`Preprocess` replays it on new raw data::

    {"kind": "image", "raw_shape": [1, 28, 28], "data_min": 0.0, "data_range": 255.0,
     "resize": [16, 16], "input_shape": [256]}

Steps: reshape each raw example to ``raw_shape`` (channels first), scale, resize
(bilinear, half-pixel centres, no antialiasing) and clip images to ``[0, 1]``, reshape to
the model's ``input_shape``. Tabular values are not clipped: a value outside the training
range maps outside ``[0, 1]``, as in :class:`evoae.EvolvedAutoencoder`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from evoae.errors import EvoaeError

__all__ = ["Preprocess", "image_record", "tabular_record", "identity_record"]

KINDS = ("image", "tabular")


def _floats(values: Any) -> float | list[float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr) if arr.ndim == 0 else [float(v) for v in arr.ravel()]


def image_record(
    raw_shape: Sequence[int], data_min: float = 0.0, data_range: float = 1.0
) -> dict[str, Any]:
    """The record of images scaled by one ``(data_min, data_range)`` pair."""
    return {
        "kind": "image",
        "raw_shape": [int(v) for v in raw_shape],
        "data_min": _floats(data_min),
        "data_range": _floats(data_range),
        "resize": None,
    }


def tabular_record(
    data_min: Any,
    data_range: Any,
    *,
    columns: Sequence[Any] | None = None,
    n_features: int | None = None,
) -> dict[str, Any]:
    """The record of an ``(N, F)`` table scaled per feature (or by one pair)."""
    lo, span = _floats(data_min), _floats(data_range)
    if n_features is None:
        n_features = len(lo) if isinstance(lo, list) else len(columns or ())
    out: dict[str, Any] = {
        "kind": "tabular",
        "raw_shape": [int(n_features)],
        "data_min": lo,
        "data_range": span,
        "resize": None,
    }
    if columns is not None:
        out["columns"] = list(columns)
    return out


def identity_record(x: np.ndarray) -> dict[str, Any]:
    """The record of data that already is what the model takes (no scaling)."""
    if x.ndim == 4:
        return image_record(x.shape[1:])
    return tabular_record(0.0, 1.0, n_features=int(x.shape[1]))


def _bad(why: str) -> EvoaeError:
    return EvoaeError(f"the model's preprocessing record is invalid: {why}")


def _shape(value: Any, what: str) -> tuple[int, ...]:
    ok = (
        isinstance(value, list | tuple)
        and len(value) > 0
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    )
    if not ok:
        raise _bad(f"{what} must be a list of positive integers, got {value!r}")
    return tuple(int(v) for v in value)


def _scale(value: Any, what: str, n: int) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _bad(f"{what} must be a number or a list of numbers, got {value!r}") from None
    if arr.ndim > 1 or (arr.ndim == 1 and len(arr) != n) or not np.all(np.isfinite(arr)):
        raise _bad(f"{what} must be a finite number or {n} of them")
    return arr


class Preprocess:
    """Raw data -> model input, as recorded by the loader (see the module docstring).

    ``preprocess(raw)`` takes a batch (NumPy array, torch tensor or nested lists) whose
    examples have the raw shape (images also as ``(N, H, W)`` when grayscale,
    ``(N, H, W, C)`` or flattened ``(N, C*H*W)``) and returns a float32 tensor of shape
    ``(N, *input_shape)`` ready for ``model.encode``. ``record`` is the JSON form.
    """

    def __init__(self, record: dict[str, Any], input_shape: Sequence[int] | None = None) -> None:
        if not isinstance(record, dict) or record.get("kind") not in KINDS:
            raise _bad(f"kind must be one of {', '.join(KINDS)}")
        self.kind: str = record["kind"]
        self.raw_shape = _shape(record.get("raw_shape"), "raw_shape")
        if self.kind == "image" and len(self.raw_shape) != 3:
            raise _bad(f"image raw_shape must be [C, H, W], got {list(self.raw_shape)}")
        n = self.raw_shape[0] if self.kind == "tabular" else 1
        self.data_min = _scale(record.get("data_min"), "data_min", n)
        self.data_range = _scale(record.get("data_range"), "data_range", n)
        if np.any(self.data_range <= 0):
            raise _bad("data_range must be positive")
        resize = record.get("resize")
        self.resize = None if resize is None else _shape(resize, "resize")
        if self.resize is not None and (self.kind != "image" or len(self.resize) != 2):
            raise _bad(f"resize must be [H, W] for images, got {resize!r}")
        scaled = self.raw_shape
        if self.resize is not None:
            scaled = (self.raw_shape[0], *self.resize)
        shape = record.get("input_shape") if input_shape is None else list(input_shape)
        self.input_shape = scaled if shape is None else _shape(shape, "input_shape")
        stored = record.get("input_shape")
        if stored is not None and list(stored) != list(self.input_shape):
            raise _bad(f"input_shape {stored!r} is not the model's {list(self.input_shape)}")
        if math.prod(self.input_shape) != math.prod(scaled):
            raise _bad(f"input_shape {list(self.input_shape)} does not hold {list(scaled)} values")
        self.record: dict[str, Any] = {**record, "input_shape": list(self.input_shape)}

    def __call__(self, raw: Any) -> Any:
        import torch  # lazily, as the rest of the data layer

        if isinstance(raw, torch.Tensor):
            raw = raw.detach().cpu().numpy()
        try:
            arr = np.asarray(raw)
        except (TypeError, ValueError) as e:
            raise EvoaeError(f"preprocess needs an array of numbers ({e})") from None
        if arr.dtype.kind not in "biuf":
            raise EvoaeError(f"preprocess needs numbers, got {arr.dtype} values")
        x = self._reshape(arr).astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise EvoaeError("preprocess got NaN or infinite values; remove or fill them first")
        if self.kind == "tabular":
            with np.errstate(over="ignore"):
                x = (x - self.data_min) / self.data_range
                finite = np.all(np.isfinite(x.astype(np.float32)))
            if not finite:  # unclipped: a raw 1e300 would reach the model as inf
                raise EvoaeError(
                    "preprocess got values so far outside the training data's range that "
                    "they overflow float32 once scaled; check the data's units"
                )
        else:
            x = (x - float(self.data_min)) / float(self.data_range)
            if self.resize is not None:
                from evoae.data.transforms import resize_images

                x = resize_images(x.astype(np.float32), self.resize)
            np.clip(x, 0.0, 1.0, out=x)
        out = np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), *self.input_shape)
        return torch.from_numpy(out)

    def _reshape(self, arr: np.ndarray) -> np.ndarray:
        """``arr`` as ``(N, *raw_shape)``, from any of the accepted layouts."""
        want = self.raw_shape
        if arr.ndim >= 1 and tuple(arr.shape[1:]) == want:
            return arr
        flat = arr.ndim == 2 or (self.kind == "tabular" and arr.ndim > 2)
        if flat and math.prod(arr.shape[1:]) == math.prod(want):
            return arr.reshape(len(arr), *want)
        if self.kind == "image":
            c, h, w = want
            if arr.ndim == 3 and c == 1 and arr.shape[1:] == (h, w):
                return arr[:, None]
            if arr.ndim == 4 and arr.shape[1:] == (h, w, c):
                return arr.transpose(0, 3, 1, 2)
            accepted = f"(N, {c}, {h}, {w}), (N, {h}, {w}, {c}) or (N, {c * h * w})"
            if c == 1:
                accepted = f"(N, {h}, {w}), " + accepted
        else:
            accepted = f"(N, {want[0]})"
        raise EvoaeError(
            f"preprocess got raw data of shape {tuple(arr.shape)}; this model takes {accepted}"
        )

    def __repr__(self) -> str:
        return f"Preprocess({self.record!r})"
