"""Model families and their registry (see :mod:`evoae.families.registry`).

A family is one folder: built-ins ``dense`` (:mod:`evoae.families.dense`), ``conv-vae``
and ``conv-ae`` (:mod:`evoae.families.conv`). Model files (:mod:`evoae.families.io`)
are checked and rebuilt through the registry.
"""

from __future__ import annotations

from evoae.families.conv import CONV_AE, CONV_VAE
from evoae.families.dense import DENSE
from evoae.families.registry import (
    FAMILIES,
    Family,
    Stacker,
    build_model,
    check_spec,
    describe,
    fallback,
    family_of,
    get_family,
    inherit_state,
    make_space,
    register,
    space_from_config,
    training_kernel,
)

for _family in (DENSE, CONV_VAE, CONV_AE):
    register(_family)

__all__ = [
    "FAMILIES",
    "Family",
    "Stacker",
    "build_model",
    "check_spec",
    "describe",
    "fallback",
    "family_of",
    "get_family",
    "inherit_state",
    "make_space",
    "register",
    "space_from_config",
    "training_kernel",
]
