"""Torch modules built from decoded specs: one module per family, plus their stacked
(population) forms. Which module a spec builds is the family registry's business
(:mod:`evoae.families`)."""

from __future__ import annotations

from evoae.models.base import Autoencoder, ModelOutput, count_params
from evoae.models.conv import ConvAutoencoder
from evoae.models.dense import DenseAutoencoder

__all__ = ["Autoencoder", "ConvAutoencoder", "DenseAutoencoder", "ModelOutput", "count_params"]
