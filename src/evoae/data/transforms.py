"""Array transforms used when loading data: image resizing and min-max scaling."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evoae.errors import EvoaeError

__all__ = ["resize_images", "minmax_scale", "minmax_params", "check_size"]

# About 16 MiB of float32 per chunk (input or output side, whichever is larger).
_CHUNK_ELEMENTS = 4 * 1024 * 1024


def check_size(size: Sequence[int] | None, what: str = "image_size") -> tuple[int, int]:
    """Validate an ``(H, W)`` pair of positive ints and return it as a tuple."""
    ok = (
        isinstance(size, Sequence)
        and not isinstance(size, str)
        and len(size) == 2
        and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in size)
    )
    if not ok or min(size) < 1:  # type: ignore[arg-type]
        raise EvoaeError(f"{what} must be two positive integers (height, width), got {size!r}")
    return int(size[0]), int(size[1])  # type: ignore[index]


def resize_images(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a batch of images with bilinear interpolation.

    Uses ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False,
    antialias=False)``, which samples at half-pixel centres exactly like TensorFlow 2's
    default ``tf.image.resize``, the resize used by the published protocol.

    Parameters
    ----------
    x
        ``(N, C, H, W)`` array; converted to float32.
    size
        Target ``(h, w)``.

    Returns
    -------
    numpy.ndarray
        ``(N, C, h, w)`` float32. When ``(H, W) == size`` the input is returned without a
        copy (if it already is C-contiguous float32).
    """
    h, w = check_size(size, "size")
    if x.ndim != 4:
        raise EvoaeError(
            f"resize_images needs an (N, C, H, W) image array, got shape {tuple(x.shape)}"
        )
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, c, in_h, in_w = x.shape
    if (in_h, in_w) == (h, w):
        return x

    import torch  # imported lazily: it is slow to import and only needed here
    import torch.nn.functional as F

    out = np.empty((n, c, h, w), dtype=np.float32)
    per_row = c * max(in_h * in_w, h * w)
    step = max(1, _CHUNK_ELEMENTS // per_row)
    with torch.no_grad():
        for start in range(0, n, step):
            batch = torch.from_numpy(x[start : start + step])
            resized = F.interpolate(
                batch, size=(h, w), mode="bilinear", align_corners=False, antialias=False
            )
            out[start : start + step] = resized.numpy()
    return out


def minmax_scale(x: np.ndarray) -> np.ndarray:
    """Scale each column of an ``(N, F)`` array to ``[0, 1]``.

    Constant columns become 0. Values must be finite. Returns float32; the statistics are
    computed in float64 so that large-magnitude columns keep their precision.
    """
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise EvoaeError(f"minmax_scale needs an (N, F) array, got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if arr.shape[0] == 0:
        return np.zeros(arr.shape, dtype=np.float32)
    lo, span = minmax_params(arr)
    out = (arr - lo) / span
    # Rounding can leave values a hair outside [0, 1].
    np.clip(out, 0.0, 1.0, out=out)
    return out.astype(np.float32)


def minmax_params(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column ``(data_min, data_range)`` of a non-empty ``(N, F)`` array, in float64.

    Constant columns get range 1 (they scale to 0). Values must be finite.
    """
    arr = np.asarray(x, dtype=np.float64)
    bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise EvoaeError(
            f"cannot min-max scale data with {bad} NaN or infinite values; remove or fill them"
        )
    lo = arr.min(axis=0)
    span = arr.max(axis=0) - lo
    span[span == 0] = 1.0
    return lo, span
