"""Weight inheritance: unchanged layers start from the parent's trained weights."""

from __future__ import annotations

import pytest
import torch
from conftest import dense_spec
from safetensors.torch import load_file, save_file

from evoae.families import build_model, inherit_state
from evoae.models.base import copy_matching
from evoae.training import train_candidate
from evoae.training.rungs import train_rung, valid_state


def test_an_inherited_offspring_computes_what_its_parent_did():
    x = torch.rand(64, 64, generator=torch.Generator().manual_seed(0))
    spec = dense_spec(hidden=[[24, "relu"], [12, "tanh"]])
    _, parent = train_candidate(spec, x, x, epochs=1, seed=1)
    parent.eval()
    same = build_model(spec, seed=99).eval()  # another seed: other initial weights
    assert not torch.equal(same(x).recon, parent(x).recon)
    assert len(inherit_state(parent.state_dict(), same)) == len(parent.state_dict())
    assert torch.equal(same(x).recon, parent(x).recon)
    # The same-shape copy leaves a grown second layer its own weights; the first layer is
    # inherited. inherit_weights widens the grown layer instead (Net2Net, tested below).
    grown = build_model(dense_spec(hidden=[[24, "relu"], [16, "tanh"]]), seed=99)
    copied = copy_matching(parent.state_dict(), grown)
    first = next(iter(parent.state_dict()))
    assert first in copied and len(copied) < len(parent.state_dict())
    assert len(inherit_state(parent.state_dict(), grown)) == len(parent.state_dict())


def _trained(spec: dict, x: torch.Tensor) -> torch.nn.Module:
    _, parent = train_candidate(spec, x, x, epochs=1, seed=1)
    return parent.eval()


@pytest.mark.parametrize("acts", [("relu", "tanh"), ("softmax", "sigmoid")])
def test_a_widened_child_computes_what_its_parent_did(acts):
    """Net2Net: every hidden layer (and its decoder mirror) grown, the function kept."""
    x = torch.rand(64, 64, generator=torch.Generator().manual_seed(0))
    parent = _trained(dense_spec(hidden=[[16, acts[0]], [8, acts[1]]]), x)
    child = build_model(dense_spec(hidden=[[40, acts[0]], [13, acts[1]]]), seed=5).eval()
    copied = inherit_state(parent.state_dict(), child, seed=3)
    assert len(copied) == len(child.state_dict())
    torch.testing.assert_close(child(x).recon, parent(x).recon, rtol=1e-5, atol=1e-6)
    # The replicas are drawn from the seed: the same seed, the same child.
    again = build_model(child.spec, seed=6)
    inherit_state(parent.state_dict(), again, seed=3)
    assert all(
        torch.equal(a, b)
        for a, b in zip(child.state_dict().values(), again.state_dict().values(), strict=True)
    )


def test_a_narrowed_or_deeper_child_keeps_its_own_weights_there():
    x = torch.rand(32, 64, generator=torch.Generator().manual_seed(0))
    parent = _trained(dense_spec(hidden=[[16, "relu"], [8, "relu"]]), x)
    # The second layer narrowed: both of its sides (and their mirrors) keep the child's init.
    child = build_model(dense_spec(hidden=[[20, "relu"], [6, "relu"]]), seed=5)
    before = {k: v.clone() for k, v in child.state_dict().items()}
    copied = set(inherit_state(parent.state_dict(), child))
    assert copied == {"encoder.0.weight", "encoder.0.bias", "decoder.4.weight", "decoder.4.bias"}
    for name in set(before) - copied:
        assert torch.equal(child.state_dict()[name], before[name])
    # Another depth: only what matches by name and shape.
    deeper = build_model(dense_spec(hidden=[[16, "relu"], [8, "relu"], [6, "relu"]]), seed=5)
    assert set(inherit_state(parent.state_dict(), deeper)) == {
        f"encoder.{i}.{t}" for i in (0, 2) for t in ("weight", "bias")
    }


def test_a_task_inheriting_a_saved_state_starts_where_its_parent_ended(tmp_path):
    """The search's path: the parent's training saves its state, the child's task loads
    it (same shapes: exactly; a grown layer: Net2Net, to float rounding)."""
    x = torch.rand(64, 64, generator=torch.Generator().manual_seed(0))
    spec = dense_spec(hidden=[[16, "relu"], [8, "tanh"]])
    _, parent = train_rung(spec, x, x, epochs=1, seed=1, save=tmp_path / "0")
    assert valid_state(tmp_path / "0", spec)
    same = dense_spec(hidden=[[16, "relu"], [8, "tanh"]], optimizer="sgd", lr=0.01)
    _, child = train_rung(same, x, x, epochs=0, seed=9, inherit=tmp_path / "0")
    assert torch.equal(child(x).recon, parent(x).recon)
    wide = dense_spec(hidden=[[30, "relu"], [8, "tanh"]])
    _, child = train_rung(wide, x, x, epochs=0, seed=9, inherit=tmp_path / "0")
    torch.testing.assert_close(child(x).recon, parent(x).recon, rtol=1e-5, atol=1e-6)


def test_a_saved_state_is_checked_before_a_child_inherits_it(tmp_path):
    x = torch.rand(32, 64, generator=torch.Generator().manual_seed(0))
    spec = dense_spec()
    train_rung(spec, x, x, epochs=1, seed=1, save=tmp_path / "0")
    assert valid_state(tmp_path / "0", spec)
    assert not valid_state(tmp_path / "1", spec)  # missing
    assert not valid_state(tmp_path / "0", dense_spec(hidden=[[20, "relu"]]))  # other shapes
    tensors = load_file(str(tmp_path / "0.safetensors"))
    tensors["model.encoder.0.bias"][0] = float("nan")
    save_file(tensors, str(tmp_path / "2.safetensors"))
    assert not valid_state(tmp_path / "2", spec)  # not finite
    (tmp_path / "3.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    assert not valid_state(tmp_path / "3", spec)  # not safetensors
