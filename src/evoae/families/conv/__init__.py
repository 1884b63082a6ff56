"""The convolutional families: CNN-VAEs (``conv-vae``) and plain conv autoencoders.

The folder holds both: :mod:`.space` (genes, decoding, presets), :mod:`.model` (the
torch module), :mod:`.stack` (its stacked population form), :mod:`.schema` (what a
model file's spec may say) and :mod:`.plots` (latent walks and maps). The entries name
their heavy parts (``Lazy``): torch, numpy and matplotlib are imported on first use.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from evoae.families.conv.schema import CONV_SPEC, conv_params
from evoae.families.registry import Family, Lazy, Stacker

_SPACE = "evoae.families.conv.space:"
_STACK = "evoae.families.conv.stack:"


def _plots(model: Any, splits: Any, plots_dir: str | Path) -> list[Path]:
    from evoae.families.conv.plots import latent_plots

    return latent_plots(model, splits, plots_dir)


def _input_shape(spec: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(v) for v in spec["input_shape"])


CONV_VAE = Family(
    name="conv-vae",
    make_space=Lazy(_SPACE + "conv_vae_space"),
    space_from_config=Lazy(_SPACE + "ConvSpace.from_config"),
    build=Lazy("evoae.families.conv.model:ConvAutoencoder"),
    describe=Lazy(_SPACE + "describe_conv"),
    input_shape=_input_shape,
    presets=("seed", "extended"),
    stacker=Stacker(
        build=Lazy(_STACK + "ConvStack"),
        plan=Lazy(_STACK + "plan_conv_stacks"),
        bytes=Lazy(_STACK + "conv_stack_bytes"),
    ),
    plots=(_plots,),
    loss_label="negative ELBO, nats per image",
    check_spec=CONV_SPEC,
    spec_params=conv_params,
    space_options=("free_bits", "kl_warmup", "collapse_penalty", "binarize"),
)
CONV_AE = replace(
    CONV_VAE, name="conv-ae", make_space=Lazy(_SPACE + "conv_ae_space"), loss_label="MSE"
)
