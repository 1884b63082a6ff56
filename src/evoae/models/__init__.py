"""What every family's torch modules share: the autoencoder interface, layers, PCA.

A family's own modules live in its folder (:mod:`evoae.families`)."""

from __future__ import annotations

from evoae.models.base import Autoencoder, ModelOutput, count_params

__all__ = ["Autoencoder", "ModelOutput", "count_params"]
