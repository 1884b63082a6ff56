"""Hybrid objectives (probe, knn, mix, auroc) and the HybridModel artifact."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from conftest import dense_spec

from evoae.errors import EvoaeError
from evoae.families import build_model
from evoae.hybrid import HybridModel
from evoae.objectives import OBJECTIVES, EvalSplit, make_objective
from evoae.objectives.probe import (
    AUROC,
    KNN,
    Mix,
    Probe,
    model_codes,
)
from evoae.training import fit

DENSE = dense_spec(input_dim=16, code_size=2, hidden=[[8, "relu"]], lr=0.01)


def blobs(n: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three well-separated classes in 16-D, values in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centres = torch.rand(3, 16, generator=g)
    x = (centres[y] + 0.05 * torch.randn(n, 16, generator=g)).clamp(0, 1)
    return x, y


@pytest.fixture(scope="module")
def trained():
    x, y = blobs()
    model = build_model(DENSE, seed=1)
    fit(model, x, epochs=15, batch_size=32, optimizer="adam", lr=0.01, seed=1)
    return model.eval(), x, y


def test_registered_and_parsed():
    for name in ("probe", "knn", "mix", "auroc"):
        assert name in OBJECTIVES
        assert make_objective(name).needs_labels
    mix = make_objective("mix:0.3")
    assert isinstance(mix, Mix) and mix.weight == 0.3
    assert make_objective("knn:7").k == 7
    assert make_objective("recon").name == "recon"
    assert make_objective(None).name == "recon"
    for bad in ("mix:2", "mix:x", "probe:3", "nope"):
        with pytest.raises(EvoaeError):
            make_objective(bad)


def test_picklable_and_config():
    mix = Mix(weight=0.25, max_rows=100, seed=3)
    back = pickle.loads(pickle.dumps(mix))
    assert (
        back.config()
        == mix.config()
        == {
            "name": "mix",
            "folds": 3,
            "max_rows": 100,
            "seed": 3,
            "weight": 0.25,
        }
    )


def test_an_objective_with_an_argument_is_one_class_and_one_registration():
    """``NAME:ARG`` reaches the class's own ``from_arg``; no table elsewhere names it."""
    from evoae import objectives
    from evoae.objectives import Reconstruction

    class Scaled(Reconstruction):
        name = "scaled"

        def __init__(self, factor: float = 1.0) -> None:
            self.factor = factor

        @classmethod
        def from_arg(cls, arg: str) -> Scaled:
            return cls(float(arg))

    objectives.register(Scaled)
    try:
        assert make_objective("scaled:2.5").factor == 2.5
        with pytest.raises(EvoaeError, match="bad argument 'x'"):
            make_objective("scaled:x")
    finally:
        objectives.OBJECTIVES.pop("scaled")
    with pytest.raises(EvoaeError, match="takes no argument"):
        make_objective("probe:3")


def test_missing_labels_refused(trained):
    model, x, _ = trained
    for obj in (Probe(), KNN(), Mix(), AUROC()):
        with pytest.raises(EvoaeError, match="needs labels"):
            obj.score(model, EvalSplit(x))


def test_float_labels_must_be_whole_numbers():
    ok = np.array([0.0, 1.0, 2.0] * 4)
    Probe().check_labels(ok)  # floats holding class ids are fine
    with pytest.raises(EvoaeError, match="non-integer values"):
        Probe().check_labels(ok + 0.5)
    with pytest.raises(EvoaeError, match="non-integer values"):
        KNN().check_labels(np.array([0.0, 1.0, np.nan] * 4))
    # A continuous target that data loading encoded as classes: one class per row.
    with pytest.raises(EvoaeError, match="not a continuous target"):
        Probe().check_labels(np.arange(200))


def test_scores_are_sane_and_seeded(trained):
    model, x, y = trained
    split = EvalSplit(x, y)
    p = Probe().score(model, split)
    assert p.fitness == pytest.approx(1 - p.terms["probe_accuracy"])
    assert p.terms["probe_accuracy"] > 0.9  # separable blobs
    assert Probe().score(model, split) == p  # deterministic
    k = KNN(k=3).score(model, split)
    assert k.terms["knn_accuracy"] > 0.9
    m = Mix(weight=0.5).score(model, split)
    assert m.fitness == pytest.approx(0.5 * m.terms["nmse"] + 0.5 * (1 - m.terms["probe_accuracy"]))
    assert 0 < m.terms["nmse"] < 1
    # shuffled labels: chance-level probe
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    assert Probe().score(model, EvalSplit(x, y[perm])).terms["probe_accuracy"] < 0.6


def test_row_cap_subsamples(trained):
    model, x, y = trained
    a = Probe(max_rows=60, seed=1).score(model, EvalSplit(x, y))
    assert 0 <= a.terms["probe_accuracy"] <= 1


def test_auroc_detects_anomalies(trained):
    model, x, _ = trained
    g = torch.Generator().manual_seed(5)
    odd = torch.rand(40, 16, generator=g)  # uniform noise: reconstructs badly
    xs = torch.cat([x, odd])
    ys = torch.cat([torch.zeros(len(x), dtype=torch.long), torch.ones(40, dtype=torch.long)])
    s = AUROC().score(model, EvalSplit(xs, ys))
    assert s.terms["auroc"] > 0.9 and s.fitness == pytest.approx(1 - s.terms["auroc"])
    with pytest.raises(EvoaeError, match="both"):
        AUROC().score(model, EvalSplit(x, torch.zeros(len(x), dtype=torch.long)))


def test_nonfinite_codes_give_inf(trained):
    _, x, y = trained
    model = build_model(DENSE, seed=0)
    with torch.no_grad():
        model.encoder[0].weight.fill_(float("nan"))
    assert math.isinf(Probe().score(model, EvalSplit(x, y)).fitness)


def test_codes_helper_handles_tuples():
    class Tup(torch.nn.Module):
        def encode(self, x):
            return x[:, :2], x[:, 2:]

    x = torch.rand(5, 4)
    assert torch.equal(model_codes(Tup(), x), x[:, :2])


@pytest.mark.parametrize("head", ["logistic", "knn"])
def test_hybrid_model_round_trip(trained, tmp_path, head):
    model, x, y = trained
    hm = HybridModel.fit(model, x[:200], y[:200].numpy(), head=head, k=3)
    assert hm.score(x[200:], y[200:].numpy()) > 0.9
    assert hm.transform(x[:5]).shape == (5, 2)
    hm.save(tmp_path / "h")
    assert not any(p.suffix in (".pkl", ".pickle") for p in (tmp_path / "h").rglob("*"))
    back = HybridModel.load(tmp_path / "h")
    np.testing.assert_array_equal(back.predict(x), hm.predict(x))
    np.testing.assert_array_equal(back.predict_proba(x), hm.predict_proba(x))
    np.testing.assert_array_equal(back.classes_, hm.classes_)


def test_hybrid_load_refuses_tampering(trained, tmp_path):
    model, x, y = trained
    HybridModel.fit(model, x, y.numpy()).save(tmp_path / "h")
    p = tmp_path / "h" / "head.safetensors"
    p.write_bytes(p.read_bytes()[:-1] + b"\x00")
    with pytest.raises(EvoaeError, match="digest"):
        HybridModel.load(tmp_path / "h")


def test_a_search_for_the_probe_still_reports_reconstruction_and_pca(tmp_path):
    """With an objective other than the model's loss, the final figures still hold the
    retrained model's validation loss and its ratio to PCA."""
    from conftest import TINY_SEARCH

    import evoae

    r = evoae.search("digits", out=tmp_path / "r", objective="mix:0.3", limit=300, **TINY_SEARCH)
    final = r.final
    assert math.isfinite(final["fitness"])
    assert final["val_loss"] is not None and final["val_loss"] > 0
    assert final["pca_ratio"] == pytest.approx(final["val_loss"] / final["pca_val_loss"])
