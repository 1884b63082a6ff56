"""VAEs: collapse prevention (free bits, KL warm-up), collapse detection (active units,
sample spread, the search's penalty), dynamic binarisation and the IWAE test NLL."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from evoae import search
from evoae.cli import main as cli_main
from evoae.data import load_dataset
from evoae.data.protocol import load_splits
from evoae.families import build_model, space_from_config
from evoae.families.conv.space import ConvSpace
from evoae.families.conv.stack import ConvStack
from evoae.models.vae import (
    active_units,
    iwae_nll,
    kl_dims,
    latent_health,
    log_normal,
    neg_elbo,
    training_kl,
)
from evoae.objectives import EvalSplit, Reconstruction
from evoae.runs.journal import Journal
from evoae.runs.schema import validate_summary
from evoae.settings import SearchSettings
from evoae.training.population import train_stack
from evoae.training.trainer import fit


def vae_spec(**over):
    spec = {
        "family": "conv-vae",
        "input_shape": [1, 8, 8],
        "code_size": 4,
        "blocks": [[8, 3, 2, "relu", False], [8, 3, 2, "relu", False]],
        "dense": 32,
        "variational": True,
        "optimizer": "adam",
        "lr": 3e-3,
        "batch_size": 64,
        "beta": 1.0,
        "recon_loss": "bce",
    }
    spec.update(over)
    return spec


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(load_dataset("digits").x)
    return x[:1000].contiguous(), x[1000:1400].contiguous()


@pytest.fixture(scope="module")
def trained(digits):
    """A small conv VAE trained on digits (free bits keep its latents in use)."""
    x, _ = digits
    model = build_model(vae_spec(free_bits=0.1), seed=1)
    fit(model, x, epochs=15, batch_size=64, optimizer="adam", lr=3e-3, seed=1)
    return model.eval()


# ---------------------------------------------------------------- the IWAE bound


class LinearGaussianVAE(nn.Module):
    """p(z) = N(0, I), p(x | z) = N(W z + b, s^2 I): the marginal is N(b, W W^T + s^2 I).

    The encoder is the exact posterior, shrunk or shifted by ``mismatch`` (0: exact)."""

    def __init__(self, d: int = 5, k: int = 2, s: float = 0.5, mismatch: float = 0.0):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(d, k, generator=g, dtype=torch.float64)
        self.b = torch.randn(d, generator=g, dtype=torch.float64)
        self.s, self.k, self.mismatch = s, k, mismatch
        self.code_size = k
        prec = torch.eye(k, dtype=torch.float64) + self.w.T @ self.w / s**2
        self.cov = torch.linalg.inv(prec)

    def posterior(self, x):
        mean = (x - self.b) @ self.w @ self.cov.T / self.s**2
        logvar = torch.log(torch.diagonal(self.cov)).expand_as(mean)
        return mean + self.mismatch, logvar + self.mismatch

    def log_px_z(self, x, z):
        mu = z @ self.w.T + self.b
        return log_normal(x, mu, torch.full_like(mu, 2 * math.log(self.s)))

    def exact_nll(self, x):
        cov = self.w @ self.w.T + self.s**2 * torch.eye(len(self.b), dtype=torch.float64)
        return -torch.distributions.MultivariateNormal(self.b, cov).log_prob(x)


def test_iwae_matches_the_exact_likelihood_of_a_linear_gaussian_vae():
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model = LinearGaussianVAE(k=1)  # one latent: the diagonal posterior is exact
    exact = model.exact_nll(x)
    # The exact posterior makes every importance weight equal p(x): exact for any k.
    torch.testing.assert_close(iwae_nll(model, x, 1, seed=0), exact, rtol=1e-8, atol=1e-8)
    off = LinearGaussianVAE(k=2, mismatch=0.6)  # a wrong posterior: a loose bound
    exact2 = off.exact_nll(x)
    k1 = iwae_nll(off, x, 1, seed=0).mean()
    k100 = iwae_nll(off, x, 100, seed=0).mean()
    k2000 = iwae_nll(off, x, 2000, seed=0, rows=512).mean()
    assert k1 > k100 > k2000 >= exact2.mean() - 0.01
    assert float(k2000 - exact2.mean()) < 0.05 * float(k1 - exact2.mean())


def test_iwae_estimate_is_tighter_than_the_elbo_on_a_trained_conv_vae(trained, digits):
    _, xv = digits
    elbo = neg_elbo(trained, xv)
    # k = 1 is the ELBO's single-sample estimate: equal in expectation over the noise.
    k1 = np.mean([float(iwae_nll(trained, xv, 1, seed=s).mean()) for s in range(8)])
    assert k1 == pytest.approx(elbo, rel=0.01)
    k64 = float(iwae_nll(trained, xv, 64, seed=0).mean())
    assert k64 < elbo - 0.1
    # Same seed, same figure; chunking the samples to bound memory keeps it a valid bound.
    assert float(iwae_nll(trained, xv, 64, seed=0).mean()) == k64
    assert float(iwae_nll(trained, xv, 64, seed=0, rows=16).mean()) == pytest.approx(k64, abs=0.5)


# ---------------------------------------------------------------- dynamic binarisation


def test_dynamic_binarisation_draws_fresh_images_reproducibly(digits):
    x, _ = digits
    xb = x[:64]
    model = build_model(vae_spec(binarize="dynamic"), seed=5).train()
    a, b = model._binarized(xb), model._binarized(xb)
    assert set(torch.unique(a).tolist()) <= {0.0, 1.0}
    assert not torch.equal(a, b)  # a fresh draw every pass (every epoch)
    assert abs(float(a.mean()) - float(xb.mean())) < 0.02  # grey levels as probabilities
    again = build_model(vae_spec(binarize="dynamic"), seed=5).train()
    assert torch.equal(again._binarized(xb), a)
    # The same seed trains the same weights; another seed draws other images.
    runs = []
    for seed in (5, 5, 6):
        m = build_model(vae_spec(binarize="dynamic"), seed=seed)
        runs.append(fit(m, x[:256], epochs=2, batch_size=64, optimizer="adam", lr=3e-3, seed=0))
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_binarised_splits_fix_validation_and_test_and_keep_training_grey(shared_data_dir):
    kw = {"data_dir": str(shared_data_dir), "limit": 600, "image_size": 8}
    one = load_splits("mnist", binarize="dynamic", **kw)
    two = load_splits("mnist", binarize="dynamic", **kw)
    grey = load_splits("mnist", **kw)
    for split in ("val", "test"):
        a = getattr(one, split).x
        assert set(np.unique(a).tolist()) == {0.0, 1.0}
        np.testing.assert_array_equal(a, getattr(two, split).x)
    np.testing.assert_array_equal(one.train.x, grey.train.x)
    assert len(np.unique(one.train.x)) > 2


def test_binarize_needs_a_vae():
    s = SearchSettings.of(model="dense", binarize="dynamic")
    with pytest.raises(Exception, match="needs a VAE with a Bernoulli decoder"):
        s.space_options()
    with pytest.raises(Exception, match="Bernoulli decoder"):
        ConvSpace((1, 8, 8), 2, recon_loss="mse", binarize="dynamic")


# ---------------------------------------------------------------- free bits and warm-up


def test_free_bits_floor_each_dimensions_kl_in_the_loss(digits):
    x, _ = digits
    model = build_model(vae_spec(free_bits=0.5), seed=2).train()
    mean, logvar = model.posterior(x[:64])
    dims = kl_dims(mean, logvar).detach()
    out = model(x[:64])
    floored = torch.clamp(dims.mean(0), min=0.5).sum()
    torch.testing.assert_close(out.loss - out.terms["recon"], floored, rtol=1e-5, atol=1e-4)
    assert float(dims.mean(0).min()) < 0.5  # some dimension sits below the floor
    # Below the floor a dimension's KL has no gradient: nothing pulls it to the prior.
    d = dims.clone().requires_grad_(True)
    training_kl(d, 0.5).mean().backward()
    below = dims.mean(0) < 0.5
    assert torch.all(d.grad[:, below] == 0) and torch.all(d.grad[:, ~below] > 0)
    assert torch.all(training_kl(dims, 0.5).mean() >= 0.5 * dims.shape[1] - 1e-6)


def test_kl_warmup_ramps_the_weight_and_travels_with_the_weights(digits, tmp_path):
    x, _ = digits
    model = build_model(vae_spec(kl_warmup=4), seed=2).train()
    mean, logvar = model.posterior(x[:64])
    kl = float(kl_dims(mean, logvar).sum(1).mean().detach())
    out = model(x[:64])
    assert float((out.loss - out.terms["recon"]).detach()) == pytest.approx(kl / 4, abs=1e-4)
    for _ in range(5):
        model(x[:64])
    assert int(model.kl_steps) == 6
    with torch.no_grad():  # evaluation never advances the warm-up
        model.eval()(x[:64])
    assert int(model.kl_steps) == 6
    clone = build_model(vae_spec(kl_warmup=4), seed=2)
    clone.load_state_dict(model.state_dict())
    assert int(clone.kl_steps) == 6


# ---------------------------------------------------------------- collapse detection


def test_active_units_miss_a_deliberately_dead_dimension(trained, digits):
    _, xv = digits
    model = build_model(vae_spec(), seed=3).eval()
    with torch.no_grad():
        model.mean.weight.mul_(50.0)  # every unit's mean varies over the data
        assert active_units(model, xv) == 4
        model.mean.weight[2].zero_()  # unit 2 is the same for every image
        model.mean.bias[2] = 0.7
    assert active_units(model, xv) == 3
    assert active_units(model, xv, threshold=1e9) == 0


def test_collapse_flagged_on_a_collapsed_model_and_not_a_healthy_one(trained, digits):
    _, xv = digits
    healthy = latent_health(trained, xv)
    assert not healthy["collapsed"] and healthy["active_units"] >= 2
    assert healthy["sample_spread"] > 0.02
    dead = build_model(vae_spec(), seed=3).eval()
    dead.load_state_dict(trained.state_dict())
    with torch.no_grad():
        dead.mean.weight.zero_()  # every image maps to one posterior
        dead.decoder[0].weight.zero_()  # and the decoder ignores z
    verdict = latent_health(dead, xv)
    assert verdict["collapsed"] and verdict["active_units"] == 0
    assert "0 of 4" in verdict["collapse_reason"] and "identical" in verdict["collapse_reason"]


def test_collapse_penalty_ranks_a_collapsed_candidate_last(trained, digits):
    _, xv = digits
    split = EvalSplit(xv)
    dead = build_model(vae_spec(collapse_penalty=1000.0), seed=3).eval()
    dead.load_state_dict(trained.state_dict())
    with torch.no_grad():
        dead.mean.weight.zero_()
    live = build_model(vae_spec(collapse_penalty=1000.0), seed=3).eval()
    live.load_state_dict(trained.state_dict())
    bad, good = Reconstruction().score(dead, split), Reconstruction().score(live, split)
    assert bad.terms["collapse_penalty"] == 1000.0 and good.terms["collapse_penalty"] == 0.0
    assert bad.fitness == pytest.approx(bad.terms["neg_elbo"] + 1000.0)
    assert bad.fitness > good.fitness
    plain = Reconstruction().score(trained, split)  # specs without a penalty: as before
    assert "collapse_penalty" not in plain.terms


def test_stacked_training_matches_alone_with_every_vae_setting(digits):
    x, xv = digits
    x = x[:192]
    over = {"free_bits": 0.2, "kl_warmup": 5, "collapse_penalty": 100.0, "binarize": "dynamic"}
    specs = [vae_spec(lr=1e-3, **over), vae_spec(lr=3e-3, **over)]
    seeds = [3, 4]
    run = train_stack(specs, seeds, x, xv, epochs=2, build=ConvStack)
    for j, (spec, seed) in enumerate(zip(specs, seeds, strict=True)):
        alone = build_model(spec, seed)
        losses = fit(alone, x, epochs=2, batch_size=64, optimizer="adam", lr=spec["lr"], seed=seed)
        np.testing.assert_allclose(run.epoch_losses[j], losses, rtol=1e-5)
        want = Reconstruction().score(alone.eval(), EvalSplit(xv))
        got = run.results[j]
        assert got.fitness == pytest.approx(want.fitness, rel=1e-4)
        assert got.terms["active_units"] == want.terms["active_units"]
        assert int(run.stack.member_model(j).kl_steps) == int(alone.kl_steps) == 6


# ---------------------------------------------------------------- settings and old runs


def test_old_spaces_and_settings_read_as_before():
    space = ConvSpace((1, 8, 8), 2)
    new_keys = ("free_bits", "kl_warmup", "collapse_penalty", "binarize")
    old = {k: v for k, v in space.config().items() if k not in new_keys}
    again = space_from_config(old)
    genome = again.sample(np.random.default_rng(0))
    spec = again.decode(genome)
    assert not set(new_keys) & set(spec)
    new = space.decode(genome)
    assert new["free_bits"] > 0 and new["kl_warmup"] > 0 and new["collapse_penalty"] > 0
    stored = SearchSettings.of(model="conv-vae").to_dict()
    for name in ("free_bits", "kl_warmup", "collapse_penalty"):
        del stored["space"][name]
    del stored["data"]["binarize"], stored["training"]["nll_samples"]
    s = SearchSettings.from_dict(json.loads(json.dumps(stored)))
    assert s.space.free_bits == 0 and s.space.kl_warmup == 0 and s.space.collapse_penalty == 0
    assert s.nll_samples() == 0 and s.data.binarize == "none"
    assert s.space_options()["free_bits"] == 0
    fresh = SearchSettings.of(model="conv-vae")
    assert "free_bits" not in fresh.space_options()  # the family's default applies
    with pytest.raises(Exception, match="applies to VAE families"):
        SearchSettings.of(model="dense", free_bits=0.5).space_options()


# ---------------------------------------------------------------- a whole run


def test_collapsed_final_model_is_flagged_in_summary_and_runs_show(tmp_path, capsys):
    run = tmp_path / "run"
    result = search(
        "digits",
        limit=400,
        model="conv-vae",
        code_size=4,
        max_depth=1,
        # A KL weight of 1000 without free bits or warm-up drives every posterior onto the
        # prior: the model this run returns is collapsed.
        space_options={
            "filters_range": [2, 4],
            "dense_range": [4, 8],
            "beta": 1000.0,
            "lr_range": [2e-2, 3e-2],
        },
        free_bits=0.0,
        kl_warmup=0,
        strategy="microbial",
        population=2,
        generations=1,
        epochs=2,
        min_steps=60,
        final_epochs=2,
        final_min_steps=300,
        nll_samples=8,
        out=run,
    )
    vae = result.final["vae"]
    assert vae["collapsed"] and vae["active_units"] < 2
    assert vae["test_nll"] is not None and vae["test_nll"] <= vae["test_neg_elbo"] + 0.5
    summary = json.loads((run / "summary.json").read_text())
    validate_summary(summary, "summary.json")
    assert summary["final"]["vae"]["collapsed"] is True
    capsys.readouterr()
    assert cli_main(["runs", "show", str(run)]) == 0
    text = capsys.readouterr().out
    assert "COLLAPSED" in text and "active latent units" in text and "IWAE, k=8" in text
    assert cli_main(["runs", "show", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["collapsed"] is True
    assert cli_main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "Posterior collapse" in page and "active latent units" in page
    old = {k: v for k, v in summary["final"].items() if k != "vae"}
    validate_summary({**summary, "final": old}, "summary.json")  # summaries before it


def test_a_run_stored_before_the_vae_settings_resumes_as_it_ran(tmp_path):
    off = {"free_bits": 0.0, "kl_warmup": 0, "collapse_penalty": 0.0}
    tiny = {
        "limit": 300,
        "model": "conv-vae",
        "code_size": 2,
        "max_depth": 1,
        "space_options": {"filters_range": [2, 4], "dense_range": [4, 8]},
        "strategy": "microbial",
        "final_continue": False,  # the old run's final stage trains from scratch
        "population": 2,
        "epochs": 1,
        "final_epochs": 1,
        "seed": 4,
    }
    whole = search("digits", out=tmp_path / "whole", generations=2, **tiny, **off)
    run = tmp_path / "old"
    search("digits", out=run, generations=1, **tiny, **off)
    with Journal(run / "journal.sqlite") as j:  # as evoae stored it before these settings
        stored = j.get_meta("settings")
        for name in off:
            del stored["space"][name]
        del stored["data"]["binarize"], stored["training"]["nll_samples"]
        j.set_meta("settings", stored)
        assert not set(off) & set(j.get_meta("space"))
    resumed = search("digits", out=run, resume=True, generations=2)
    with Journal(run / "journal.sqlite") as a, Journal(tmp_path / "whole" / "journal.sqlite") as b:
        assert [(r.spec, r.fitness) for r in a.rows()] == [(r.spec, r.fitness) for r in b.rows()]
    assert resumed.best_fitness == whole.best_fitness
    assert not {"free_bits", "kl_warmup", "collapse_penalty", "binarize"} & set(resumed.best_spec)
