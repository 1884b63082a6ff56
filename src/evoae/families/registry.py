"""The model-family registry: everything evoae knows about one family, in one entry.

A family is one folder, ``evoae/families/NAME/``: its search space (how genomes decode
into specs), the module a spec builds, its population stacker (or none), its spec
schema, a one-line describer, the input shape a spec takes, the extra plots a run draws
and, optionally, a linear fallback (dense: PCA) and a weight-inheritance rule. The
search loop, trainers, storage, export, report, estimator and CLI find all of it here by
``spec["family"]`` (or ``--model``) and name no family, so adding a family means
writing its folder and one :func:`register` call.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from evoae.errors import EvoaeError
from evoae.runs.schema import MAX_PARAMS, Checker, Invalid

if TYPE_CHECKING:
    from torch import nn

    from evoae.spaces import Genome, Space


@dataclass(frozen=True)
class Stacker:
    """How a family trains many candidates as one computation.

    ``build(specs, seeds, device)`` makes the stacked module (see
    :func:`evoae.training.population.train_stack` for what it must offer),
    ``plan(specs, epochs, *, max_waste, memory_budget, max_members)`` groups task
    indices into stacks, ``bytes(specs, rows)`` estimates a stack's peak memory, and
    ``padded`` says whether stacks pad members (then padding waste is counted).
    """

    build: Callable[..., nn.Module]
    plan: Callable[..., list[list[int]]]
    bytes: Callable[[Sequence[dict[str, Any]], int], int]
    padded: bool = False


@dataclass(frozen=True)
class Family:
    """One model family (``--model NAME``)."""

    name: str
    #: ``make_space(preset, train_dataset, code_size, **options) -> Space``.
    make_space: Callable[..., Space]
    #: ``space_from_config(cfg) -> Space`` (the inverse of ``Space.config``).
    space_from_config: Callable[[dict[str, Any]], Space]
    #: ``build(spec, seed) -> nn.Module`` following :class:`evoae.models.Autoencoder`;
    #: a family whose specs may say ``"init": "pca"`` also takes ``init=`` (a PCA basis).
    build: Callable[..., nn.Module]
    #: ``describe(spec) -> str``: the one architecture notation (see the README).
    describe: Callable[[dict[str, Any]], str]
    #: ``input_shape(spec) -> tuple`` of one input row (without the batch).
    input_shape: Callable[[dict[str, Any]], tuple[int, ...]]
    #: Preset names of the family's space, the first is the default.
    presets: tuple[str, ...] = ("seed",)
    stacker: Stacker | None = None
    #: ``plot(model, splits, plots_dir) -> list[Path]`` extra plots after a search.
    plots: tuple[Callable[..., Any], ...] = field(default_factory=tuple)
    #: What the family's loss is, with its unit (summaries and plots). ``MSE`` (per value
    #: of the flattened input) makes the run comparable with PCA at the same code size.
    loss_label: str = "MSE"
    #: Its space takes ``pca_init=True``: a PCA-initialised seed genome and, after the
    #: search, the PCA fallback (see :mod:`evoae.families.dense.space`).
    pca_init: bool = False
    #: The spec schema of model files (every field typed and bounded): a
    #: :data:`evoae.runs.schema.Checker`, called as ``check_spec(spec, "")``. Default:
    #: only ``family`` is checked.
    check_spec: Checker | None = None
    #: ``spec_params(spec) -> int``: about how many parameters a checked spec describes
    #: (an upper estimate: model files describing more than ``MAX_PARAMS`` are refused).
    spec_params: Callable[[dict[str, Any]], int] | None = None
    #: ``fallback(space) -> (genome, spec) | None``: the model returned instead of a
    #: searched one that validates worse (dense: the PCA-initialised linear autoencoder).
    fallback: Callable[[Space], tuple[Genome, dict[str, Any]] | None] | None = None
    #: ``inherit(parent_state, child, seed) -> names set``: how an offspring starts from
    #: its parent's trained state (dense: Net2Net widening). Default: copy every tensor
    #: whose name and shape match (:func:`evoae.models.base.copy_matching`). In morph
    #: mode (aging's ``morph`` option) it is also given ``parent_spec=``: the parent's
    #: spec, to tell which morph made the child.
    inherit: Callable[..., list[str]] | None = None
    #: ``is_linear(spec) -> bool``: the spec is an affine map of rank <= its code size
    #: (at best PCA), so the estimator refits it as PCA on every row.
    is_linear: Callable[[dict[str, Any]], bool] | None = None
    #: Space options beyond the shared ones that this family's space takes (``--max-ratio``
    #: is refused for a family without ``max_ratio``).
    space_options: tuple[str, ...] = ()
    #: ``kernel(model, opt, batch_size) -> obj | None``: a hand-written training step for
    #: the model and its ``torch.optim`` optimizer (``obj.epoch(x, perm) -> mean loss``,
    #: as :func:`evoae.training.trainer.epoch_runner`), or None where it does not cover
    #: them (then autograd trains). Dense: :mod:`evoae.families.dense.kernel`.
    kernel: Callable[[nn.Module, Any, int], Any] | None = None


@dataclass(frozen=True)
class Lazy:
    """A callable that stands for ``"package.module:name"`` (``name`` may be dotted, as in
    ``Class.method``) and imports it on its first call.

    Family entries name their spaces, modules and plots this way, so reading the registry
    (``evoae runs list`` describing architectures) imports neither torch nor matplotlib.
    """

    target: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _resolve(self.target)(*args, **kwargs)


@cache
def _resolve(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


#: name -> Family. Filled by :func:`register` (built-ins in :mod:`evoae.families`).
FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


def get_family(name: Any) -> Family:
    if not isinstance(name, str) or name not in FAMILIES:
        raise EvoaeError(f"unknown model family {name!r}: choose from {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family_of(spec: dict[str, Any]) -> Family:
    """The family a decoded spec belongs to."""
    if not isinstance(spec, dict):
        raise EvoaeError(f"a model spec must be a JSON object, got {type(spec).__name__}")
    return get_family(spec.get("family"))


def build_model(spec: dict[str, Any], seed: int = 0, init: Any = None) -> nn.Module:
    """The untrained module a spec describes, its weights drawn from ``seed``.

    ``init`` (a :class:`evoae.models.pca.PCABasis` of the training split) initialises a
    spec that says ``"init": "pca"``; it is ignored otherwise.
    """
    family = family_of(spec)
    if init is not None and spec.get("init") is not None:
        return family.build(spec, seed, init=init)
    return family.build(spec, seed)


def describe(spec: dict[str, Any]) -> str:
    """The spec's architecture in the one notation evoae uses everywhere."""
    try:
        return family_of(spec).describe(spec)
    except (EvoaeError, KeyError, TypeError, ValueError, IndexError):
        return str(spec.get("family", "?")) if isinstance(spec, dict) else "?"


def check_spec(spec: Any, where: str) -> dict[str, Any]:
    """A model spec read back from a file: a known family, every field in its schema and
    no more parameters than evoae builds; else a one-line :class:`EvoaeError`."""
    hint = "restore the file or retrain the model"
    name = spec.get("family") if isinstance(spec, dict) else None
    if not isinstance(name, str) or name not in FAMILIES:
        shown = repr(name)[:40]
        raise EvoaeError(
            f"{where} is damaged (field spec.family: unknown model family {shown}); {hint}"
        )
    family = FAMILIES[name]
    try:
        if family.check_spec is not None:
            family.check_spec(spec, "")
    except Invalid as e:
        raise EvoaeError(f"{where} is damaged (field {e}); {hint}") from None
    params = family.spec_params(spec) if family.spec_params is not None else 0
    if params > MAX_PARAMS:
        raise EvoaeError(
            f"{where} is damaged (field spec: it describes about {params} parameters, more "
            f"than the {MAX_PARAMS} evoae builds); {hint}"
        )
    return spec


def fallback(space: Space) -> tuple[Genome, dict[str, Any]] | None:
    """The family's linear fallback for ``space`` (genome, spec), or None."""
    family = get_family(space.family)
    return family.fallback(space) if family.fallback is not None else None


def inherit_state(
    theirs: dict[str, Any],
    child: nn.Module,
    seed: int = 0,
    parent_spec: dict[str, Any] | None = None,
) -> list[str]:
    """Start ``child`` (a built family module with ``spec``) from a parent's state dict
    by its family's rule; returns the names of the tensors set. ``parent_spec`` (given
    in morph mode) reaches the family's hook as ``parent_spec=``."""
    spec = getattr(child, "spec", None)
    family = family_of(spec) if isinstance(spec, dict) else None
    if family is not None and family.inherit is not None:
        if parent_spec is not None:
            return family.inherit(theirs, child, seed, parent_spec=parent_spec)
        return family.inherit(theirs, child, seed)
    from evoae.models.base import copy_matching

    return copy_matching(theirs, child)


def training_kernel(model: nn.Module, opt: Any, batch_size: int) -> Any:
    """The family's training kernel for ``model`` (a built family module with ``spec``)
    trained by ``opt`` at ``batch_size``, or None (train with autograd)."""
    spec = getattr(model, "spec", None)
    family = FAMILIES.get(spec.get("family")) if isinstance(spec, dict) else None
    if family is None or family.kernel is None:
        return None
    return family.kernel(model, opt, batch_size)


def make_space(model: str, preset: str, train: Any, code_size: int, **options: Any) -> Space:
    """The space of family ``model`` sized for the training data."""
    family = get_family(model)
    if preset not in family.presets:
        raise EvoaeError(
            f"unknown preset {preset!r} for model {model}: choose from {', '.join(family.presets)}"
        )
    return family.make_space(preset, train, code_size, **options)


def space_from_config(cfg: dict[str, Any]) -> Space:
    """Rebuild a space from :meth:`Space.config`."""
    if not isinstance(cfg, dict):
        raise EvoaeError("a space configuration must be a JSON object")
    return get_family(cfg.get("family")).space_from_config(cfg)
