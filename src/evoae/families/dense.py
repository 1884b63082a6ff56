"""The dense family: symmetric undercomplete dense autoencoders (the published GA's)."""

from __future__ import annotations

from typing import Any

from evoae.families.registry import Family, Stacker
from evoae.models.dense import DenseAutoencoder
from evoae.models.stack_dense import DenseStack, plan_stacks, stack_bytes
from evoae.spaces import Space
from evoae.spaces.dense import DenseSpace, dense_preset, describe_dense


def _space(preset: str, train: Any, code_size: int, **options: Any) -> Space:
    return dense_preset(preset, train.n_features, code_size, **options)


DENSE = Family(
    name="dense",
    make_space=_space,
    space_from_config=DenseSpace.from_config,
    build=DenseAutoencoder,
    describe=describe_dense,
    input_shape=lambda spec: (int(spec["input_dim"]),),
    presets=("seed", "extended"),
    stacker=Stacker(build=DenseStack, plan=plan_stacks, bytes=stack_bytes, padded=True),
    loss_label="MSE",
    pca_init=True,
)
