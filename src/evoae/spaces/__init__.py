"""Search spaces: genes, genomes and their decoding into specs."""

from __future__ import annotations

from typing import Any

from evoae.errors import EvoaeError
from evoae.spaces.base import Gene, Genome, Space, spec_key
from evoae.spaces.conv import ConvSpace, conv_ae_space, conv_vae_space
from evoae.spaces.dense import ACTIVATIONS, OPTIMIZERS, DenseSpace, dense_preset

#: family name -> class with a ``from_config`` classmethod. Other families register here.
SPACES: dict[str, Any] = {"dense": DenseSpace}
SPACES.update({"conv-vae": ConvSpace, "conv-ae": ConvSpace})


def _dense(preset: str, train: Any, code_size: int, **options: Any) -> Space:
    return dense_preset(preset, train.n_features, code_size, **options)


#: ``--model`` name -> factory(preset, train Dataset, code_size, **options) -> Space.
SPACE_FACTORIES: dict[str, Any] = {"dense": _dense}
SPACE_FACTORIES.update({"conv-vae": conv_vae_space, "conv-ae": conv_ae_space})


def make_space(model: str, preset: str, train: Any, code_size: int, **options: Any) -> Space:
    """The space for ``model`` (a ``--model`` name) sized for the training data."""
    if model not in SPACE_FACTORIES:
        raise EvoaeError(f"unknown model {model!r}: choose from {', '.join(SPACE_FACTORIES)}")
    return SPACE_FACTORIES[model](preset, train, code_size, **options)


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
    "SPACE_FACTORIES",
    "DenseSpace",
    "Gene",
    "Genome",
    "Space",
    "dense_preset",
    "make_space",
    "space_from_config",
    "spec_key",
]
