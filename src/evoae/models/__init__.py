"""Torch modules built from decoded specs, and their storage (JSON + safetensors)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from evoae.errors import EvoaeError
from evoae.models.base import ModelOutput
from evoae.models.conv import ConvAutoencoder
from evoae.models.dense import DenseAutoencoder

#: spec["family"] -> builder(spec, seed). Other families register here.
BUILDERS: dict[str, Callable[[dict[str, Any], int], nn.Module]] = {"dense": DenseAutoencoder}
BUILDERS.update({"conv-vae": ConvAutoencoder, "conv-ae": ConvAutoencoder})


def build_model(spec: dict[str, Any], seed: int = 0) -> nn.Module:
    """The untrained module a spec describes, its weights drawn from ``seed``."""
    family = spec.get("family")
    if family not in BUILDERS:
        raise EvoaeError(f"unknown model family {family!r}: known are {', '.join(BUILDERS)}")
    return BUILDERS[family](spec, seed)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["BUILDERS", "DenseAutoencoder", "ModelOutput", "build_model", "count_params"]
