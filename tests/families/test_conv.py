"""The conv family: CNN-VAE and conv-AE space, model, plots and the sample command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from evoae import EvoaeError, load_model, save_model, search
from evoae.cli import main as cli_main
from evoae.data import Dataset, load_dataset
from evoae.families import build_model, make_space, space_from_config
from evoae.families.conv.model import LOGVAR_BOUND, vae_terms
from evoae.families.conv.space import ConvSpace
from evoae.runs.journal import Journal
from evoae.training.trainer import evaluate, fit

SHAPES = [(1, 4, 4), (1, 5, 7), (1, 8, 8), (1, 16, 16), (1, 28, 28), (3, 32, 32)]


def small_space(shape, variational=True, **kw):
    """Narrow widths: the shape logic is the same, the networks are cheap."""
    kw = {"filters_range": (2, 6), "dense_range": (4, 12), **kw}
    return ConvSpace(shape, 3, variational=variational, **kw)


def vae_spec(**over):
    spec = {
        "family": "conv-vae",
        "input_shape": [1, 12, 12],
        "code_size": 2,
        "blocks": [[4, 3, 2, "relu", True], [6, 5, 2, "elu", True]],
        "dense": 8,
        "variational": True,
        "optimizer": "adam",
        "lr": 1e-2,
        "batch_size": 16,
        "beta": 1.0,
        "recon_loss": "bce",
    }
    spec.update(over)
    return spec


# ---------------------------------------------------------------- space and shapes


@pytest.mark.parametrize("variational", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_random_genomes_reconstruct_the_input_shape(shape, variational):
    space = small_space(shape, variational)
    rng = np.random.default_rng(sum(shape))
    x = torch.rand(2, *shape)
    for _ in range(12):
        spec = space.decode(space.sample(rng))
        json.dumps(spec)  # JSON-able
        model = build_model(spec, seed=1)
        out = model(x)
        assert out.recon.shape == x.shape
        assert model.reconstruct(x).shape == x.shape
        assert torch.isfinite(out.loss)


def test_stride_repair_never_halves_a_small_map():
    space = small_space((1, 16, 16), strides=[2])
    genome = space.sample(np.random.default_rng(0))
    genome = (4,) + genome[1:]
    spec = space.decode(genome)
    # 16 -> 8 -> 4 -> 2, then a stride-2 block on a 2x2 map is repaired to stride 1.
    assert [b[2] for b in spec["blocks"]] == [2, 2, 2, 1]
    odd = small_space((1, 28, 28), strides=[2]).decode(genome)
    assert [b[2] for b in odd["blocks"]] == [2, 2, 2, 2]  # 28 -> 14 -> 7 -> 4 -> 2: all fit
    tiny = small_space((1, 5, 7), strides=[2]).decode(genome)
    assert [b[2] for b in tiny["blocks"]] == [2, 1, 1, 1]  # 5x7 -> 3x4, then too small


def test_space_config_round_trip_and_beta_gene():
    space = small_space((1, 16, 16), evolve_beta=True, beta_range=(0.5, 2.0))
    again = space_from_config(json.loads(json.dumps(space.config())))
    genome = space.sample(np.random.default_rng(3))
    assert again.decode(genome) == space.decode(genome)
    assert "beta" in [g.name for g in space.genes]
    betas = {space.decode(space.sample(np.random.default_rng(i)))["beta"] for i in range(5)}
    assert len(betas) == 5 and all(0.5 <= b <= 2.0 for b in betas)
    assert "beta" not in [g.name for g in small_space((1, 16, 16)).genes]
    assert space_from_config(small_space((1, 8, 8), False).config()).family == "conv-ae"


# ---------------------------------------------------------------- loss


def test_kl_and_bce_match_closed_forms():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(5, 3, generator=g)
    logvar = torch.randn(5, 3, generator=g)
    x = torch.rand(5, 1, 4, 4, generator=g)
    logits = torch.randn(5, 1, 4, 4, generator=g)
    rec, kl = vae_terms(logits, x, mean, logvar)
    q = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    torch.testing.assert_close(kl, torch.distributions.kl_divergence(q, p).sum(1))
    prob = torch.sigmoid(logits)
    bce = -(x * prob.log() + (1 - x) * (1 - prob).log()).reshape(5, -1).sum(1)
    torch.testing.assert_close(rec, bce)
    rec_g, _ = vae_terms(logits, x, mean, logvar, recon_loss="mse", sigma=0.5)
    gauss = -torch.distributions.Normal(prob, 0.5).log_prob(x).reshape(5, -1).sum(1)
    torch.testing.assert_close(rec_g, gauss)


def test_eval_loss_is_the_negative_elbo_whatever_beta():
    x = torch.rand(8, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    model = build_model(vae_spec(beta=3.0), seed=2)
    model.train()
    out = model(x)
    torch.testing.assert_close(out.loss, out.terms["recon"] + 3.0 * out.terms["kl"])
    model.eval()
    out = model(x)
    torch.testing.assert_close(out.loss, out.terms["neg_elbo"])
    torch.testing.assert_close(out.loss, out.terms["recon"] + out.terms["kl"])


def test_reparameterisation_gradient_reaches_both_heads():
    model = build_model(vae_spec(), seed=0)
    model.train()
    model(torch.rand(8, 1, 12, 12)).loss.backward()
    for head in (model.mean, model.logvar):
        grad = head.weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    # Only the reconstruction's path through z (not the KL) when the KL term is switched off.
    model.zero_grad()
    model.eval()
    x = torch.rand(8, 1, 12, 12)
    out = model(x)
    out.terms["recon"].backward()
    assert model.logvar.weight.grad.abs().sum() > 0


def test_log_variance_is_bounded_and_loss_finite():
    model = build_model(vae_spec(), seed=0)
    with torch.no_grad():
        model.logvar.weight.mul_(1e4)
        model.logvar.bias.fill_(1e4)
    mean, logvar = model.posterior(torch.rand(4, 1, 12, 12))
    assert logvar.abs().max() <= LOGVAR_BOUND
    assert torch.isfinite(model(torch.rand(4, 1, 12, 12)).loss)


def test_conv_ae_is_deterministic_mse_and_has_no_prior():
    spec = vae_spec(family="conv-ae", variational=False)
    for k in ("beta", "recon_loss"):
        spec.pop(k)
    model = build_model(spec, seed=0).eval()
    x = torch.rand(4, 1, 12, 12)
    out = model(x)
    assert set(out.terms) == {"mse"}
    torch.testing.assert_close(out.loss, torch.mean((model.reconstruct(x) - x) ** 2))
    torch.testing.assert_close(model(x).recon, out.recon)
    with pytest.raises(EvoaeError):
        model.sample(4)


# ---------------------------------------------------------------- seeds and storage


def test_same_seed_same_weights_noise_and_training():
    x = torch.rand(32, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    a, b = build_model(vae_spec(), seed=5), build_model(vae_spec(), seed=5)
    la = fit(a, x, epochs=2, batch_size=16, optimizer="adam", lr=1e-2, seed=5)
    lb = fit(b, x, epochs=2, batch_size=16, optimizer="adam", lr=1e-2, seed=5)
    assert la == lb
    assert evaluate(a, x) == evaluate(b, x)
    assert evaluate(a, x) == evaluate(a, x)  # evaluation noise restarts every call
    torch.testing.assert_close(a.sample(6), b.sample(6), rtol=0, atol=0)
    c = build_model(vae_spec(), seed=6)
    assert not torch.equal(c.mean.weight, build_model(vae_spec(), seed=5).mean.weight)


def test_saved_model_reloads_with_identical_outputs(tmp_path):
    space = small_space((1, 12, 12))
    model = build_model(vae_spec(), seed=123456789012345)
    x = torch.rand(32, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    fit(model, x, epochs=1, batch_size=16, optimizer="adam", lr=1e-2, seed=0)  # moves BN stats
    model.eval()
    save_model(model, tmp_path / "m", space=space.config(), genome={})
    loaded = load_model(tmp_path / "m")
    out_a, out_b = model(x), loaded(x)
    assert torch.equal(out_a.recon, out_b.recon) and torch.equal(out_a.loss, out_b.loss)
    assert torch.equal(model.sample(5), loaded.sample(5))
    mean_a, logvar_a = model.posterior(x)
    mean_b, logvar_b = loaded.posterior(x)
    assert torch.equal(mean_a, mean_b) and torch.equal(logvar_a, logvar_b)
    assert torch.equal(model.decode(mean_a), loaded.decode(mean_b))


# ---------------------------------------------------------------- bad input


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_bad_input_is_one_line_error():
    images = Dataset(np.random.default_rng(0).random((20, 1, 8, 8)), None, "imgs")
    with pytest.raises(EvoaeError) as e:
        make_space("conv-vae", "seed", images, 0)
    assert "latent size" in _one_line(e)
    tiny = Dataset(np.zeros((20, 1, 2, 2)), None, "tiny")
    with pytest.raises(EvoaeError) as e:
        make_space("conv-vae", "seed", tiny, 2)
    assert "1x2x2" in _one_line(e)
    table = Dataset(np.zeros((20, 5)), None, "table")
    for model in ("conv-vae", "conv-ae"):
        with pytest.raises(EvoaeError) as e:
            make_space(model, "seed", table, 2)
        assert "tabular" in _one_line(e) and "--model dense" in _one_line(e)
    with pytest.raises(EvoaeError) as e:
        make_space("conv-vae", "nonsense", images, 2)
    assert "preset" in _one_line(e)
    with pytest.raises(EvoaeError) as e:
        build_model(vae_spec(), 0).encode(torch.zeros(2, 1, 8, 8))
    assert "(N, 1, 12, 12)" in _one_line(e)


def test_cli_reports_tabular_data_for_conv_model(tmp_path, capsys):
    csv = tmp_path / "t.csv"
    np.savetxt(csv, np.random.default_rng(0).random((30, 4)), delimiter=",")
    code = cli_main(["search", "--dataset", str(csv), "--model", "conv-ae", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("evoae: error:") and "tabular" in err
    assert len(err.splitlines()) == 1


# ---------------------------------------------------------------- end to end


def test_tiny_cnn_vae_search_writes_every_artifact(tmp_path, shared_data_dir):
    run = tmp_path / "run"
    result = search(
        "mnist",
        data_dir=str(shared_data_dir),
        image_size=12,
        limit=300,
        split="random",
        model="conv-vae",
        code_size=2,
        space_options={"filters_range": [2, 8], "dense_range": [8, 16]},
        strategy="microbial",
        population=3,
        generations=2,
        epochs=1,
        final_epochs=1,
        out=run,
    )
    for name in ("journal.sqlite", "checkpoint.json", "settings.json", "best_genome.json"):
        assert (run / name).is_file(), name
    for name in ("summary.json", "model/model.json", "model/model.safetensors"):
        assert (run / name).is_file(), name
    for name in ("fitness", "reconstructions", "samples", "interpolation", "latent"):
        assert (run / "plots" / f"{name}.png").stat().st_size > 0, name
    assert result.best_spec["family"] == "conv-vae"
    with Journal(run / "journal.sqlite") as j:
        rows = [r for r in j.rows() if r.status == "ok"]
    assert rows and all({"recon", "kl", "neg_elbo"} <= set(r.terms) for r in rows)
    for r in rows:
        # The negative ELBO, plus the collapse penalty for a candidate that ignores its code.
        elbo = r.terms["recon"] + r.terms["kl"]
        assert math.isclose(r.fitness, elbo + r.terms["collapse_penalty"], rel_tol=1e-4)
    loaded = load_model(run / "model")
    x = torch.as_tensor(
        load_dataset("mnist", data_dir=str(shared_data_dir), image_size=(12, 12), limit=8).x
    )
    assert torch.equal(loaded(x).recon, result.model(x).recon)
    out = tmp_path / "grid.png"
    assert cli_main(["sample", str(run), "--n", "16", "--out", str(out)]) == 0
    assert out.stat().st_size > 0


def test_conv_ae_search_on_digits_and_sample_refused(tmp_path, capsys):
    run = tmp_path / "ae"
    result = search(
        "digits",
        limit=200,
        model="conv-ae",
        code_size=2,
        max_depth=2,
        space_options={"filters_range": [2, 6]},
        strategy="microbial",
        population=2,
        generations=1,
        epochs=1,
        final_epochs=1,
        out=run,
    )
    assert result.best_spec["family"] == "conv-ae" and len(result.best_spec["blocks"]) <= 2
    assert (run / "plots" / "latent.png").is_file()
    assert not (run / "plots" / "samples.png").exists()
    with Journal(run / "journal.sqlite") as j:
        assert all(set(r.terms) == {"mse"} for r in j.rows() if r.status == "ok")
    assert cli_main(["sample", str(run), "--out", str(tmp_path / "s.png")]) == 2
    assert "no prior" in capsys.readouterr().err
