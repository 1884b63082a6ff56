"""Weight-space neuroevolution: OpenAI-ES, deep GA, quantisation fine-tuning."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import dense_spec

from evoae.errors import EvoaeError
from evoae.families import build_model
from evoae.objectives.reconstruction import evaluate
from evoae.training import fit
from evoae.training.es import (
    Chain,
    WeightVector,
    centered_ranks,
    chain_weights,
    deep_ga,
    fake_quant_int8,
    openai_es,
    quantize_model_,
    quantized_finetune,
    sgd_then_es,
)

SPEC = dense_spec(input_dim=12, code_size=2, hidden=[[6, "tanh"]], lr=0.01, batch_size=16)


def data(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.rand(n, 2, generator=g)
    mix = torch.rand(2, 12, generator=g)
    return (z @ mix / 2).clamp(0, 1)


def test_centered_ranks():
    r = centered_ranks(torch.tensor([3.0, 1.0, 2.0]))
    assert r.tolist() == [0.5, -0.5, 0.0]


def test_weight_vector_round_trip():
    m = build_model(SPEC, 0)
    wv = WeightVector(m)
    theta = wv.get()
    assert theta.numel() == wv.dim == sum(p.numel() for p in m.parameters())
    wv.set(theta * 2)
    assert torch.equal(wv.get(), theta * 2)


def test_es_improves_and_is_seeded():
    x = data()
    m = build_model(SPEC, 1)
    start = evaluate(m, x)["loss"]
    a = openai_es(m, x, generations=40, population=20, sigma=0.05, lr=0.03, seed=3)
    b = openai_es(m, x, generations=40, population=20, sigma=0.05, lr=0.03, seed=3)
    assert torch.equal(a.theta, b.theta) and a.history == b.history
    assert a.loss < 0.8 * start
    assert evaluate(a.model, x)["loss"] == pytest.approx(a.loss, rel=1e-5)
    assert torch.equal(WeightVector(m).get(), WeightVector(build_model(SPEC, 1)).get())  # untouched
    c = openai_es(m, x, generations=5, population=20, sigma=0.05, seed=4)
    assert not torch.equal(a.theta, c.theta)


def test_vmap_matches_loop_and_black_box():
    x = data(64)
    m = build_model(SPEC, 2)
    f = openai_es(m, x, generations=3, population=6, sigma=0.05, seed=0)
    g = openai_es(
        m, fitness=lambda mod: evaluate(mod, x)["loss"], generations=3, population=6, sigma=0.05
    )
    assert torch.allclose(f.theta, g.theta, atol=1e-5)


def test_ga_seed_chain_rebuilds_exact_weights():
    x = data()
    m = build_model(SPEC, 1)
    r = deep_ga(m, x, generations=6, population=12, truncation=4, sigma=0.02, seed=5)
    assert r.chain.init is None and len(r.chain.mutations) >= 1
    assert torch.equal(chain_weights(r.chain, 0.02, base=m), r.theta)
    assert r.history[-1]["best"] <= r.history[0]["best"]  # elitism: never worse
    again = deep_ga(m, x, generations=6, population=12, truncation=4, sigma=0.02, seed=5)
    assert again.chain == r.chain and torch.equal(again.theta, r.theta)


def test_ga_from_scratch_chain():
    x = data()
    m = build_model(SPEC, 0)
    r = deep_ga(m, x, generations=3, population=8, truncation=3, sigma=0.05, from_scratch=True)
    assert r.chain.init is not None
    assert torch.equal(chain_weights(r.chain, 0.05, spec=SPEC), r.theta)
    with pytest.raises(EvoaeError):
        chain_weights(Chain(None, (1,)), 0.1)


def test_fake_quant_levels():
    w = {"w": torch.linspace(-1, 0.5, 50).reshape(5, 10), "b": torch.rand(10)}
    q = fake_quant_int8(w)
    assert torch.equal(q["b"], w["b"])
    levels = q["w"] / (1.0 / 127)
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    assert q["w"].unique().numel() <= 255


def test_quantized_finetune_never_worse():
    x = data()
    m = build_model(SPEC, 0)
    fit(m, x, epochs=20, batch_size=16, optimizer="adam", lr=0.01, seed=0)
    q = quantized_finetune(m, x, generations=15, population=16, sigma=0.003, lr=0.002)
    assert q.tuned_loss <= q.quant_loss
    assert q.float_loss < q.quant_loss or math.isnan(q.recovered)
    # the returned model is really quantised
    snap = {k: v.clone() for k, v in q.model.state_dict().items()}
    quantize_model_(q.model)
    assert all(torch.allclose(snap[k], v, atol=1e-7) for k, v in q.model.state_dict().items())


def test_sgd_then_es():
    x = data()
    model, losses, res = sgd_then_es(
        SPEC, x, x, epochs=2, generations=3, population=8, sigma=0.01, lr=0.001
    )
    assert min(losses.values()) == pytest.approx(evaluate(model, x)["loss"], rel=1e-5)
    assert len(res.history) == 3


def test_bad_arguments():
    m = build_model(SPEC, 0)
    with pytest.raises(EvoaeError):
        openai_es(m)  # neither x nor fitness
    with pytest.raises(EvoaeError):
        deep_ga(m, data(), truncation=100, population=10)
