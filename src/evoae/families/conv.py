"""The convolutional families: CNN-VAEs (``conv-vae``) and plain conv autoencoders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evoae.families.registry import Family, Lazy, Stacker

# Named, not imported: torch, numpy and matplotlib are imported on first use.
_SPACE = "evoae.spaces.conv:"
_STACK = "evoae.models.stack_conv:"
_MODEL = Lazy("evoae.models.conv:ConvAutoencoder")


def _plots(model: Any, splits: Any, plots_dir: str | Path) -> list[Path]:
    from evoae.plots.latent import latent_plots

    return latent_plots(model, splits, plots_dir)


_STACKER = Stacker(
    build=Lazy(_STACK + "ConvStack"),
    plan=Lazy(_STACK + "plan_conv_stacks"),
    bytes=Lazy(_STACK + "conv_stack_bytes"),
)


def _input_shape(spec: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(v) for v in spec["input_shape"])


CONV_VAE = Family(
    name="conv-vae",
    make_space=Lazy(_SPACE + "conv_vae_space"),
    space_from_config=Lazy(_SPACE + "ConvSpace.from_config"),
    build=_MODEL,
    describe=Lazy(_SPACE + "describe_conv"),
    input_shape=_input_shape,
    presets=("seed", "extended"),
    stacker=_STACKER,
    plots=(_plots,),
    loss_label="negative ELBO, nats per image",
)
CONV_AE = Family(
    name="conv-ae",
    make_space=Lazy(_SPACE + "conv_ae_space"),
    space_from_config=Lazy(_SPACE + "ConvSpace.from_config"),
    build=_MODEL,
    describe=Lazy(_SPACE + "describe_conv"),
    input_shape=_input_shape,
    presets=("seed", "extended"),
    stacker=_STACKER,
    plots=(_plots,),
    loss_label="MSE",
)
