"""The dense family's spec schema: what a ``model.json`` spec may say."""

from __future__ import annotations

from typing import Any

from evoae.runs.schema import (
    MAX_WIDTH,
    Invalid,
    anything,
    integer,
    list_of,
    number,
    record,
    string,
    tuple_of,
)
from evoae.spaces import ACTIVATION_NAMES, OPTIMIZERS
from evoae.spaces.base import PCA_INITS, PCA_RESIDUAL

_ACT = string(32, choices=ACTIVATION_NAMES)
_WIDTH = integer(1, MAX_WIDTH)

#: The shared training fields of every built-in family's spec.
TRAINING_FIELDS = {
    "optimizer": string(16, choices=OPTIMIZERS),
    "lr": number(1e-12, 1e6),
    "batch_size": integer(1, 2**20),
}

_FIELDS = record(
    {
        "family": string(16, choices=("dense",)),
        "input_dim": integer(1, 2**24),
        "code_size": _WIDTH,
        "hidden": list_of(tuple_of(_WIDTH, _ACT), max_len=64),
        "code_activation": _ACT,
        "output_activation": _ACT,
        **TRAINING_FIELDS,
    },
    {"init": string(16, choices=PCA_INITS)},
    extra=anything(4),
)


def check_dense_spec(spec: Any, path: str) -> None:
    """The dense schema: typed fields, then what an ``init`` requires of the rest (a
    PCA-residual spec has hidden layers, a linear code and a linear output)."""
    _FIELDS(spec, path)
    if spec.get("init") == PCA_RESIDUAL:
        sub = f"{path}." if path else ""
        what = f"a {PCA_RESIDUAL} spec"
        for key in ("code_activation", "output_activation"):
            if spec[key] != "linear":
                raise Invalid(f"{sub}{key}", f"{what} is linear here, got {spec[key]!r}")
        if not spec["hidden"]:
            raise Invalid(f"{sub}hidden", f"{what} has at least one hidden layer")


DENSE_SPEC = check_dense_spec


def dense_params(spec: dict[str, Any]) -> int:
    """About how many parameters a checked dense spec describes (both halves)."""
    widths = [spec["input_dim"], *(w for w, _ in spec["hidden"]), spec["code_size"]]
    params = 2 * sum(a * b + a + b for a, b in zip(widths, widths[1:], strict=False))
    if spec.get("init") == PCA_RESIDUAL:  # the linear path beside the branches
        params += 2 * spec["input_dim"] * spec["code_size"] + widths[0] + widths[-1]
    return params
