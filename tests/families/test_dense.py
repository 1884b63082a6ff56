"""Tests for the dense autoencoder, its initialisation, storage, and candidate training."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from torch import nn

from evoae.data import load_dataset, random_split
from evoae.errors import EvoaeError
from evoae.families import build_model
from evoae.families.dense.model import DenseAutoencoder
from evoae.families.dense.space import DenseSpace, dense_preset
from evoae.families.io import load_model, read_model_json, save_model, weights_equal
from evoae.models import ModelOutput, count_params
from evoae.models.layers import activation
from evoae.training import evaluate, fit, train_candidate
from evoae.training.trainer import batch_order

pytestmark = pytest.mark.usefixtures("single_thread_torch")

#: The spec example of the foundation docs: 256 -> 131 -> 19 -> 4 -> 19 -> 131 -> 256.
SPEC = {
    "family": "dense",
    "input_dim": 256,
    "code_size": 4,
    "hidden": [[131, "sigmoid"], [19, "linear"]],
    "code_activation": "softmax",
    "output_activation": "linear",
    "optimizer": "sgd",
    "lr": 0.01,
    "batch_size": 32,
}


def linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def activations(seq: nn.Sequential) -> list[type]:
    return [type(m) for m in seq if not isinstance(m, nn.Linear)]


@pytest.fixture(scope="module")
def digits_xy() -> tuple[torch.Tensor, torch.Tensor]:
    """Digits flattened to 64 features: (train, val) of a seeded 70/15/15 split."""
    sp = random_split(load_dataset("digits"), val_fraction=0.15, test_fraction=0.15, seed=0)
    return (
        torch.as_tensor(sp.train.x.reshape(len(sp.train), -1)),
        torch.as_tensor(sp.val.x.reshape(len(sp.val), -1)),
    )


# ------------------------------------------------------------------ architecture


def test_layers_mirror_the_encoder_with_the_same_activations():
    model = DenseAutoencoder(SPEC, seed=0)
    shapes = [(m.in_features, m.out_features) for m in linears(model.encoder)]
    assert shapes == [(256, 131), (131, 19), (19, 4)]
    shapes = [(m.in_features, m.out_features) for m in linears(model.decoder)]
    assert shapes == [(4, 19), (19, 131), (131, 256)]
    assert activations(model.encoder) == [nn.Sigmoid, nn.Identity, nn.Softmax]
    # Decoder: the 19-wide layer is linear, the 131-wide one sigmoid, then the output layer.
    assert activations(model.decoder) == [nn.Identity, nn.Sigmoid, nn.Identity]
    expected = 2 * (256 * 131 + 131 * 19 + 19 * 4) + (131 + 19 + 4) + (19 + 131 + 256)
    assert count_params(model) == expected


def test_no_hidden_layers_is_a_single_code_layer():
    spec = {**SPEC, "hidden": [], "code_activation": "tanh", "output_activation": "sigmoid"}
    model = build_model(spec, seed=1)
    assert [(m.in_features, m.out_features) for m in linears(model)] == [(256, 4), (4, 256)]
    assert activations(model.encoder) == [nn.Tanh]
    assert activations(model.decoder) == [nn.Sigmoid]


def test_every_activation_name_builds():
    for name in ("tanh", "softmax", "relu", "sigmoid", "linear", "elu", "gelu", "leaky_relu"):
        act = activation(name)
        x = torch.linspace(-3, 3, 12).reshape(2, 6)
        y = act(x)
        assert y.shape == x.shape and torch.isfinite(y).all()
    assert torch.allclose(activation("softmax")(x).sum(dim=1), torch.ones(2))
    with pytest.raises(ValueError):
        activation("swish")


def test_unknown_family_is_refused():
    with pytest.raises(EvoaeError, match="unknown model family"):
        build_model({**SPEC, "family": "capsule"})


# ------------------------------------------------------------------ forward, encode, decode


def test_encode_decode_reconstruct_shapes_and_loss():
    model = DenseAutoencoder(SPEC, seed=0)
    x = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    z = model.encode(x)
    assert z.shape == (5, 4)
    # A softmax code layer: each code is a probability vector.
    assert torch.allclose(z.sum(dim=1), torch.ones(5), atol=1e-6) and (z >= 0).all()
    assert model.decode(z).shape == (5, 256)
    r = model.reconstruct(x)
    assert r.shape == x.shape
    out = model(x)
    assert isinstance(out, ModelOutput)
    assert out.recon.shape == (5, 256)
    assert torch.equal(out.recon, model.decode(z)) and torch.equal(r.reshape(5, -1), out.recon)
    mse = ((out.recon - x.reshape(5, -1)) ** 2).mean()
    assert torch.allclose(out.loss, mse) and torch.allclose(out.terms["mse"], mse)
    assert out.loss.ndim == 0
    # Flat inputs work as well as images.
    assert torch.equal(model.encode(x.reshape(5, 256)), z)


# ------------------------------------------------------------------ initialisation


def test_glorot_uniform_weights_and_zero_biases():
    model = DenseAutoencoder(SPEC, seed=3)
    for layer in linears(model):
        w = layer.weight.detach()
        limit = math.sqrt(6.0 / (layer.in_features + layer.out_features))
        assert w.abs().max() <= limit
        assert torch.count_nonzero(layer.bias) == 0
        if w.numel() >= 30_000:  # enough draws for tight statistics
            assert abs(float(w.mean())) < 0.01 * limit
            # Uniform on [-limit, limit]: variance limit^2 / 3, half the mass within limit/2.
            assert float(w.var()) == pytest.approx(limit**2 / 3, rel=0.03)
            assert float((w.abs() < limit / 2).float().mean()) == pytest.approx(0.5, abs=0.01)
            assert w.abs().max() > 0.99 * limit


def test_weights_come_from_the_seed_alone():
    torch.manual_seed(123)
    a = DenseAutoencoder(SPEC, seed=7)
    torch.manual_seed(456)  # the global generator must not matter
    torch.rand(10)
    b = DenseAutoencoder(SPEC, seed=7)
    c = DenseAutoencoder(SPEC, seed=8)
    assert weights_equal(a, b)
    assert not weights_equal(a, c)


# ------------------------------------------------------------------ storage


def test_save_and_load_round_trip(tmp_path):
    space = dense_preset("seed", 256, 4)
    model = DenseAutoencoder(SPEC, seed=2).eval()
    genome = {"note": "any JSON"}
    save_model(model, tmp_path / "m", space=space.config(), genome=genome, metrics={"v": 1.5})
    meta = read_model_json(tmp_path / "m")
    assert meta["spec"] == SPEC and meta["genome"] == genome and meta["metrics"] == {"v": 1.5}
    assert meta["space"] == space.config()
    loaded = load_model(tmp_path / "m")
    assert weights_equal(model, loaded) and not loaded.training
    x = torch.rand(3, 256)
    assert torch.equal(model(x).recon, loaded(x).recon)
    # No pickle anywhere: the description is plain JSON.
    json.loads((tmp_path / "m" / "model.json").read_text())


def test_tampered_or_missing_files_are_refused(tmp_path):
    model = DenseAutoencoder(SPEC, seed=2)
    save_model(model, tmp_path, space={}, genome={})
    weights = tmp_path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(EvoaeError, match="do not match the digest"):
        load_model(tmp_path)
    weights.unlink()
    with pytest.raises(EvoaeError, match="missing"):
        load_model(tmp_path)
    with pytest.raises(EvoaeError, match="no saved model"):
        load_model(tmp_path / "nothing")


# ------------------------------------------------------------------ training


def test_batch_order_is_a_seeded_permutation_per_epoch():
    a, b = batch_order(50, 3, seed=4), batch_order(50, 3, seed=4)
    assert len(a) == 3 and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert all(sorted(p.tolist()) == list(range(50)) for p in a)
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(a[0], batch_order(50, 1, seed=5)[0])


def test_training_is_a_pure_function_of_spec_seed_and_data(digits_xy):
    x_train, x_val = digits_xy
    spec = {**SPEC, "input_dim": 64, "hidden": [[16, "relu"]], "optimizer": "adam", "lr": 1e-3}
    r1, m1 = train_candidate(spec, x_train, x_val, epochs=2, seed=9)
    r2, m2 = train_candidate(spec, x_train, x_val, epochs=2, seed=9)
    r3, m3 = train_candidate(spec, x_train, x_val, epochs=2, seed=10)
    assert weights_equal(m1, m2) and r1.fitness == r2.fitness and r1.train_loss == r2.train_loss
    assert not weights_equal(m1, m3) and r1.fitness != r3.fitness
    assert r1.status == "ok" and r1.error is None
    assert r1.fitness == r1.val_loss == pytest.approx(evaluate(m1, x_val)["loss"])
    assert r1.terms == {"mse": pytest.approx(r1.val_loss)}
    assert r1.params == count_params(m1)


def test_fit_lowers_the_training_loss(digits_xy):
    x_train, _ = digits_xy
    model = DenseAutoencoder({**SPEC, "input_dim": 64, "hidden": [[32, "relu"]]}, seed=0)
    losses = fit(model, x_train, epochs=4, batch_size=32, optimizer="adam", lr=1e-3, seed=0)
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]


def test_seed_preset_candidate_beats_pca_with_the_same_code_size(digits_xy):
    x_train, x_val = digits_xy
    space = dense_preset("seed", 64, 4)
    # 0.75 * 64 = 48 and 0.5 * 48 = 24 kept, 0.01 * 24 removed: 64-48-24-4 with Adam.
    genome = ((0.75, "relu"), (0.5, "relu"), (0.01, "tanh"), "linear", "sigmoid", "adam")
    spec = space.decode(genome)
    assert spec["hidden"] == [[48, "relu"], [24, "relu"]] and spec["lr"] == 0.001
    result, _ = train_candidate(spec, x_train, x_val, epochs=30, seed=0)
    pca = PCA(4).fit(x_train.numpy())
    recon = pca.inverse_transform(pca.transform(x_val.numpy()))
    pca_mse = float(np.mean((recon - x_val.numpy()) ** 2))
    mean_mse = float(((x_train.mean(0) - x_val) ** 2).mean())
    assert result.status == "ok" and math.isfinite(result.fitness)
    # Measured 0.0336 against PCA's 0.0387 and the mean image's 0.074.
    assert result.fitness < pca_mse < mean_mse


def test_a_diverging_candidate_fails_with_infinite_fitness(digits_xy):
    x_train, x_val = digits_xy
    spec = {**SPEC, "input_dim": 64, "hidden": [[16, "relu"]], "lr": 1e30}
    spec.update(code_activation="linear", output_activation="linear", optimizer="sgd")
    result, _ = train_candidate(spec, x_train, x_val, epochs=3, seed=0)
    assert result.status == "failed" and result.fitness == math.inf
    assert result.val_loss is None and "diverged" in result.error
    assert result.params == count_params(build_model(spec))


def test_every_seed_space_phenotype_builds_and_runs():
    space = DenseSpace(64, 4, max_depth=3)
    rng = np.random.default_rng(0)
    x = torch.rand(4, 64)
    for _ in range(40):
        model = build_model(space.decode(space.sample(rng)), seed=0)
        out = model(x)
        assert out.recon.shape == (4, 64) and torch.isfinite(out.loss)
