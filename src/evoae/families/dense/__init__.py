"""The dense family: symmetric undercomplete dense autoencoders (the published GA's).

The folder holds the whole family: :mod:`.space` (genes, decoding, presets, the PCA
seed), :mod:`.model` (the torch module), :mod:`.stack` (its stacked population form),
:mod:`.schema` (what a model file's spec may say), :mod:`.inherit` (Net2Net
widening for weight inheritance) and :mod:`.kernel` (its hand-written training step).
"""

from __future__ import annotations

from typing import Any

from evoae.families.dense.inherit import inherit_state
from evoae.families.dense.kernel import dense_kernel
from evoae.families.dense.model import DenseAutoencoder
from evoae.families.dense.schema import DENSE_SPEC, dense_params
from evoae.families.dense.space import OPTIONS, DenseSpace, dense_preset, describe_dense
from evoae.families.dense.stack import DenseStack, plan_stacks, stack_bytes
from evoae.families.registry import Family, Stacker
from evoae.spaces import Genome, Space


def _space(preset: str, train: Any, code_size: int, **options: Any) -> Space:
    return dense_preset(preset, train.n_features, code_size, **options)


def _fallback(space: Space) -> tuple[Genome, dict[str, Any]] | None:
    """The PCA-initialised linear autoencoder of ``space``."""
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
    space_from_config=DenseSpace.from_config,
    build=DenseAutoencoder,
    describe=describe_dense,
    input_shape=lambda spec: (int(spec["input_dim"]),),
    presets=("seed", "extended"),
    stacker=Stacker(build=DenseStack, plan=plan_stacks, bytes=stack_bytes, padded=True),
    loss_label="MSE",
    pca_init=True,
    check_spec=DENSE_SPEC,
    spec_params=dense_params,
    fallback=_fallback,
    inherit=inherit_state,
    is_linear=_is_linear,
    space_options=OPTIONS,
    kernel=dense_kernel,
)
