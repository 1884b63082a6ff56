"""What every model returns, so trainers need not know the family."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ModelOutput:
    """A forward pass: the reconstruction, the loss to minimise and its named terms.

    ``loss`` is a mean over the batch (per image for VAEs, per element for MSE models);
    ``terms`` holds per-batch means of each reported term (e.g. ``mse``, ``recon``, ``kl``).
    """

    recon: torch.Tensor
    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
