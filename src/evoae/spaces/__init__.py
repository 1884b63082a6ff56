"""Search spaces: genes, genomes and their decoding into specs."""

from __future__ import annotations

from typing import Any

from evoae.errors import EvoaeError
from evoae.spaces.base import Gene, Genome, Space, spec_key
from evoae.spaces.dense import ACTIVATIONS, OPTIMIZERS, DenseSpace, dense_preset

#: family name -> class with a ``from_config`` classmethod. Other families register here.
SPACES: dict[str, Any] = {"dense": DenseSpace}


def space_from_config(cfg: dict[str, Any]) -> Space:
    """Rebuild a space from :meth:`Space.config`."""
    family = cfg.get("family")
    if family not in SPACES:
        raise EvoaeError(f"unknown space family {family!r}: known are {', '.join(SPACES)}")
    return SPACES[family].from_config(cfg)


__all__ = [
    "ACTIVATIONS",
    "OPTIMIZERS",
    "SPACES",
    "DenseSpace",
    "Gene",
    "Genome",
    "Space",
    "dense_preset",
    "space_from_config",
    "spec_key",
]
