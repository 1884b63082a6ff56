"""Activations by name and Keras-style initialisation."""

from __future__ import annotations

import torch
from torch import nn

#: Optimizer order inside a stack, so that each rule owns one contiguous slice (every
#: name of :data:`evoae.spaces.base.OPTIMIZERS`).
OPT_ORDER = {"adam": 0, "adamw": 1, "sgd": 2}

_ACTIVATIONS: dict[str, type[nn.Module] | None] = {
    "linear": None,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
}


def activation(name: str) -> nn.Module:
    """An activation module; ``softmax`` acts over the feature dimension."""
    if name == "softmax":
        return nn.Softmax(dim=1)
    try:
        cls = _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}") from None
    return nn.Identity() if cls is None else cls()


def glorot_(layer: nn.Module, generator: torch.Generator) -> None:
    """Keras defaults: Glorot-uniform weights, zero biases."""
    nn.init.xavier_uniform_(layer.weight, generator=generator)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
