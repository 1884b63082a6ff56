"""Choosing a table's feature and label columns, and encoding labels as integers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evoae.errors import EvoaeError

__all__ = ["Selection", "select_columns", "encode_labels"]


@dataclass(frozen=True)
class Selection:
    """Which columns of a CSV file are features and which (if any) holds the labels."""

    features: list[int]
    label: int | None
    has_header: bool
    names: list[str | int]  #: the feature columns: header names, else 0-based indices
    label_name: str | int | None


def is_number(cell: str) -> bool:
    """A CSV cell that parses as a float."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _available(header: list[str] | None, width: int) -> str:
    if header is None:
        return f"the file has no header: use 0-based indices 0-{width - 1}"
    return f"its columns are {', '.join(repr(h) for h in header)} (0-based indices 0-{width - 1})"


def _find(spec: Any, header: list[str] | None, width: int, what: str, where: str) -> int:
    """The index of column ``spec`` (a header name, else a 0-based index)."""
    if isinstance(spec, bool) or not isinstance(spec, str | int | np.integer):
        raise EvoaeError(f"{what} must be column names or 0-based indices, got {spec!r}")
    text = str(spec).strip()
    if header is not None and text in header:
        if header.count(text) > 1:
            at = [i for i, h in enumerate(header) if h == text]
            raise EvoaeError(
                f"{where} has {len(at)} columns named {text!r} ({what}): "
                f"name them by 0-based index ({', '.join(map(str, at))})"
            )
        return header.index(text)
    if text.isdigit() and int(text) < width:
        return int(text)
    raise EvoaeError(f"{where} has no column {text!r} ({what}); {_available(header, width)}")


def select_columns(
    first: list[str],
    columns: Sequence[Any] | None,
    label_column: Any,
    where: str,
) -> Selection:
    """Resolve ``columns`` and ``label_column`` against a CSV file's first row.

    The first row is a header when one of its cells is not a number, except that a
    label column given by index may hold text in a file without a header. Features are
    ``columns`` in the given order, else every column but the label.
    """
    width = len(first)
    has_header = not all(is_number(c) for c in first)
    header = first if has_header else None
    label = None
    if label_column is not None:
        label = _find(label_column, header, width, "--label-column", where)
        by_name = header is not None and str(label_column).strip() in header
        if has_header and not by_name:
            # A text label in the first data row is not a header.
            has_header = not all(is_number(c) for i, c in enumerate(first) if i != label)
            header = first if has_header else None
    if columns is None:
        features = [i for i in range(width) if i != label]
    else:
        if isinstance(columns, str | bytes) or not isinstance(columns, Sequence) or not columns:
            raise EvoaeError(
                f"--columns must be a non-empty list of column names or indices, got {columns!r}"
            )
        features = [_find(c, header, width, "--columns", where) for c in columns]
        seen: set[int] = set()
        for c, i in zip(columns, features, strict=True):
            if i in seen:
                raise EvoaeError(f"--columns lists column {str(c).strip()!r} twice in {where}")
            seen.add(i)
        if label is not None and label in seen:
            raise EvoaeError(
                f"column {str(label_column).strip()!r} of {where} is the label column: "
                "it cannot also be a feature; drop it from --columns"
            )
    if not features:
        raise EvoaeError(f"{where} has no column left for features besides the label")
    names: list[str | int] = [header[i] if header is not None else i for i in features]
    label_name = None if label is None else (header[label] if header is not None else label)
    return Selection(features, label, has_header, names, label_name)


def encode_labels(values: Any, where: str) -> tuple[np.ndarray, list[Any] | None]:
    """Labels as int64: integers kept, anything else numbered in sorted order.

    Returns the codes and, when labels were not integers, ``classes`` (code ``i`` is
    ``classes[i]``; numbers sort numerically, text alphabetically).
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "US":
        text = [str(v).strip() for v in arr.ravel()]
        empty = sum(1 for t in text if not t)
        if empty:
            raise EvoaeError(f"{where}: {empty} labels are empty; every row needs a label")
        if all(is_number(t) for t in text):
            arr = np.array([float(t) for t in text]).reshape(arr.shape)
        else:
            classes = sorted(set(text))
            index = {c: i for i, c in enumerate(classes)}
            codes = np.array([index[t] for t in text], dtype=np.int64).reshape(arr.shape)
            return codes, classes
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64), None
    if arr.dtype.kind != "f":
        raise EvoaeError(f"{where}: labels must be numbers or text, got {arr.dtype} values")
    if not np.all(np.isfinite(arr)):
        raise EvoaeError(f"{where}: labels hold NaN or infinite values")
    if np.all(arr == np.round(arr)) and np.all(np.abs(arr) < 2**62):
        return arr.astype(np.int64), None
    uniq = np.unique(arr)
    return np.searchsorted(uniq, arr).astype(np.int64), [float(v) for v in uniq]
