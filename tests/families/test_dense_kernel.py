"""The dense training kernel against the autograd reference (evoae.families.dense.kernel)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_SEARCH, dense_spec

import evoae
from evoae.families import build_model, training_kernel
from evoae.families.dense.kernel import dense_kernel
from evoae.settings import SearchSettings
from evoae.spaces import ACTIVATION_NAMES
from evoae.spaces.base import OPTIMIZERS
from evoae.training.optim import make_optimizer
from evoae.training.pbt import pbt_train
from evoae.training.rungs import train_rung
from evoae.training.trainer import fit, initial_state, train_candidate

pytestmark = pytest.mark.usefixtures("single_thread_torch")

EPOCHS = 4
RTOL = 1e-4


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """270 training rows (batch 32 leaves a short last batch) and the validation rows of
    the bundled digits, as flat float32."""
    splits = SearchSettings.of(dataset="digits").load_splits()
    x = torch.as_tensor(splits.train.x, dtype=torch.float32).reshape(len(splits.train), -1)
    v = torch.as_tensor(splits.val.x, dtype=torch.float32).reshape(len(splits.val), -1)
    return x[:270].contiguous(), v


def _spec(act: str, optimizer: str) -> dict:
    out = "softmax" if act == "softmax" else "sigmoid"
    lr = 0.05 if optimizer == "sgd" else 0.003
    return dense_spec(
        hidden=[[32, act], [16, act]],
        code_activation=act,
        output_activation=out,
        optimizer=optimizer,
        lr=lr,
    )


def _train(spec: dict, x: torch.Tensor, trainer: str, epochs: int = EPOCHS, init=None):
    model = build_model(spec, 7) if init is None else build_model(spec, 7, init=init)
    losses = fit(
        model,
        x,
        epochs=epochs,
        batch_size=int(spec["batch_size"]),
        optimizer=spec["optimizer"],
        lr=float(spec["lr"]),
        seed=11,
        trainer=trainer,
    )
    return losses, model


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("act", ACTIVATION_NAMES)
def test_kernel_matches_autograd_for_every_activation_and_optimizer(digits, act, optimizer):
    x, _ = digits
    spec = _spec(act, optimizer)
    probe = build_model(spec, 7)
    opt = make_optimizer(optimizer, probe.parameters(), 0.01)
    assert training_kernel(probe, opt, 32) is not None  # the kernel, not a fallback, runs
    ref, ref_model = _train(spec, x, "autograd")
    got, model = _train(spec, x, "kernel")
    assert len(got) == len(ref) == EPOCHS
    assert all(math.isfinite(v) for v in got)
    assert ref[-1] < ref[0]  # the models learn, so equal curves say something
    torch.testing.assert_close(torch.tensor(got), torch.tensor(ref), rtol=RTOL, atol=0)
    for (name, a), b in zip(
        model.state_dict().items(), ref_model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5, msg=name)


def test_sgd_kernel_weights_equal_autograd_bit_for_bit(digits):
    """The same aten backward formulas and the same update: equal weights; the loss is
    summed by a dot product instead of mse_loss's reduction (float32 rounding)."""
    x, _ = digits
    ref, a = _train(_spec("tanh", "sgd"), x, "autograd")
    got, b = _train(_spec("tanh", "sgd"), x, "kernel")
    torch.testing.assert_close(torch.tensor(got), torch.tensor(ref), rtol=1e-6, atol=0)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_a_diverging_training_stops_after_the_same_epoch(digits):
    x, _ = digits
    spec = _spec("relu", "sgd") | {"lr": 1e6, "output_activation": "linear"}
    ref, _ = _train(spec, x, "autograd", epochs=6)
    got, _ = _train(spec, x, "kernel", epochs=6)
    assert len(got) == len(ref) < 6 and not math.isfinite(got[-1])


def test_train_candidate_scores_the_kernel_model_like_autograd(digits):
    x, v = digits
    spec = _spec("elu", "adam")
    ref, _ = train_candidate(spec, x, v, epochs=3, seed=5, trainer="autograd")
    got, _ = train_candidate(spec, x, v, epochs=3, seed=5, trainer="kernel")
    assert got.status == ref.status == "ok"
    assert got.fitness == pytest.approx(ref.fitness, rel=RTOL)
    assert got.train_loss == pytest.approx(ref.train_loss, rel=RTOL)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_rungs_continue_under_the_kernel_and_across_trainers(digits, tmp_path, optimizer):
    """A kernel rung saved after 1 epoch and continued to 3 equals 3 kernel epochs in one
    go; a rung saved by autograd continues under the kernel (same optimizer state)."""
    x, v = digits
    spec = _spec("gelu", optimizer)
    whole, _ = train_rung(spec, x, v, epochs=3, seed=4, trainer="kernel")
    train_rung(spec, x, v, epochs=1, seed=4, save=tmp_path / "k", trainer="kernel")
    cont, _ = train_rung(spec, x, v, epochs=3, seed=4, resume=tmp_path / "k", trainer="kernel")
    assert cont.fitness == whole.fitness
    train_rung(spec, x, v, epochs=1, seed=4, save=tmp_path / "a", trainer="autograd")
    mixed, _ = train_rung(spec, x, v, epochs=3, seed=4, resume=tmp_path / "a", trainer="kernel")
    assert mixed.fitness == pytest.approx(whole.fitness, rel=RTOL)


def test_pbt_under_the_kernel_matches_autograd(digits):
    x, v = digits
    spec = _spec("relu", "adam")
    kw = dict(copies=3, epochs=4, ready=2, seed=2)
    ref = pbt_train(spec, x, v, trainer="autograd", **kw)
    got = pbt_train(spec, x, v, trainer="kernel", **kw)
    assert got.best == ref.best and got.hparams == ref.hparams
    assert got.val_loss == pytest.approx(ref.val_loss, rel=RTOL)


def test_unsupported_models_and_optimizers_fall_back_to_autograd(digits):
    x, _ = digits
    model = build_model(dense_spec(), 0)
    assert dense_kernel(model, make_optimizer("adam", model.parameters(), 1e-3), 32) is not None
    momentum = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    amsgrad = torch.optim.Adam(model.parameters(), lr=0.1, amsgrad=True)
    half = torch.optim.Adam(list(model.parameters())[:2], lr=0.1)
    for opt in (momentum, amsgrad, half):
        assert dense_kernel(model, opt, 32) is None
    conv = build_model(
        {
            "family": "conv-ae",
            "input_shape": [1, 8, 8],
            "code_size": 2,
            "blocks": [[6, 3, 2, "relu", False]],
            "dense": 7,
            "variational": False,
            "optimizer": "adam",
            "lr": 0.001,
            "batch_size": 32,
        },
        0,
    )
    assert training_kernel(conv, make_optimizer("adam", conv.parameters(), 1e-3), 32) is None
    # A fallback trains exactly as autograd does.
    spec = dense_spec(optimizer="sgd", lr=0.05)
    a, b = build_model(spec, 1), build_model(spec, 1)
    kw = dict(epochs=2, batch_size=32, optimizer="sgd", lr=0.05, seed=3)
    ref = fit(a, x, **kw, opt=torch.optim.SGD(a.parameters(), lr=0.05, momentum=0.5))
    got = fit(
        b, x, **kw, opt=torch.optim.SGD(b.parameters(), lr=0.05, momentum=0.5), trainer="kernel"
    )
    assert got == ref


def test_trainer_setting_defaults_to_kernel_and_stored_runs_read_as_autograd():
    assert SearchSettings().training.trainer == "kernel"
    stored = SearchSettings().to_dict()
    del stored["training"]["trainer"]
    assert SearchSettings.from_dict(stored).training.trainer == "autograd"
    with pytest.raises(evoae.EvoaeError):
        SearchSettings.of(trainer="jax").validate()


def test_a_seed_preset_search_finds_the_same_best_with_either_trainer(tmp_path):
    """The seed preset on digits: same genomes (seeds never depend on the trainer), the
    same best genome, its fitness and the final model's within float tolerance."""
    kw = dict(code_size=4, seed=0, preset="seed", executor="inline", **TINY_SEARCH)
    kw |= {"generations": 6, "epochs": 2, "final_epochs": 3}
    ref = evoae.search("digits", out=tmp_path / "autograd", trainer="autograd", **kw)
    got = evoae.search("digits", out=tmp_path / "kernel", trainer="kernel", **kw)
    assert got.settings.training.trainer == "kernel"
    assert got.best_genome == ref.best_genome
    assert got.best_fitness == pytest.approx(ref.best_fitness, rel=1e-3)
    assert got.final["val_loss"] == pytest.approx(ref.final["val_loss"], rel=1e-3)
    assert [h["best"] for h in got.history] == pytest.approx(
        [h["best"] for h in ref.history], rel=1e-3
    )


def test_kernel_benchmark_smoke_runs():
    """benchmarks/kernel.py --smoke: an API change that breaks the benchmark fails here."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    proc = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "kernel.py"), "--smoke"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()]
    assert {r[1] for r in rows if r and r[0] == "32"} == {
        "autograd",
        "autograd+fused",
        "kernel",
        "GEMMs",
    }


def _residual_spec(act: str, optimizer: str, hidden: int = 2) -> dict:
    lr = 0.05 if optimizer == "sgd" else 0.003
    return dense_spec(
        hidden=[[32, act], [16, act]][:hidden],
        init="pca-residual",
        code_activation="linear",
        output_activation="linear",
        optimizer=optimizer,
        lr=lr,
    )


def _train_residual(spec: dict, x: torch.Tensor, trainer: str, epochs: int = EPOCHS):
    return _train(spec, x, trainer, epochs, init=initial_state(spec, x))


@pytest.mark.parametrize(
    ("act", "optimizer", "hidden"),
    [(act, "adam", 2) for act in ACTIVATION_NAMES]
    + [("relu", opt, 2) for opt in OPTIMIZERS if opt != "adam"]
    + [("tanh", "adam", 1), ("linear", "sgd", 0)],
)
def test_kernel_matches_autograd_on_pca_residual_specs(digits, act, optimizer, hidden):
    """The linear path (code = P^T (x - mu) + e(x), output = mu + P z + d(z)) in the
    kernel: the same loss curve and weights (the path's included) as autograd."""
    x, _ = digits
    spec = _residual_spec(act, optimizer, hidden)
    probe = build_model(spec, 7)
    assert probe.residual
    opt = make_optimizer(optimizer, probe.parameters(), 0.01)
    assert training_kernel(probe, opt, 32) is not None  # the kernel, not a fallback, runs
    ref, ref_model = _train_residual(spec, x, "autograd")
    got, model = _train_residual(spec, x, "kernel")
    assert len(got) == len(ref) == EPOCHS
    assert all(math.isfinite(v) for v in got)
    # The models learn, so equal curves say something (without hidden layers the model
    # starts at PCA, the linear optimum: SGD only moves it around).
    assert ref[-1] < ref[0] or not hidden
    torch.testing.assert_close(torch.tensor(got), torch.tensor(ref), rtol=RTOL, atol=0)
    ref_state = ref_model.state_dict()
    assert list(model.state_dict()) == list(ref_state)
    assert {"lin_encoder_weight", "lin_decoder_bias"} <= set(ref_state)
    for name, a in model.state_dict().items():
        torch.testing.assert_close(a, ref_state[name], rtol=1e-3, atol=1e-5, msg=name)
    # The linear path moved away from PCA's start: the kernel trains it too.
    start = build_model(spec, 7, init=initial_state(spec, x)).state_dict()
    assert not torch.equal(model.state_dict()["lin_decoder_weight"], start["lin_decoder_weight"])


def test_pca_residual_sgd_kernel_weights_equal_autograd(digits):
    """SGD through the linear path: the same formulas, so the same weights to rounding
    (the code and output sums are the model's own additions, in its order)."""
    x, _ = digits
    spec = _residual_spec("tanh", "sgd")
    ref, a = _train_residual(spec, x, "autograd")
    got, b = _train_residual(spec, x, "kernel")
    torch.testing.assert_close(torch.tensor(got), torch.tensor(ref), rtol=1e-6, atol=0)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)


def test_a_residual_model_with_an_extra_parameter_falls_back_to_autograd(digits):
    """A parameter outside the layers and the linear path: the kernel would not train
    it, so it declines."""
    spec = _residual_spec("relu", "adam")
    model = build_model(spec, 0)
    model.extra = torch.nn.Parameter(torch.zeros(3))
    opt = make_optimizer("adam", model.parameters(), 1e-3)
    assert training_kernel(model, opt, 32) is None
