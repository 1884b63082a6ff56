"""Optimizers by name, with the Keras defaults the published GA used."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from evoae.errors import EvoaeError
from evoae.spaces.base import OPTIMIZERS

#: Keras' Adam epsilon (PyTorch's default is 1e-8); kept so the seed preset matches.
ADAM_EPS = 1e-7


def make_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float
) -> torch.optim.Optimizer:
    """Plain SGD (no momentum), Adam or AdamW at learning rate ``lr``."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, eps=ADAM_EPS)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, eps=ADAM_EPS)
    raise EvoaeError(f"unknown optimizer {name!r}: choose from {', '.join(OPTIMIZERS)}")
