"""Weight inheritance (Lamarckian): an offspring starts from its parent's trained weights.

:func:`inherit_weights` copies every tensor of the parent whose name and shape the child
shares (a layer whose width and inputs are unchanged), leaving the child's own
initialisation elsewhere. Where only activations or the optimizer changed, every layer
is inherited and the child computes exactly what its parent did before training.
Net2Net-style widening of grown layers is not implemented yet, and the search loop does
not call this yet (see ``docs/search_quality.md``).
"""

from __future__ import annotations

import torch
from torch import nn


def inherit_weights(parent: nn.Module, child: nn.Module) -> list[str]:
    """Copy the parent's tensors into the child where name and shape match; returns them."""
    return inherit_state(parent.state_dict(), child)


def inherit_state(theirs: dict[str, torch.Tensor], child: nn.Module) -> list[str]:
    """Copy tensors of a parent's state dict into the child where name and shape match."""
    copied = []
    with torch.no_grad():
        for name, tensor in child.state_dict().items():
            src = theirs.get(name)
            if src is not None and src.shape == tensor.shape:
                tensor.copy_(src.to(tensor.device, tensor.dtype))
                copied.append(name)
    return copied
