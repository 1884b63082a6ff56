"""Weight inheritance: unchanged layers start from the parent's trained weights."""

from __future__ import annotations

import torch
from conftest import dense_spec

from evoae.families import build_model
from evoae.training import train_candidate
from evoae.training.inherit import inherit_weights


def test_an_inherited_offspring_computes_what_its_parent_did():
    x = torch.rand(64, 64, generator=torch.Generator().manual_seed(0))
    spec = dense_spec(hidden=[[24, "relu"], [12, "tanh"]])
    _, parent = train_candidate(spec, x, x, epochs=1, seed=1)
    parent.eval()
    same = build_model(spec, seed=99).eval()  # another seed: other initial weights
    assert not torch.equal(same(x).recon, parent(x).recon)
    assert len(inherit_weights(parent, same)) == len(parent.state_dict())
    assert torch.equal(same(x).recon, parent(x).recon)
    # A grown second layer keeps its own weights there; the first layer is inherited.
    grown = build_model(dense_spec(hidden=[[24, "relu"], [16, "tanh"]]), seed=99)
    copied = inherit_weights(parent, grown)
    first = next(iter(parent.state_dict()))
    assert first in copied and len(copied) < len(parent.state_dict())
