"""Weight inheritance (Lamarckian): an offspring starts from its parent's trained weights.

:func:`inherit_state` is the dense family's ``inherit`` hook, which a training with a
parent calls (:func:`evoae.families.inherit_state`). It widens the parent Net2Net-style
(Chen et al., ICLR 2016) where the child's hidden layers grew; for a dense child of
another depth it copies every tensor whose name and shape the child shares and keeps the
child's own initialisation elsewhere (:func:`evoae.models.base.copy_matching`, what
families without a hook, such as conv, get).

Net2Net widening of the dense symmetric autoencoder: each hidden layer of the encoder
and each mirrored hidden layer of the decoder is its own set of units. Where the child's
layer is at least as wide as the parent's, child unit ``j < p`` is parent unit ``j`` and
each extra unit copies a parent unit drawn at random (from ``seed``): its incoming
weights and bias are the copied unit's, and the outgoing weights of a unit copied ``c``
times (itself included) are divided by ``c``, so the next layer sums to what it summed in
the parent. A softmax layer is not element-wise (a copy changes the normaliser): there
each copy's bias is lowered by ``log c`` instead, which makes every copy output ``1/c`` of
the parent unit's probability and leaves the normaliser unchanged; the outgoing weights
are then copied undivided. The input, code and output widths never change.

What is function-preserving: a dense child whose depth and activations equal the
parent's and whose hidden layers are each at least as wide computes the parent's
function (to float rounding; bit for bit where no layer grew). The dense model has no
batch normalisation or dropout, so nothing else needs care. A narrowed layer keeps the
child's own weights on both of its sides (the child then computes something else), and
so does every layer of a child of another depth except those whose name and shape match.
Conv children only get the same-shape copy: widening a conv block would also have to
split batch-norm statistics, which is not done.

Given the parent's spec (aging evolution's ``morph`` mode), the transfer knows what
changed: a child with an inserted identity-compatible layer, a grown branch or a changed
activation is started by :func:`evoae.families.dense.morph.morph_state`, and widening
splits each copied unit unevenly (``widen_dense(..., uneven=True)``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from evoae.families.dense.model import DenseAutoencoder
from evoae.families.dense.morph import morph_state
from evoae.models.base import copy_matching


def inherit_state(
    theirs: dict[str, torch.Tensor],
    child: nn.Module,
    seed: int = 0,
    parent_spec: dict[str, Any] | None = None,
) -> list[str]:
    """Start ``child`` from a parent's state dict: Net2Net widening for a dense child of
    the parent's depth, else the same-name same-shape copy. ``seed`` draws the replicas.

    ``parent_spec`` (the parent's spec; aging evolution's ``morph`` mode passes it) makes
    the transfer morph-aware (:mod:`evoae.families.dense.morph`): an inserted identity
    layer, a grown or re-activated zero-started branch, and widening with uneven shares.
    Without it inheritance is exactly what it was before morphs existed."""
    if isinstance(child, DenseAutoencoder):
        if parent_spec is not None:
            done = morph_state(theirs, parent_spec, child)
            if done is not None:
                return done
        # A PCA-residual model's linear path (``lin_*``) is copied; its branches widen.
        branches = {k: v for k, v in theirs.items() if k.startswith(("encoder.", "decoder."))}
        widened = widen_dense(branches, child, seed, uneven=parent_spec is not None)
        if widened is not None:
            rest = {k: v for k, v in theirs.items() if k not in branches}
            return widened + copy_matching(rest, child)
    return copy_matching(theirs, child)


def _linears(seq: nn.Sequential, prefix: str) -> list[tuple[str, nn.Linear]]:
    return [(f"{prefix}.{i}", m) for i, m in enumerate(seq) if isinstance(m, nn.Linear)]


def widen_dense(
    theirs: dict[str, torch.Tensor],
    child: DenseAutoencoder,
    seed: int = 0,
    *,
    uneven: bool = False,
) -> list[str] | None:
    """Net2Net-widen a parent's dense state dict into ``child``; returns the tensors set,
    or None when the parent's layers do not line up with the child's (another depth,
    input or code width), for the caller to fall back to :func:`copy_matching`.

    ``uneven``: the ``c`` copies of a unit take random shares (summing to one, drawn from
    ``seed`` after the replicas) of its outgoing weights (of its probability after a
    softmax: bias raised by ``log share``) instead of ``1 / c`` each. Still exact, and the
    copies then get different gradients: equal copies would train identically forever."""
    enc = _linears(child.encoder, "encoder")
    dec = _linears(child.decoder, "decoder")
    layers = enc + dec
    shapes = []
    for name, _ in layers:
        w, b = theirs.get(f"{name}.weight"), theirs.get(f"{name}.bias")
        if w is None or b is None or w.dim() != 2 or b.shape != (w.shape[0],):
            return None
        shapes.append(tuple(w.shape))
    if len(theirs) != 2 * len(layers):  # the parent has more layers than the child
        return None
    h = len(enc) - 1  # hidden layers
    # Unit sets: encoder 0..h+1 (input, hidden.., code), decoder h+1..2h+2 (code, hidden.., out).
    parent_w = [shapes[0][1]] + [s[0] for s in shapes]
    child_w = [enc[0][1].in_features] + [lin.out_features for _, lin in layers]
    chained = all(shapes[i][1] == parent_w[i] for i in range(len(layers)))
    ends = (0, h + 1, 2 * h + 2)  # input, code, output: fixed widths
    if not chained or any(parent_w[i] != child_w[i] for i in ends):
        return None
    acts = [a for _, a in child.spec["hidden"]]
    act = [""] + acts + [""] + acts[::-1] + [""]  # softmax matters only on hidden units
    g = torch.Generator().manual_seed(int(seed) % (1 << 63))
    maps: list[torch.Tensor | None] = []
    for p, c in zip(parent_w, child_w, strict=True):
        if c < p:  # narrowed: its two sides keep the child's own weights
            maps.append(None)
        else:
            maps.append(torch.cat([torch.arange(p), torch.randint(p, (c - p,), generator=g)]))
    shares = [None if m is None or not uneven else _shares(m, g) for m in maps]
    copied = []
    with torch.no_grad():
        for i, (name, lin) in enumerate(layers):
            src, dst = maps[i], maps[i + 1]
            if src is None or dst is None:
                continue
            w = theirs[f"{name}.weight"].to(torch.float64)[dst][:, src]
            b = theirs[f"{name}.bias"].to(torch.float64)[dst]
            share_in, share_out = shares[i], shares[i + 1]
            if act[i] != "softmax":  # a softmax input's copies already share their mass
                w = w / _copies(src)[src] if share_in is None else w * share_in
            if act[i + 1] == "softmax":
                if share_out is None:
                    b = b - torch.log(_copies(dst)[dst].to(torch.float64))
                else:
                    b = b + torch.log(share_out)
            lin.weight.copy_(w.to(lin.weight.dtype))
            lin.bias.copy_(b.to(lin.bias.dtype))
            copied += [f"{name}.weight", f"{name}.bias"]
    return copied


def _copies(mapping: torch.Tensor) -> torch.Tensor:
    """How many child units copy each parent unit (float64)."""
    return torch.bincount(mapping).to(torch.float64)


def _shares(mapping: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random positive shares of each parent unit among its copies, summing to one per
    parent unit (exactly one for a unit not copied), float64."""
    u = 0.5 + torch.rand(len(mapping), generator=g, dtype=torch.float64)
    total = torch.zeros(int(mapping.max()) + 1 if len(mapping) else 0, dtype=torch.float64)
    total.index_add_(0, mapping, u)
    share = u / total[mapping]
    single = _copies(mapping)[mapping] == 1
    return torch.where(single, torch.ones_like(share), share)
