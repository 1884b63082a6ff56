"""Search spaces: genes, genomes and their decoding into specs.

Which space a ``--model`` uses is the family registry's business
(:func:`evoae.families.make_space`).
"""

from __future__ import annotations

from evoae.spaces.base import Choice, Domain, Float, Gene, Genome, Int, Parts, Space, spec_key
from evoae.spaces.conv import ConvSpace, conv_ae_space, conv_vae_space
from evoae.spaces.dense import ACTIVATIONS, OPTIMIZERS, DenseSpace, dense_preset

__all__ = [
    "ACTIVATIONS",
    "OPTIMIZERS",
    "Choice",
    "ConvSpace",
    "DenseSpace",
    "Domain",
    "Float",
    "Gene",
    "Genome",
    "Int",
    "Parts",
    "Space",
    "conv_ae_space",
    "conv_vae_space",
    "dense_preset",
    "spec_key",
]
