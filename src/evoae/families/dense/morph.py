"""Network morphisms of the dense family: offspring that start computing what a parent did.

Lamarckian search by network morphism (NASH, Elsken et al. 2017; EAS, Cai et al. 2018):
an offspring is its parent changed by one step that keeps the parent's trained function,
so it continues from the parent's weights instead of starting over. Aging evolution's
``morph`` option (:mod:`evoae.evolution.aging`) draws one of these per offspring through
:meth:`evoae.families.dense.space.DenseSpace.morph` (:func:`morph_genome`), and the
inheritance hook (:func:`evoae.families.dense.inherit.inherit_state`, given the parent's
spec) moves the weights (:func:`morph_state`):

``widen``
    A kept hidden layer grows (its ratio rises); the next kept layer's ratio is set so
    that its width stays (ratios are relative to the previous kept layer). Weights:
    Net2Net (:func:`~evoae.families.dense.inherit.widen_dense`), each copied unit's
    outgoing weights split in random shares rather than equally: exact all the same,
    and copies that differ in their outgoing weights receive different gradients (equal
    copies would stay equal forever).
``deepen``
    A removed hidden slot becomes a ``linear`` layer as wide as the kept layer before it
    (the input at first), its ratio chosen inside the gene's domain to give that width
    exactly; later kept layers keep their widths, and the removed slots move to the end
    of the hidden genes. Weights: the new encoder layer is the identity (zero bias); in
    the mirrored decoder the layer that fed the parent's layer ``i`` keeps its weights
    but is now followed by the new layer's ``linear`` activation, and an identity layer
    followed by layer ``i``'s activation comes after it, so every mirrored layer computes
    what it did. Every other layer moves to its shifted index. In a PCA-residual space a
    parent without hidden layers (the PCA seed) instead *grows* one hidden layer of random
    width and activation: its branches start at zero (below), so the child is the parent.
``activation``
    (PCA-residual spaces only.) A kept hidden layer's activation changes, in the encoder
    and its decoder mirror. No exact change exists in a trained net, so the child keeps
    the parent's trained linear path (``lin_*``) and every hidden weight, with the new
    activation, and the last layer of each branch (``encoder[-1]``, ``decoder[-1]``)
    starts at zero again: the child starts at the parent's *linear path* output (what the
    parent computes without its branches: PCA or better, as trained), not at the
    parent's output, and retrains its branches from there.
``training``
    The optimizer, learning-rate (a factor between 1/4 and 4) or batch-size gene
    changes; every weight is kept (the optimizer state starts afresh, as with any
    inheritance).

All but ``activation`` are exact (float rounding; the tests check 1e-5). Where no morph
applies (a non-residual space gets no ``activation``; a space without ``linear`` no
identity ``deepen``) the caller falls back to its ordinary mutation, and a pair of specs
:func:`morph_state` does not recognise gets the ordinary inheritance.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from evoae.families.dense.model import DenseAutoencoder
from evoae.families.dense.space import DenseSpace, is_pca_shape
from evoae.models.base import copy_matching
from evoae.spaces.base import PCA_RESIDUAL, Genome

if TYPE_CHECKING:
    import numpy as np

#: Morph kinds, in the order their candidates are listed (the draw is uniform over the
#: kinds that apply, then over that kind's candidates).
KINDS = ("widen", "deepen", "activation", "training")
#: Tries to draw a different learning rate before giving the gene up.
_TRIES = 20

Layer = tuple[int, str]


# -- genomes -----------------------------------------------------------------------------


def _width(space: DenseSpace, ratio: float, prev: int) -> int:
    """The decoding rule of :meth:`DenseSpace.decode` for one hidden gene."""
    return min(math.floor(float(ratio) * prev + 0.5), math.ceil(space.max_ratio * space.input_dim))


def _kept(space: DenseSpace, hidden: list[tuple[float, str]]) -> list[tuple[int, int, str]]:
    """``(slot, width, activation)`` of every kept hidden gene, in order."""
    kept, prev = [], space.input_dim
    for slot, (ratio, act) in enumerate(hidden):
        w = _width(space, ratio, prev)
        if w >= space.code_size:
            kept.append((slot, w, act))
            prev = w
    return kept


def _ratio(space: DenseSpace, width: int, prev: int, old: float | None = None) -> float | None:
    """A ratio in ``[0, max_ratio)`` that decodes to ``width`` after ``prev`` (``old``
    when it still does), or None."""
    tries = [] if old is None else [float(old)]
    tries += [width / prev, (width - 0.25) / prev, (width + 0.25) / prev]
    for r in tries:
        if 0.0 <= r < space.max_ratio and _width(space, r, prev) == width:
            return r
    return None


def _widest(space: DenseSpace, prev: int) -> int:
    """The widest layer a ratio in ``[0, max_ratio)`` gives after ``prev``."""
    cap = math.ceil(space.max_ratio * space.input_dim)
    return min(cap, math.ceil(space.max_ratio * prev + 0.25) - 1)


def _encode(
    space: DenseSpace,
    hidden: list[tuple[float, str]],
    layers: list[tuple[int, str, int | None]],
) -> list[tuple[float, str]] | None:
    """Hidden genes decoding to ``layers`` (width, activation, slot whose gene it came
    from or None), the unused slots after them, each still removed; None if impossible."""
    genes: list[tuple[float, str]] = []
    prev = space.input_dim
    for w, act, slot in layers:
        r = _ratio(space, w, prev, None if slot is None else hidden[slot][0])
        if r is None:
            return None
        genes.append((r, act))
        prev = w
    if len(layers) > space.max_depth:
        return None
    used = {slot for _, _, slot in layers}
    unused = [slot for slot in range(len(hidden)) if slot not in used]
    # A new layer takes the place of a removed slot: the first ones are given up.
    for slot in unused[len(unused) - (space.max_depth - len(layers)) :]:
        ratio, act = hidden[slot]  # still removed after the last kept layer
        genes.append((ratio if _width(space, ratio, prev) < space.code_size else 0.0, act))
    return genes if len(genes) == space.max_depth else None


def _options(space: DenseSpace, spec: dict[str, Any], kept: list) -> dict[str, list[Any]]:
    """Each morph kind's candidates for a parent with these kept layers."""
    d, acts = space.input_dim, space.activations
    widths = [d] + [w for _, w, _ in kept]
    opts: dict[str, list[Any]] = {k: [] for k in KINDS}
    opts["widen"] = [i for i in range(len(kept)) if _widest(space, widths[i]) > widths[i + 1]]
    if len(kept) < space.max_depth:
        if not kept and space.residual and is_pca_shape(spec):
            opts["deepen"] = ["grow"]  # a zero-started branch beside the linear path
        elif "linear" in acts and (kept or not space.residual):
            opts["deepen"] = list(range(len(kept) + 1))  # insert before kept[j]
    if space.residual and kept:
        opts["activation"] = [(i, a) for i in range(len(kept)) for a in acts if a != kept[i][2]]
    if len(space.optimizers) > 1:
        opts["training"].append("optimizer")
    if space.lr_gene and space.lr_range[0] < space.lr_range[1]:
        opts["training"].append("learning_rate")
    if space.batch_gene and len(space.batch_choices) > 1:
        opts["training"].append("batch_size")
    return opts


def _pick(rng: np.random.Generator, items: list[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


def morph_genome(
    space: DenseSpace, genome: Genome, rng: np.random.Generator
) -> tuple[str, Genome] | None:
    """``(kind, child)``: ``genome`` changed by one morph drawn with ``rng``, or None when
    no morph applies. The child lies in the space (:meth:`Space.check_genes`) and decodes
    to the spec the morph describes (checked here: a child that would not is None)."""
    genome = space.validate(genome)
    named = space.named(genome)
    spec = space.decode(genome)
    hidden = [tuple(named[f"hidden_{i + 1}"]) for i in range(space.max_depth)]
    kept = _kept(space, hidden)  # type: ignore[arg-type]
    opts = _options(space, spec, kept)
    kinds = [k for k in KINDS if opts[k]]
    if not kinds:
        return None
    kind = _pick(rng, kinds)
    choice = _pick(rng, opts[kind])
    layers = [(w, a, slot) for slot, w, a in kept]
    widths = [space.input_dim] + [w for _, w, _ in kept]
    child = dict(named)
    if kind == "widen":
        w = widths[choice + 1]
        top = min(_widest(space, widths[choice]), max(w + 1, 2 * w))
        layers[choice] = (int(rng.integers(w + 1, top + 1)), layers[choice][1], layers[choice][2])
    elif kind == "deepen" and choice == "grow":
        width = int(rng.integers(space.code_size, _widest(space, space.input_dim) + 1))
        layers = [(width, _pick(rng, list(space.activations)), None)]
    elif kind == "deepen":
        layers.insert(choice, (widths[choice], "linear", None))
    elif kind == "activation":
        i, act = choice
        layers[i] = (layers[i][0], act, layers[i][2])
    else:
        child[choice] = _training_gene(space, choice, named[choice], rng)
        if child[choice] is None:
            return None
    genes = _encode(space, hidden, layers)  # type: ignore[arg-type]
    if genes is None:
        return None
    for i, g in enumerate(genes):
        child[f"hidden_{i + 1}"] = g
    out = tuple(child[g.name] for g in space.genes)
    try:
        space.check_genes(out)
    except ValueError:
        return None
    if space.decode(out)["hidden"] != [[w, a] for w, a, _ in layers]:
        return None
    return kind, out


def _training_gene(space: DenseSpace, name: str, value: Any, rng: np.random.Generator) -> Any:
    """Another value of a training gene (None when none could be drawn)."""
    if name == "optimizer":
        return _pick(rng, [o for o in space.optimizers if o != value])
    if name == "batch_size":
        return _pick(rng, [b for b in space.batch_choices if b != value])
    lo, hi = space.lr_range
    for _ in range(_TRIES):
        lr = min(max(float(value) * math.exp(rng.uniform(-math.log(4), math.log(4))), lo), hi)
        if lr != value:
            return lr
    return None


# -- weights -----------------------------------------------------------------------------


def _hidden(spec: dict[str, Any]) -> list[Layer]:
    return [(int(w), str(a)) for w, a in spec["hidden"]]


def _inserted(parent: list[Layer], child: list[Layer], input_dim: int) -> int | None:
    """The position of a ``linear`` child layer as wide as the one before it whose
    removal leaves ``parent``; any such position gives the same transfer."""
    for j, (w, act) in enumerate(child):
        before = child[j - 1][0] if j else input_dim
        if act == "linear" and w == before and child[:j] + child[j + 1 :] == parent:
            return j
    return None


def morph_state(
    theirs: dict[str, torch.Tensor], parent: dict[str, Any], child: DenseAutoencoder
) -> list[str] | None:
    """Start ``child`` from the state dict of a model built from ``parent`` (a spec) when
    ``child.spec`` is ``parent`` deepened, grown or with an activation changed (see the
    module docstring); returns the tensors set, or None (``child`` untouched) for the
    caller's Net2Net widening or plain copy. ``theirs`` is checked against the shapes the
    mapping needs; a mismatch gives None."""
    spec = child.spec
    same_io = all(parent.get(k) == spec.get(k) for k in ("family", "input_dim", "code_size"))
    ends = ("code_activation", "output_activation")
    if (
        not same_io
        or not isinstance(parent.get("hidden"), list)
        or any(k not in parent for k in ends)
    ):
        return None
    try:
        ph, ch = _hidden(parent), _hidden(spec)
    except (TypeError, ValueError):
        return None
    parent_residual = parent.get("init") == PCA_RESIDUAL
    if child.residual and not ph and is_pca_shape(parent):
        return _zero_branch(theirs, child, from_linear=True)
    if parent_residual != child.residual or any(parent.get(k) != spec[k] for k in ends):
        return None
    if len(ch) == len(ph) + 1:
        j = _inserted(ph, ch, int(spec["input_dim"]))
        return None if j is None else _deepen(theirs, child, j)
    same_widths = [w for w, _ in ph] == [w for w, _ in ch]
    if child.residual and same_widths and ph != ch:
        return _zero_branch(theirs, child, from_linear=False)
    return None


def _deepen(theirs: dict[str, torch.Tensor], child: DenseAutoencoder, j: int) -> list[str] | None:
    """Child hidden layer ``j`` (0-based) is the inserted identity; see the module docstring."""
    hc = len(child.spec["hidden"])
    hp = hc - 1
    # Encoder linear t (t = hc: the code layer) <- parent linear t, t - 1, or identity.
    plan = [(f"encoder.{2 * t}", None if t == j else t if t < j else t - 1) for t in range(hc + 1)]
    plan = [(name, None if s is None else f"encoder.{2 * s}") for name, s in plan]
    # Decoder: the linear producing hidden width m (1-based; 0 = the output) is decoder
    # linear hc - m; the inserted layer is m = j + 1. The layer that fed the parent's
    # layer j now feeds the inserted one; an identity then restores layer j's activation.
    for m in range(hc, -1, -1):
        if m > j + 1:
            src: int | None = m - 1
        elif m == j + 1:
            src = j
        elif m == j:
            src = None
        else:
            src = m
        plan.append(
            (f"decoder.{2 * (hc - m)}", None if src is None else f"decoder.{2 * (hp - src)}")
        )
    branch = {k for k in theirs if k.startswith(("encoder.", "decoder."))}
    wanted = {f"{s}.{t}" for _, s in plan if s is not None for t in ("weight", "bias")}
    if branch != wanted:
        return None
    mine = child.state_dict()
    for name, src in plan:
        w, b = mine[f"{name}.weight"], mine[f"{name}.bias"]
        if src is None:
            if w.shape[0] != w.shape[1]:
                return None
        elif theirs[f"{src}.weight"].shape != w.shape or theirs[f"{src}.bias"].shape != b.shape:
            return None
    set_ = []
    with torch.no_grad():
        for name, src in plan:
            w, b = mine[f"{name}.weight"], mine[f"{name}.bias"]
            if src is None:
                w.copy_(torch.eye(w.shape[0], dtype=w.dtype))
                b.zero_()
            else:
                w.copy_(theirs[f"{src}.weight"].to(w.dtype))
                b.copy_(theirs[f"{src}.bias"].to(b.dtype))
            set_ += [f"{name}.weight", f"{name}.bias"]
    rest = {k: v for k, v in theirs.items() if k not in branch}
    return set_ + copy_matching(rest, child)


#: A PCA-shaped parent's layers -> the child's linear path.
_LINEAR_PATH = {
    "encoder.0.weight": "lin_encoder_weight",
    "encoder.0.bias": "lin_encoder_bias",
    "decoder.0.weight": "lin_decoder_weight",
    "decoder.0.bias": "lin_decoder_bias",
}


def _zero_branch(
    theirs: dict[str, torch.Tensor], child: DenseAutoencoder, *, from_linear: bool
) -> list[str] | None:
    """The child's linear path from the parent's (``from_linear``: the parent's only
    layers), every other tensor the parent shares by name and shape, the branches' last
    layers zero: the child computes the parent's linear path."""
    mine = child.state_dict()
    if from_linear:
        if set(theirs) != set(_LINEAR_PATH):
            return None
        moved = {_LINEAR_PATH[k]: v for k, v in theirs.items()}
        if any(moved[k].shape != mine[k].shape for k in moved):
            return None
        names = copy_matching(moved, child)
    else:
        if set(theirs) != set(mine) or any(theirs[k].shape != mine[k].shape for k in mine):
            return None
        names = copy_matching(theirs, child)
    with torch.no_grad():
        for last in (child.encoder[-1], child.decoder[-1]):
            last.weight.zero_()
            last.bias.zero_()
    return names
