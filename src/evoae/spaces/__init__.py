"""Search spaces: genes, genomes and their decoding into specs.

A family's own space lives in its folder (:mod:`evoae.families`); which space a
``--model`` uses is the family registry's business (:func:`evoae.families.make_space`).
"""

from __future__ import annotations

from evoae.spaces.base import (
    ACTIVATION_NAMES,
    OPTIMIZERS,
    Choice,
    Domain,
    Float,
    Gene,
    Genome,
    Int,
    Parts,
    Space,
    check_names,
    spec_key,
)

__all__ = [
    "ACTIVATION_NAMES",
    "OPTIMIZERS",
    "Choice",
    "Domain",
    "Float",
    "Gene",
    "Genome",
    "Int",
    "Parts",
    "Space",
    "check_names",
    "spec_key",
]
