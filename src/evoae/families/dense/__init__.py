"""The dense family: symmetric undercomplete dense autoencoders (the published GA's).

The folder holds the whole family: :mod:`.space` (genes, decoding, presets, the PCA
seed), :mod:`.model` (the torch module), :mod:`.stack` (its stacked population form),
:mod:`.schema` (what a model file's spec may say), :mod:`.inherit` (Net2Net
widening for weight inheritance) and :mod:`.kernel` (its hand-written training step).
The entry names its heavy parts (``Lazy``): torch and numpy are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from evoae.families.dense.schema import DENSE_SPEC, dense_params
from evoae.families.dense.space import OPTIONS
from evoae.families.registry import Family, Lazy, Stacker

if TYPE_CHECKING:
    from evoae.spaces import Genome, Space

_SPACE = "evoae.families.dense.space:"
_STACK = "evoae.families.dense.stack:"


def _space(preset: str, train: Any, code_size: int, **options: Any) -> Space:
    from evoae.families.dense.space import dense_preset

    return dense_preset(preset, train.n_features, code_size, **options)


def _fallback(space: Space) -> tuple[Genome, dict[str, Any]] | None:
    """The PCA-initialised linear autoencoder of ``space``."""
    from evoae.families.dense.space import DenseSpace

    if not isinstance(space, DenseSpace):
        return None
    return space.pca_genome(), space.pca_spec()


def _is_linear(spec: dict[str, Any]) -> bool:
    """Every activation linear: an affine map of rank <= the code size."""
    acts = [a for _, a in spec.get("hidden", [])]
    acts += [spec.get("code_activation"), spec.get("output_activation")]
    return all(a == "linear" for a in acts)


DENSE = Family(
    name="dense",
    make_space=_space,
    space_from_config=Lazy(_SPACE + "DenseSpace.from_config"),
    build=Lazy("evoae.families.dense.model:DenseAutoencoder"),
    describe=Lazy(_SPACE + "describe_dense"),
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
    check_spec=DENSE_SPEC,
    spec_params=dense_params,
    fallback=_fallback,
    inherit=Lazy("evoae.families.dense.inherit:inherit_state"),
    is_linear=_is_linear,
    space_options=OPTIONS,
    kernel=Lazy("evoae.families.dense.kernel:dense_kernel"),
)
