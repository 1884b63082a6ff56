"""The convolutional families: CNN-VAEs (``conv-vae``) and plain conv autoencoders.

The folder holds both: :mod:`.space` (genes, decoding, presets), :mod:`.model` (the
torch module), :mod:`.stack` (its stacked population form), :mod:`.schema` (what a
model file's spec may say) and :mod:`.plots` (latent walks and maps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evoae.families.conv.model import ConvAutoencoder
from evoae.families.conv.plots import latent_plots
from evoae.families.conv.schema import CONV_SPEC, conv_params
from evoae.families.conv.space import ConvSpace, conv_ae_space, conv_vae_space, describe_conv
from evoae.families.conv.stack import ConvStack, conv_stack_bytes, plan_conv_stacks
from evoae.families.registry import Family, Stacker


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
    check_spec=CONV_SPEC,
    spec_params=conv_params,
    space_options=("free_bits", "kl_warmup", "collapse_penalty", "binarize"),
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
    check_spec=CONV_SPEC,
    spec_params=conv_params,
)
