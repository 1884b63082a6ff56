"""Network morphisms of the dense family: a morphed child starts where its parent ended.

Each parent is trained briefly (so its branches are not zero), morphed with many random
draws, and every child is checked: its genome lies in the space and decodes to the spec
the morph describes, and the child built from that spec and started from the parent's
state (through the inheritance hook, as the search does) reconstructs random inputs in
[0, 1] as the parent does (widen, deepen, grow, training genes), or as the parent's
linear path does (activation change), to 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from evoae.families import build_model, inherit_state
from evoae.families.dense.morph import _encode, morph_genome, morph_state
from evoae.families.dense.space import ACTIVATIONS, DenseSpace
from evoae.training import train_candidate

D, K = 48, 4
X = torch.rand(96, D, generator=torch.Generator().manual_seed(0))
PROBE = torch.rand(200, D, generator=torch.Generator().manual_seed(1))
TOL = 1e-5
DRAWS = 40


def _space(residual: bool, **kw) -> DenseSpace:
    kw = {"max_depth": 4, "activations": ACTIVATIONS, "lr_gene": True, "batch_gene": True, **kw}
    return DenseSpace(D, K, pca_init=True, residual=residual, **kw)


def _genome(space: DenseSpace, layers, code="linear", out="linear", opt="adam") -> tuple:
    """The genome whose kept hidden layers are ``layers`` ((width, activation) pairs)."""
    hidden = _encode(space, [(0.0, "linear")] * space.max_depth, [(w, a, None) for w, a in layers])
    assert hidden is not None
    g = (*hidden, code, out, opt, 0.001, 32)
    assert space.decode(g)["hidden"] == [[w, a] for w, a in layers]
    return space.check_genes(g)


def _trained(spec: dict) -> torch.nn.Module:
    _, model = train_candidate(spec, X, X, epochs=3, seed=1)
    return model.eval()


def _recon(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(PROBE).recon


def _linear_path(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        z = F.linear(PROBE, model.lin_encoder_weight, model.lin_encoder_bias)
        return F.linear(z, model.lin_decoder_weight, model.lin_decoder_bias)


def _children(space: DenseSpace, genome: tuple) -> dict[str, list[tuple]]:
    """Distinct morphed children of ``genome`` by kind, from ``DRAWS`` seeds."""
    kids: dict[str, list[tuple]] = {}
    for seed in range(DRAWS):
        done = morph_genome(space, genome, np.random.default_rng(seed))
        assert done is not None
        kind, child = done
        assert space.check_genes(child) == child
        if child not in kids.setdefault(kind, []):
            kids[kind].append(child)
    return kids


def _expected(kind: str, parent: list, child: list) -> bool:
    """Whether ``child``'s hidden layers are ``parent``'s changed by ``kind``."""
    if kind == "training":
        return child == parent
    if kind == "widen":
        diff = [i for i, (p, c) in enumerate(zip(parent, child, strict=True)) if p != c]
        return (
            len(diff) == 1
            and child[diff[0]][1] == parent[diff[0]][1]
            and (child[diff[0]][0] > parent[diff[0]][0])
        )
    if kind == "activation":
        diff = [i for i, (p, c) in enumerate(zip(parent, child, strict=True)) if p != c]
        return len(diff) == 1 and child[diff[0]][0] == parent[diff[0]][0]
    if not parent:  # deepen from no hidden layer: a grown branch, or an identity layer
        return len(child) == 1
    return len(child) == len(parent) + 1 and any(
        child[j] == [child[j - 1][0] if j else D, "linear"] and child[:j] + child[j + 1 :] == parent
        for j in range(len(child))
    )


PARENTS = [
    (True, [(32, "relu"), (16, "tanh")], "linear", "linear"),
    (True, [(40, "softmax"), (20, "sigmoid"), (10, "relu")], "linear", "linear"),
    (True, [(24, "sigmoid")], "linear", "linear"),
    (True, [(30, "tanh"), (30, "linear"), (12, "softmax")], "linear", "linear"),
    (True, [], "linear", "linear"),  # the PCA seed: grows a zero-started branch
    (False, [(32, "tanh"), (12, "softmax")], "linear", "sigmoid"),
    (False, [(36, "relu"), (18, "sigmoid"), (9, "tanh")], "sigmoid", "sigmoid"),
    (False, [(20, "softmax")], "tanh", "linear"),
    (False, [], "linear", "linear"),  # the PCA seed: an identity layer of input width
]


@pytest.mark.parametrize("residual, layers, code, out", PARENTS)
def test_every_morph_starts_where_its_parent_ended(residual, layers, code, out):
    space = _space(residual)
    genome = _genome(space, layers, code, out)
    parent_spec = space.decode(genome)
    parent = _trained(parent_spec)
    before = _recon(parent)
    kids = _children(space, genome)
    assert "deepen" in kids and "training" in kids
    assert ("widen" in kids) == bool(layers)
    assert ("activation" in kids) == (residual and bool(layers))
    for kind, children in kids.items():
        for i, genome_c in enumerate(children):
            spec = space.decode(genome_c)
            assert _expected(kind, parent_spec["hidden"], spec["hidden"]), (kind, spec)
            child = build_model(spec, seed=7).eval()
            inherit_state(parent.state_dict(), child, seed=i, parent_spec=parent_spec)
            got = _recon(child)
            want = _linear_path(parent) if kind == "activation" else before
            gap = float((got - want).abs().max())
            assert gap < TOL, f"{kind} {spec['hidden']}: max abs difference {gap:.2e}"
            if kind == "activation":  # the linear path, not the parent's whole output
                assert float((got - before).abs().max()) > 1e-4


def test_deepen_mirrors_the_inserted_layer_in_the_decoder():
    """The mirror worked out by hand: inserting (w_i, linear) after encoder layer i gives
    the decoder (w_{i+1} -> w_i, linear) then (w_i -> w_i identity, a_i)."""
    space = _space(False)
    parent_spec = space.decode(_genome(space, [(32, "tanh"), (12, "softmax")], "linear", "sigmoid"))
    parent = _trained(parent_spec)
    child_spec = {**parent_spec, "hidden": [[32, "tanh"], [32, "linear"], [12, "softmax"]]}
    child = build_model(child_spec, seed=3).eval()
    assert morph_state(parent.state_dict(), parent_spec, child) is not None
    dec = child.decoder  # Linear(4,12) softmax Linear(12,32) Identity Linear(32,32) tanh ...
    assert torch.equal(dec[2].weight, parent.decoder[2].weight)
    assert isinstance(dec[3], torch.nn.Identity) and isinstance(dec[5], torch.nn.Tanh)
    assert torch.equal(dec[4].weight, torch.eye(32)) and not dec[4].bias.any()
    assert torch.equal(child.encoder[2].weight, torch.eye(32))
    assert float((_recon(child) - _recon(parent)).abs().max()) < TOL


def test_widening_with_uneven_shares_breaks_the_symmetry_of_copies():
    """Morph-mode widening is exact, and a copied unit's copies differ in their outgoing
    weights (even Net2Net copies would train identically forever)."""
    space = _space(True)
    parent_spec = space.decode(_genome(space, [(16, "relu"), (8, "tanh")]))
    parent = _trained(parent_spec)
    child_spec = {**parent_spec, "hidden": [[24, "relu"], [8, "tanh"]]}
    child = build_model(child_spec, seed=3).eval()
    inherit_state(parent.state_dict(), child, seed=5, parent_spec=parent_spec)
    assert float((_recon(child) - _recon(parent)).abs().max()) < TOL
    w_in, w_out = child.encoder[0].weight, child.encoder[2].weight
    copies = [(i, j) for i in range(16) for j in range(16, 24) if torch.equal(w_in[i], w_in[j])]
    assert copies and all(not torch.equal(w_out[:, i], w_out[:, j]) for i, j in copies)
    # Without the parent's spec, inheritance is the even Net2Net split it always was.
    even = build_model(child_spec, seed=3).eval()
    inherit_state(parent.state_dict(), even, seed=5)
    i, j = copies[0]
    assert torch.equal(even.encoder[2].weight[:, i], even.encoder[2].weight[:, j])


def test_no_morph_applies_and_unknown_pairs_fall_back():
    # One optimizer, no learning-rate or batch gene, no hidden slot, no linear activation.
    space = DenseSpace(D, K, max_depth=0, optimizers=("adam",), activations=("relu",))
    genome = ("relu", "relu", "adam")
    assert morph_genome(space, genome, np.random.default_rng(0)) is None
    assert space.morph(genome, np.random.default_rng(0)) is None
    # A child the morphs do not explain (two layers changed) is left to inheritance.
    parent_spec = _space(True).decode(_genome(_space(True), [(16, "relu"), (8, "tanh")]))
    other = {**parent_spec, "hidden": [[20, "relu"], [8, "sigmoid"], [6, "relu"]]}
    child = build_model(other, seed=1)
    before = {k: v.clone() for k, v in child.state_dict().items()}
    assert morph_state(_trained(parent_spec).state_dict(), parent_spec, child) is None
    assert all(torch.equal(v, before[k]) for k, v in child.state_dict().items())
