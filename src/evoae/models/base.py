"""What every model returns, so trainers need not know the family."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@dataclass
class ModelOutput:
    """A forward pass: the reconstruction, the loss to minimise and its named terms.

    ``loss`` is a mean over the batch (per image for VAEs, per element for MSE models);
    ``terms`` holds per-batch means of each reported term (e.g. ``mse``, ``recon``, ``kl``).
    """

    recon: torch.Tensor
    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


@runtime_checkable
class Autoencoder(Protocol):
    """What every evoae model offers, whatever its family.

    ``encode`` returns the code, a tensor ``(N, code_size)`` (the posterior mean for a
    VAE); ``decode`` maps codes back to inputs; ``reconstruct`` is
    ``decode(encode(x))`` in the input's shape. Variational models
    (``variational = True``) add ``posterior(x) -> (mean, log_var)`` and
    ``sample(n)``. ``spec`` is the decoded architecture the model was built from.
    """

    spec: dict[str, Any]
    variational: bool

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor: ...

    def __call__(self, x: torch.Tensor) -> ModelOutput: ...


def count_params(model: nn.Module) -> int:
    """Number of trainable values (weights and biases) of ``model``."""
    return sum(p.numel() for p in model.parameters())


def copy_matching(theirs: dict[str, torch.Tensor], child: nn.Module) -> list[str]:
    """Copy tensors of a parent's state dict into the child where name and shape match."""
    copied = []
    with torch.no_grad():
        for name, tensor in child.state_dict().items():
            src = theirs.get(name)
            if src is not None and src.shape == tensor.shape:
                tensor.copy_(src.to(tensor.device, tensor.dtype))
                copied.append(name)
    return copied
