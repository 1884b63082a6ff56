"""PCA-residual dense candidates: they start at PCA's loss, save and load, are checked,
and runs stored before them decode and resume as they did."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import evoae
from evoae.errors import EvoaeError
from evoae.families import build_model, check_spec, describe, inherit_state
from evoae.families.dense.space import DenseSpace, dense_preset, is_residual
from evoae.families.io import load_model, save_model
from evoae.models.pca import cached_pca_basis, pca_basis, pca_val_loss
from evoae.runs.journal import Journal
from evoae.settings import SearchSettings
from evoae.training import train_candidate

ROOT = Path(__file__).resolve().parents[2]


def _digits(n: int = 600) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.tensor(load_digits().data[:n] / 16.0, dtype=torch.float32)
    return x[: n * 3 // 4], x[n * 3 // 4 :]


def _spec(hidden: list, k: int = 4) -> dict:
    """A residual spec as the space decodes it: ratios chosen to keep ``hidden``'s widths."""
    space = DenseSpace(64, k, residual=True, pca_init=True, activations=("relu", "linear"))
    spec = space.decode(space.pca_genome())
    return {**spec, "hidden": hidden, "init": "pca-residual"}


@pytest.mark.parametrize("act", ["relu", "sigmoid", "softmax", "tanh"])
def test_a_residual_candidate_starts_at_pcas_loss(act):
    train, val = _digits()
    spec = _spec([[32, act], [16, "tanh"]])
    result, model = train_candidate(spec, train, val, epochs=0, seed=5)
    pca = pca_val_loss(train, val, 4)
    assert result.val_loss == pytest.approx(pca, rel=1e-5)
    # The code is PCA's projection, and training moves it off PCA only to improve.
    basis = pca_basis(train, 4)
    codes = model.encode(val).detach().numpy()
    want = (val.numpy().astype(np.float64) - basis.mean) @ basis.components.T
    assert np.allclose(codes, want, atol=1e-5)
    trained, _ = train_candidate(spec, train, val, epochs=15, seed=5)
    assert trained.val_loss < pca


def test_the_space_decodes_residual_specs():
    space = dense_preset("seed", 64, 4, residual=True, pca_init=True)
    assert space.config()["residual"] is True
    rng = np.random.default_rng(0)
    specs = [space.decode(space.sample(rng)) for _ in range(40)]
    deep = [s for s in specs if s["hidden"]]
    assert deep and all(is_residual(s) for s in deep)
    assert all(s["code_activation"] == s["output_activation"] == "linear" for s in deep)
    # Without hidden layers a genome decodes as before: the PCA seed stays the PCA seed.
    assert space.decode(space.pca_genome())["init"] == "pca"
    off = dense_preset("seed", 64, 4, pca_init=True)
    for g in [space.sample(rng) for _ in range(40)]:
        if not space.decode(g)["hidden"]:
            assert space.decode(g) == off.decode(g)
    assert "PCA residual" in describe(deep[0])
    assert DenseSpace.from_config(space.config()).decode(space.sample(rng)) is not None


def test_old_spaces_and_settings_decode_as_before():
    # A run stored before the option: its settings and space config lack "residual".
    old = SearchSettings.from_dict({"space": {"model": "dense", "code_size": 4}})
    assert old.space.residual is False and "residual" not in old.space.space_options()
    assert SearchSettings.of().space.residual is True  # new runs
    cfg = dense_preset("seed", 64, 4, pca_init=True).config()
    assert "residual" not in cfg
    space = DenseSpace.from_config(cfg)
    rng = np.random.default_rng(1)
    for _ in range(40):
        g = space.sample(rng)
        spec = space.decode(g)
        assert spec.get("init") in (None, "pca") and not is_residual(spec)
    # Their models keep their tensors' names and their seeded weights.
    plain = {**_spec([[24, "relu"]]), "output_activation": "sigmoid"}
    del plain["init"]
    state = build_model(plain, 3).state_dict()
    layers = [f"{half}.{i}" for half in ("encoder", "decoder") for i in (0, 2)]
    assert sorted(state) == sorted(f"{n}.{p}" for n in layers for p in ("weight", "bias"))
    again = build_model(plain, 3).state_dict()
    assert all(torch.equal(state[n], again[n]) for n in state)


def test_a_saved_residual_model_reproduces_its_outputs(tmp_path):
    train, val = _digits()
    spec = _spec([[40, "relu"]])
    _, model = train_candidate(spec, train, val, epochs=3, seed=1)
    model.eval()
    space = DenseSpace(64, 4, residual=True, pca_init=True)
    genome = space.to_json(space.pca_genome())
    save_model(model, tmp_path / "m", space=space.config(), genome=genome)
    loaded = load_model(tmp_path / "m")
    assert {"lin_encoder_weight", "lin_decoder_bias"} <= set(loaded.state_dict())
    with torch.no_grad():
        assert torch.equal(loaded.reconstruct(val), model.reconstruct(val))
        assert torch.equal(loaded.encode(val), model.encode(val))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"output_activation": "sigmoid"}, "output_activation"),
        ({"code_activation": "tanh"}, "code_activation"),
        ({"hidden": []}, "hidden"),
        ({"init": "pca-resid"}, "init"),
        ({"init": 3}, "init"),
    ],
)
def test_the_schema_refuses_a_damaged_residual_spec(change, field):
    spec = _spec([[24, "relu"]])
    check_spec(spec, "model description m.json")  # the intact spec passes
    with pytest.raises(EvoaeError, match=rf"m\.json is damaged \(field {field}"):
        check_spec({**spec, **change}, "model description m.json")


def test_widening_a_residual_parent_keeps_its_function():
    train, val = _digits()
    parent_spec, child_spec = _spec([[16, "tanh"]]), _spec([[24, "tanh"]])
    _, parent = train_candidate(parent_spec, train, val, epochs=2, seed=2)
    child = build_model(child_spec, 9)
    names = inherit_state(parent.state_dict(), child, seed=4)
    assert {"lin_encoder_weight", "lin_decoder_weight", "encoder.2.weight"} <= set(names)
    with torch.no_grad():
        diff = (child.reconstruct(val) - parent.reconstruct(val)).abs().max()
    assert float(diff) < 1e-5


def test_the_pca_basis_is_computed_once_per_split():
    train, _ = _digits()
    a, b = cached_pca_basis(train, 4), cached_pca_basis(train, 4)
    assert a is b and cached_pca_basis(train, 2) is not a
    train.mul_(1.0)  # a new version of the same content: found by its digest
    assert cached_pca_basis(train, 4) is a
    # The same rows as another tensor or as an array (the final stage's, the report's).
    assert cached_pca_basis(train.clone(), 4) is a and cached_pca_basis(train.numpy(), 4) is a
    assert pca_val_loss(train.numpy(), train.numpy(), 4) == pytest.approx(
        pca_val_loss(train.clone(), train, 4), rel=1e-12
    )
    train.mul_(0.5)  # an in-place change of content: a fresh basis
    fresh = cached_pca_basis(train, 4)
    assert fresh is not a
    assert np.allclose(fresh.mean, pca_basis(train, 4).mean)


def test_a_residual_search_is_never_worse_than_pca(tmp_path):
    x = load_digits().data[:400] / 16.0
    r = evoae.search(
        "<x>", data=x, out=tmp_path / "run", code_size=4, strategy="microbial",
        population=4, generations=2, epochs=1, min_steps=20, final_epochs=4, final_min_steps=0,
        seed=1,
    )  # fmt: skip
    with Journal(tmp_path / "run" / "journal.sqlite", readonly=True) as j:
        inits = {row.spec.get("init") for row in j.rows()}
    assert "pca-residual" in inits
    assert r.final["val_loss"] <= r.final["pca_val_loss"] * (1 + 1e-6)
    model = load_model(tmp_path / "run" / "model")
    stored = json.loads((tmp_path / "run" / "model" / "model.json").read_text())["spec"]
    assert stored == r.best_spec and model.spec == r.best_spec


def test_the_benchmark_smoke_run(capsys):
    spec = importlib.util.spec_from_file_location("residual_bench", ROOT / "benchmarks/residual.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--smoke", "--codes", "4", "--skip-mnist"])
    out = capsys.readouterr().out
    assert "digits k=4" in out and "ratio" in out and "hand" in out
