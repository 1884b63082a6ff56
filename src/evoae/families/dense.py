"""The dense family: symmetric undercomplete dense autoencoders (the published GA's)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from evoae.families.registry import Family, Lazy, Stacker

if TYPE_CHECKING:
    from evoae.spaces import Space

_STACK = "evoae.models.stack_dense:"  # torch and numpy are imported on first use


def _space(preset: str, train: Any, code_size: int, **options: Any) -> Space:
    from evoae.spaces.dense import dense_preset

    return dense_preset(preset, train.n_features, code_size, **options)


DENSE = Family(
    name="dense",
    make_space=_space,
    space_from_config=Lazy("evoae.spaces.dense:DenseSpace.from_config"),
    build=Lazy("evoae.models.dense:DenseAutoencoder"),
    describe=Lazy("evoae.spaces.dense:describe_dense"),
    input_shape=lambda spec: (int(spec["input_dim"]),),
    presets=("seed", "extended"),
    stacker=Stacker(
        build=Lazy(_STACK + "DenseStack"),
        plan=Lazy(_STACK + "plan_stacks"),
        bytes=Lazy(_STACK + "stack_bytes"),
        padded=True,
    ),
    loss_label="MSE",
    pca_init=True,
)
