"""Train / validation / test splits."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from evoae.data.sources import Dataset
from evoae.errors import EvoaeError

__all__ = ["Splits", "seed_split", "random_split"]


@dataclass(frozen=True, eq=False)
class Splits:
    """The three splits of one experiment; ``test`` may be None."""

    train: Dataset
    val: Dataset
    test: Dataset | None


def _check_test(ds: Dataset, test: Dataset | None) -> None:
    if test is not None and test.x.shape[1:] != ds.x.shape[1:]:
        raise EvoaeError(
            f"test set {test.name!r} has rows of shape {test.x.shape[1:]} but the training "
            f"data {ds.name!r} has {ds.x.shape[1:]}; load both with the same image size"
        )


def _check_count(value: int, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise EvoaeError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def seed_split(
    ds: Dataset, n_train: int = 10_000, n_val: int = 5_000, test: Dataset | None = None
) -> Splits:
    """The published protocol: rows ``[0, n_train)`` train, the next ``n_val`` validate.

    Parameters
    ----------
    ds
        The training pool, in its original order.
    n_train, n_val
        Split sizes; ``ds`` needs at least ``n_train + n_val`` rows.
    test
        The official test set, passed through unchanged.
    """
    n_train = _check_count(n_train, "n_train")
    n_val = _check_count(n_val, "n_val")
    need = n_train + n_val
    if len(ds) < need:
        raise EvoaeError(
            f"dataset {ds.name!r} has {len(ds)} rows but the split needs {need} "
            f"({n_train} train + {n_val} validation); lower the split sizes or raise the limit"
        )
    _check_test(ds, test)
    return Splits(
        train=ds.subset(slice(0, n_train)),
        val=ds.subset(slice(n_train, need)),
        test=test,
    )


def _check_fraction(value: float, what: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.integer | np.floating)
        or not math.isfinite(value)
        or not 0.0 <= value < 1.0
    ):
        raise EvoaeError(f"{what} must be a number in [0, 1), got {value!r}")
    return float(value)


def random_split(
    ds: Dataset,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    test: Dataset | None = None,
) -> Splits:
    """Split ``ds`` by a seeded permutation (``np.random.default_rng(seed)``).

    Split sizes are ``round(N * fraction)``; the training split gets the rest. Rows keep
    their original order within each split. If ``test`` is given it is the test split and
    ``test_fraction`` is ignored. Every split must be non-empty.
    """
    val_fraction = _check_fraction(val_fraction, "val_fraction")
    if test is None:
        test_fraction = _check_fraction(test_fraction, "test_fraction")
    else:
        test_fraction = 0.0
        _check_test(ds, test)
    n = len(ds)
    n_val = round(n * val_fraction)
    n_test = round(n * test_fraction)
    n_train = n - n_val - n_test
    sizes = {"train": n_train, "validation": n_val}
    if test is None:
        sizes["test"] = n_test
    empty = [k for k, v in sizes.items() if v < 1]
    if empty:
        raise EvoaeError(
            f"dataset {ds.name!r} with {n} rows, val_fraction={val_fraction} and "
            f"test_fraction={test_fraction} leaves the {' and '.join(empty)} split empty; "
            "adjust the fractions or use more data"
        )
    perm = np.random.default_rng(seed).permutation(n)
    train_idx = np.sort(perm[:n_train])
    val_idx = np.sort(perm[n_train : n_train + n_val])
    if test is None:
        test = ds.subset(np.sort(perm[n_train + n_val :]))
    return Splits(train=ds.subset(train_idx), val=ds.subset(val_idx), test=test)
