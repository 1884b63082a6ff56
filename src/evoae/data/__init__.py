"""Data layer: datasets, IDX files, downloads, transforms and splits.

Everything here raises :class:`evoae.errors.EvoaeError` with a one-line message for bad
input, missing or corrupt files.
"""

from evoae.data.arrays import as_dataset, from_arrays
from evoae.data.download import FILES, MIRRORS, fetch, md5sum, verify_file
from evoae.data.idx import read_idx, write_idx
from evoae.data.preprocess import Preprocess
from evoae.data.protocol import MNIST_LIKE, load_splits
from evoae.data.sources import (
    BUILTIN,
    SUFFIXES,
    Dataset,
    default_data_dir,
    load_dataset,
    load_test_dataset,
)
from evoae.data.splits import Splits, random_split, seed_split
from evoae.data.transforms import minmax_scale, resize_images

__all__ = [
    "BUILTIN",
    "FILES",
    "MIRRORS",
    "MNIST_LIKE",
    "SUFFIXES",
    "Dataset",
    "Preprocess",
    "Splits",
    "as_dataset",
    "default_data_dir",
    "fetch",
    "from_arrays",
    "load_dataset",
    "load_splits",
    "load_test_dataset",
    "md5sum",
    "minmax_scale",
    "random_split",
    "read_idx",
    "resize_images",
    "seed_split",
    "verify_file",
    "write_idx",
]
