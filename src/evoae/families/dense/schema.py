"""The dense family's spec schema: what a ``model.json`` spec may say."""

from __future__ import annotations

from typing import Any

from evoae.runs.schema import (
    MAX_WIDTH,
    anything,
    integer,
    list_of,
    number,
    record,
    string,
    tuple_of,
)
from evoae.spaces import ACTIVATION_NAMES, OPTIMIZERS

_ACT = string(32, choices=ACTIVATION_NAMES)
_WIDTH = integer(1, MAX_WIDTH)

#: The shared training fields of every built-in family's spec.
TRAINING_FIELDS = {
    "optimizer": string(16, choices=OPTIMIZERS),
    "lr": number(1e-12, 1e6),
    "batch_size": integer(1, 2**20),
}

DENSE_SPEC = record(
    {
        "family": string(16, choices=("dense",)),
        "input_dim": integer(1, 2**24),
        "code_size": _WIDTH,
        "hidden": list_of(tuple_of(_WIDTH, _ACT), max_len=64),
        "code_activation": _ACT,
        "output_activation": _ACT,
        **TRAINING_FIELDS,
    },
    extra=anything(4),
)


def dense_params(spec: dict[str, Any]) -> int:
    """About how many parameters a checked dense spec describes (both halves)."""
    widths = [spec["input_dim"], *(w for w, _ in spec["hidden"]), spec["code_size"]]
    return 2 * sum(a * b + a + b for a, b in zip(widths, widths[1:], strict=False))
