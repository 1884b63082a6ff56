"""Fused optimizers (:mod:`evoae.training.optim`): the for-loop path's results, faster."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from conftest import dense_spec

import evoae.training.trainer as trainer_mod
from evoae.data import load_dataset
from evoae.families.dense.space import dense_preset
from evoae.training.optim import make_optimizer
from evoae.training.trainer import train_candidate

CONV = {
    "family": "conv-vae",
    "input_shape": [1, 8, 8],
    "code_size": 2,
    "blocks": [[8, 3, 2, "relu", True]],
    "dense": 0,
    "variational": True,
    "optimizer": "adam",
    "lr": 0.003,
    "batch_size": 32,
    "beta": 1.0,
    "recon_loss": "bce",
}


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(load_dataset("digits").x[:400])
    return x[:300], x[300:]


def candidates() -> list[dict]:
    """A few seed-space candidates, one per optimizer, and fixed ones of both families."""
    space = dense_preset("seed", 64, 4, optimizers=["sgd", "adam", "adamw"])
    rng = np.random.default_rng(3)
    specs = [space.decode(space.sample(rng)) for _ in range(4)]
    specs += [dense_spec(optimizer=o, lr=0.01) for o in ("sgd", "adam", "adamw")]
    return specs + [CONV, {**CONV, "optimizer": "sgd", "lr": 0.05}]


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_fused_where_the_kernels_exist(name):
    model = torch.nn.Linear(3, 2)
    opt = make_optimizer(name, model.parameters(), 0.01)
    assert opt.defaults["fused"] is True
    assert not make_optimizer(name, model.parameters(), 0.01, fused=False).defaults["fused"]


def test_fused_training_matches_the_for_loop_and_repeats_exactly(digits, monkeypatch):
    x_train, x_val = digits
    specs = candidates()
    assert {s["optimizer"] for s in specs} == {"sgd", "adam", "adamw"}

    def train_all() -> list[tuple[float, float | None]]:
        out = []
        for i, spec in enumerate(specs):
            x_tr, x_va = x_train, x_val
            if spec["family"] == "conv-vae":
                x_tr, x_va = x_train.reshape(-1, 1, 8, 8), x_val.reshape(-1, 1, 8, 8)
            result, _ = train_candidate(spec, x_tr, x_va, epochs=2, seed=100 + i)
            out.append((result.fitness, result.train_loss))
        return out

    fused = train_all()
    assert train_all() == fused  # same seed, same result, bit for bit
    monkeypatch.setattr(trainer_mod, "make_optimizer", partial(make_optimizer, fused=False))
    loop = train_all()
    assert all(np.isfinite(f) for f, _ in fused)
    for spec, (f_fused, t_fused), (f_loop, t_loop) in zip(specs, fused, loop, strict=True):
        # Rounding differs (one kernel against a loop of tensor ops); conv-VAEs, with batch
        # norm and losses summed over pixels, carry it further (measured: 5e-5 after 2 epochs).
        rel = 1e-5 if spec["family"] == "dense" else 1e-3
        assert f_fused == pytest.approx(f_loop, rel=rel)
        assert t_fused == pytest.approx(t_loop, rel=rel)
