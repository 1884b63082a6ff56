"""Optimizers by name, with the Keras defaults the published GA used."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from evoae.errors import EvoaeError
from evoae.spaces.base import OPTIMIZERS

#: Keras' Adam epsilon (PyTorch's default is 1e-8); kept so the seed preset matches.
ADAM_EPS = 1e-7
#: Devices with PyTorch's fused SGD, Adam and AdamW kernels.
FUSED_DEVICES = ("cpu", "cuda")


def make_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float, *, fused: bool | None = None
) -> torch.optim.Optimizer:
    """Plain SGD (no momentum), Adam or AdamW at learning rate ``lr``.

    ``fused`` (default: wherever the parameters' device has the kernels) updates all
    parameters in one kernel per step instead of a Python loop over them: for the small
    models of a search the loop costs more than the matrix products of the step. Both
    give the same updates up to float rounding, and each is deterministic for one seed.
    """
    params = list(params)
    if fused is None:
        fused = bool(params) and all(p.device.type in FUSED_DEVICES for p in params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, fused=fused)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, eps=ADAM_EPS, fused=fused)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, eps=ADAM_EPS, fused=fused)
    raise EvoaeError(f"unknown optimizer {name!r}: choose from {', '.join(OPTIMIZERS)}")
