"""The conv families' spec schema: what a ``model.json`` spec may say."""

from __future__ import annotations

from typing import Any

from evoae.families.conv.space import BINARIZE, RECON_LOSSES
from evoae.runs.schema import (
    MAX_WIDTH,
    Invalid,
    anything,
    boolean,
    integer,
    list_of,
    number,
    record,
    string,
    tuple_of,
)
from evoae.spaces import ACTIVATION_NAMES, OPTIMIZERS

_WIDTH = integer(1, MAX_WIDTH)


def _no_init(v: Any, path: str) -> None:
    """Conv models start from random weights only: an ``init`` (PCA) is for dense."""
    raise Invalid(path, f"conv models take no init (only dense ones do), got {v!r:.40}")


_BLOCK = tuple_of(
    integer(1, 4096), integer(1, 31), integer(1, 8), string(32, choices=ACTIVATION_NAMES), boolean()
)
CONV_SPEC = record(
    {
        "family": string(16, choices=("conv-vae", "conv-ae")),
        "input_shape": tuple_of(integer(1, 64), integer(1, 4096), integer(1, 4096)),
        "code_size": _WIDTH,
        "blocks": list_of(_BLOCK, min_len=1, max_len=16),
        "optimizer": string(16, choices=OPTIMIZERS),
        "lr": number(1e-12, 1e6),
        "batch_size": integer(1, 2**20),
    },
    {
        "dense": integer(0, MAX_WIDTH),
        "variational": boolean(),
        "beta": number(0.0, 1e6),
        "recon_loss": string(16, choices=RECON_LOSSES),
        "sigma": number(1e-12, 1e6),
        "free_bits": number(0.0, 1e6),
        "kl_warmup": integer(0, 10**12),
        "collapse_penalty": number(0.0, 1e12),
        "binarize": string(16, choices=BINARIZE),
        "init": _no_init,
    },
    extra=anything(4),
)


def conv_params(spec: dict[str, Any]) -> int:
    """About how many parameters a checked conv spec describes (an upper estimate)."""
    c, h, w = spec["input_shape"]
    total, chans = 0, c
    for filters, kernel, stride, _, _ in spec["blocks"]:
        total += 2 * (kernel * kernel * chans * filters + chans + filters) + 4 * filters
        chans = filters
        h, w = (h - 1) // stride + 1, (w - 1) // stride + 1
    flat = chans * h * w
    dense = spec.get("dense", 0)
    head = dense or flat
    return total + 2 * (flat * dense + dense) + 3 * (head + 1) * spec["code_size"] + flat * head
