"""The convolutional families: CNN-VAEs (``conv-vae``) and plain conv autoencoders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evoae.families.registry import Family, Stacker
from evoae.models.conv import ConvAutoencoder
from evoae.models.stack_conv import ConvStack, conv_stack_bytes, plan_conv_stacks
from evoae.plots.latent import latent_plots
from evoae.spaces.conv import ConvSpace, conv_ae_space, conv_vae_space, describe_conv


def _plots(model: Any, splits: Any, plots_dir: str | Path) -> list[Path]:
    return latent_plots(model, splits, plots_dir)


_STACKER = Stacker(build=ConvStack, plan=plan_conv_stacks, bytes=conv_stack_bytes)


def _input_shape(spec: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(v) for v in spec["input_shape"])


CONV_VAE = Family(
    name="conv-vae",
    make_space=conv_vae_space,
    space_from_config=ConvSpace.from_config,
    build=ConvAutoencoder,
    describe=describe_conv,
    input_shape=_input_shape,
    presets=("seed", "extended"),
    stacker=_STACKER,
    plots=(_plots,),
    loss_label="negative ELBO, nats per image",
)
CONV_AE = Family(
    name="conv-ae",
    make_space=conv_ae_space,
    space_from_config=ConvSpace.from_config,
    build=ConvAutoencoder,
    describe=describe_conv,
    input_shape=_input_shape,
    presets=("seed", "extended"),
    stacker=_STACKER,
    plots=(_plots,),
    loss_label="MSE",
)
