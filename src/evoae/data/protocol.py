"""Which rows a search trains, validates and tests on: the data protocol of a run."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from evoae.data.arrays import as_dataset
from evoae.data.sources import load_dataset, load_test_dataset
from evoae.data.splits import Splits, random_split, seed_split
from evoae.errors import EvoaeError

#: Datasets whose ``auto`` split is the published one.
MNIST_LIKE = ("mnist", "fashion-mnist")
#: Seeds of the one-off Bernoulli draw of the validation and test images under
#: ``binarize="dynamic"``: fixed, so every run sees the same binary test set.
BINARIZE_SEEDS = {"val": 1, "test": 0}


def load_splits(
    dataset: str = "digits",
    *,
    data_dir: str | None = None,
    image_size: int | None = None,
    limit: int | None = None,
    split: str = "auto",
    download: bool = False,
    seed: int = 0,
    data: Any = None,
    columns: list[str] | None = None,
    label_column: str | None = None,
    binarize: str = "none",
) -> Splits:
    """The train / validation / test splits a search uses.

    ``auto`` is the published protocol for MNIST and Fashion-MNIST (first 15,000 images
    at 16x16 unless ``image_size`` says otherwise: 10,000 train, 5,000 validation; the
    official test set as test) and a seeded 70/15/15 split for everything else. In-memory
    ``data`` (a Dataset, an array or ``(X, y)``: :func:`evoae.data.arrays.as_dataset`) is
    split 70/15/15 with ``seed``; ready :class:`Splits` are used as given. ``columns``
    and ``label_column`` pick a CSV file's columns.
    ``binarize="dynamic"`` draws the validation and test images once from Bernoulli
    distributions with the grey levels as probabilities (fixed seeds,
    :data:`BINARIZE_SEEDS`); the training images stay grey, to be drawn afresh by the
    model at every pass (dynamic binarisation).
    """
    splits = _splits(dataset, data_dir, image_size, limit, split, download, seed, data, columns,
                     label_column)  # fmt: skip
    if binarize == "none":
        return splits
    if binarize != "dynamic":
        raise EvoaeError(f"unknown binarize {binarize!r}: choose none or dynamic")
    return Splits(
        train=splits.train,
        val=binarized(splits.val, BINARIZE_SEEDS["val"]),
        test=None if splits.test is None else binarized(splits.test, BINARIZE_SEEDS["test"]),
    )


def binarized(ds: Any, seed: int) -> Any:
    """``ds`` with each value replaced by one Bernoulli draw (the value as probability)."""
    draw = np.random.default_rng(seed).random(ds.x.shape, dtype=np.float32)
    return dataclasses.replace(ds, x=(draw < ds.x).astype(np.float32))


def _splits(
    dataset: str,
    data_dir: str | None,
    image_size: int | None,
    limit: int | None,
    split: str,
    download: bool,
    seed: int,
    data: Any,
    columns: list[str] | None,
    label_column: str | None,
) -> Splits:
    if data is not None:
        if columns is not None or label_column is not None:
            raise EvoaeError(
                "--columns and --label-column apply to CSV files, not to in-memory data"
            )
        if isinstance(data, Splits):  # split by the caller (the estimator: no test split)
            return data
        return random_split(as_dataset(data), val_fraction=0.15, test_fraction=0.15, seed=seed)
    mnist_like = dataset in MNIST_LIKE
    split = split if split != "auto" else ("seed" if mnist_like else "random")
    size = image_size if image_size is not None else (16 if mnist_like else None)
    hw = None if size is None else (size, size)
    rows = limit if limit is not None else (15_000 if split == "seed" else None)
    ds = load_dataset(
        dataset,
        data_dir=data_dir,
        image_size=hw,
        limit=rows,
        download=download,
        columns=columns,
        label_column=label_column,
    )
    test = load_test_dataset(dataset, data_dir=data_dir, image_size=hw) if mnist_like else None
    if split == "seed":
        n_val = min(5_000, len(ds) // 3) if limit is not None else 5_000
        n_train = len(ds) - n_val if limit is not None else 10_000
        return seed_split(ds, n_train=n_train, n_val=n_val, test=test)
    return random_split(ds, val_fraction=0.15, test_fraction=0.15, seed=seed, test=test)
