"""Never worse than PCA: the PCA-seeded candidate, the step floors, the final plateau and
the fallback (issue 14)."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from sklearn.decomposition import PCA

import evoae
from evoae.cli import main
from evoae.data import Dataset
from evoae.evolution import MicrobialGA, RandomSearch
from evoae.families.dense.space import DenseSpace, dense_preset
from evoae.models.pca import pca_basis, pca_val_loss
from evoae.runs.journal import Journal
from evoae.settings import SearchSettings
from evoae.training import SequentialEvaluator, Task, train_candidate
from evoae.training.budget import epochs_for, steps_per_epoch
from evoae.training.population import PopulationEvaluator

#: Small, fast searches (settings by flat name).
FAST = dict(
    strategy="microbial",
    population=4,
    generations=4,
    epochs=1,
    min_steps=0,
    final_min_steps=0,
    seed=1,
)


def _curved(n: int = 240, d: int = 12, seed: int = 0) -> np.ndarray:
    """Rows on a curved 2-d manifold in [0, 1]^d: PCA needs more than 2 components."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(-1, 1, size=(n, 2))
    feats = [np.sin(3 * t[:, 0]), np.cos(3 * t[:, 1]), t[:, 0] * t[:, 1], t[:, 0] ** 2]
    base = np.stack([feats[i % 4] * (1 + i / d) for i in range(d)], axis=1)
    x = base + 0.01 * rng.standard_normal((n, d))
    return ((x - x.min(0)) / (x.max(0) - x.min(0))).astype(np.float32)


def _linear(n: int = 300, d: int = 10, k: int = 2, seed: int = 0) -> np.ndarray:
    """A random k-dim subspace plus small noise."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k)) @ rng.standard_normal((k, d)) + 0.01 * rng.standard_normal(
        (n, d)
    )
    return ((x - x.min(0)) / (x.max(0) - x.min(0))).astype(np.float32)


def _data(x: np.ndarray) -> Dataset:
    return Dataset(x=x, y=None, name="<x>")


# ------------------------------------------------------------------ the PCA-seeded candidate


def test_pca_seeded_candidate_equals_sklearn_pca_before_training():
    x = _curved()
    train, val = x[:180], x[180:]
    space = DenseSpace(12, 3, pca_init=True)
    (seed,) = space.seed_genomes()
    spec = space.decode(seed)
    assert spec["init"] == "pca" and spec["hidden"] == []
    result, model = train_candidate(
        spec, torch.as_tensor(train), torch.as_tensor(val), epochs=0, seed=7
    )
    pca = PCA(n_components=3, svd_solver="full").fit(train.astype(np.float64))
    expected = float(np.mean((val - pca.inverse_transform(pca.transform(val))) ** 2))
    assert result.val_loss == pytest.approx(expected, rel=1e-5)
    assert pca_val_loss(train, val, 3) == pytest.approx(expected, rel=1e-9)
    # The codes span PCA's: same reconstruction from the same subspace.
    basis = pca_basis(train, 3)
    np.testing.assert_allclose(np.abs(basis.components), np.abs(pca.components_), atol=1e-6)


def test_the_pca_seed_is_off_when_asked_and_old_space_configs_are_unchanged():
    off = dense_preset("seed", 12, 2)
    assert off.seed_genomes() == [] and "pca_init" not in off.config()
    assert "init" not in off.decode(off.pca_genome())
    on = dense_preset("extended", 12, 2, pca_init=True)
    assert on.config()["pca_init"] is True
    assert DenseSpace.from_config(on.config()).seed_genomes() == on.seed_genomes()
    spec = on.decode(on.seed_genomes()[0])
    assert spec["init"] == "pca" and spec["optimizer"] == "adam" and spec["batch_size"] == 32
    assert "PCA init" in evoae.families.describe(spec)


def test_strategies_put_the_seed_first_and_draw_the_rest_as_unseeded():
    space = DenseSpace(12, 2, pca_init=True)
    plain, seeded = (
        MicrobialGA(space, seed=3, population=5),
        MicrobialGA(space, seed=3, population=5),
    )
    seeded.add_seeds(space.seed_genomes())
    a, b = plain.ask(), seeded.ask()
    assert b[0] == space.pca_genome() and b[1:] == a[1:]
    rs = RandomSearch(space, seed=3, batch=2)
    rs.add_seeds(space.seed_genomes())
    first = rs.ask()
    assert first[0] == space.pca_genome()
    rs.tell(first, [1.0, 2.0])
    assert space.pca_genome() not in rs.ask()


def test_every_evaluator_trains_the_pca_member_alike():
    x = _curved()
    space = DenseSpace(12, 2, pca_init=True)
    pca_spec = space.decode(space.pca_genome())
    other = space.decode(space.sample(np.random.default_rng(0)))
    tasks = [Task(pca_spec, 5, 2), Task(other, 6, 2)]
    seq = dict(SequentialEvaluator(x[:180], x[180:]).evaluate(tasks))
    pop = dict(PopulationEvaluator(x[:180], x[180:]).evaluate(tasks))
    assert seq[0].fitness == pytest.approx(pop[0].fitness, rel=1e-6)
    assert seq[0].fitness < 1.05 * pca_val_loss(x[:180], x[180:], 2)


# ------------------------------------------------------------------ budgets in steps


def test_min_steps_floor_in_epochs():
    assert steps_per_epoch(300, 32) == 10 and steps_per_epoch(5, 32) == 1
    assert epochs_for(2, 0, 300, 32) == 2
    assert epochs_for(2, 200, 300, 32) == 20
    assert epochs_for(2, 200, 100_000, 32) == 2


class _Recorder(SequentialEvaluator):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.epochs: list[tuple[int, int]] = []

    def evaluate(self, tasks):
        self.epochs += [(t.spec["batch_size"], t.epochs) for t in tasks]
        yield from super().evaluate(tasks)


def test_candidates_train_at_least_min_steps(tmp_path):
    x = _curved(200)
    # The search's split: 70% of 200 rows = 140 training rows.
    rec = _Recorder(x[:140], x[140:170])
    evoae.search(
        "<x>",
        data=_data(x),
        out=tmp_path / "r",
        evaluator=rec,
        code_size=2,
        preset="extended",
        **{**FAST, "min_steps": 60, "final_epochs": 1},
    )
    assert rec.epochs and all(
        e == max(1, math.ceil(60 / math.ceil(140 / b))) for b, e in rec.epochs
    )


def test_final_training_stops_on_a_plateau_and_keeps_the_best_weights():
    x = _curved()
    space = DenseSpace(12, 2, pca_init=True)
    spec = space.decode(space.pca_genome())
    tr, va = torch.as_tensor(x[:180]), torch.as_tensor(x[180:])
    r, _ = train_candidate(spec, tr, va, epochs=500, seed=1, patience=3, min_steps=20)
    assert r.epochs < 500 and r.epochs - r.best_epoch == 3
    # The initial (PCA) weights count: the kept model is never worse than PCA.
    assert r.val_loss <= pca_val_loss(x[:180], x[180:], 2) * (1 + 1e-5)


# ------------------------------------------------------------------ the guarantee


def test_a_search_on_linear_data_returns_pca_within_one_percent(tmp_path):
    x = _linear()
    r = evoae.search("<lin>", data=_data(x), out=tmp_path / "lin", code_size=2, **FAST)
    splits = r.settings.load_splits(_data(x))
    pca = pca_val_loss(splits.train.x, splits.val.x, 2)
    assert r.final["pca_val_loss"] == pytest.approx(pca)
    assert r.final["val_loss"] <= 1.01 * pca
    with Journal(tmp_path / "lin" / "journal.sqlite", readonly=True) as j:
        first = next(iter(j.rows()))
    assert first.spec.get("init") == "pca"


def test_the_fallback_engages_when_the_evolved_models_are_worse(tmp_path, capsys):
    x = _curved()
    out = tmp_path / "fb"
    # No PCA seed, no PCA-residual candidates, no linear activation, one short epoch:
    # every model is worse than PCA.
    r = evoae.search(
        "<x>",
        data=_data(x),
        out=out,
        code_size=2,
        pca_seed=False,
        residual=False,
        activations=["sigmoid", "relu"],
        final_epochs=1,
        final_patience=0,
        **FAST,
    )
    assert r.final["fallback"] == "pca" and "worse than PCA" in r.final["fallback_message"]
    assert r.final["searched_val_loss"] > r.final["pca_val_loss"]
    assert r.final["val_loss"] <= r.final["pca_val_loss"] * (1 + 1e-5)
    assert r.best_spec.get("init") == "pca"
    # The saved model is the returned one, and the run's files say so.
    model = evoae.load_model(out / "model")
    splits = r.settings.load_splits(_data(x))
    with torch.no_grad():
        recon = model.reconstruct(torch.as_tensor(splits.val.x))
    assert float(torch.mean((recon - torch.as_tensor(splits.val.x)) ** 2)) == pytest.approx(
        r.final["val_loss"], rel=1e-5
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"]["fallback"] == "pca"
    capsys.readouterr()
    assert main(["runs", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "PCA val loss" in shown and "ratio to PCA" in shown and "fallback" in shown


def test_the_estimator_reports_pca_and_never_loses_to_it():
    x = _linear(n=200, d=8).astype(np.float64) * 5 + 3
    ae = evoae.EvolvedAutoencoder(
        code_size=2,
        strategy="microbial",
        population=3,
        generations=2,
        epochs=1,
        min_steps=0,
        final_min_steps=50,
        final_epochs=5,
        random_state=0,
    ).fit(x)
    assert ae.pca_val_loss_ is not None and ae.final_["pca_ratio"] <= 1 + 1e-5
    if ae.fallback_:
        assert ae.history_[-1]["fallback"] == "pca"
    # On linear data the model is PCA of every row, like PCA(2).fit(x).
    assert ae.pca_refit_
    pca = PCA(2, svd_solver="full").fit((x - ae.data_min_) / ae.data_range_)
    ours = -ae.score(x)
    scaled = (x - ae.data_min_) / ae.data_range_
    recon = pca.inverse_transform(pca.transform(scaled)) * ae.data_range_ + ae.data_min_
    theirs = float(np.mean((x - recon) ** 2))
    assert ours == pytest.approx(theirs, rel=1e-4)


def test_a_vae_run_says_the_comparison_does_not_apply(tmp_path):
    from evoae.finish import _pca_figures

    figures = _pca_figures(None, 1.0, "negative ELBO, nats per image")
    assert figures["pca_val_loss"] is None and figures["pca_note"].startswith("n/a")


# ------------------------------------------------------------------ settings and resume


def test_runs_stored_before_the_new_settings_keep_their_behaviour():
    old = SearchSettings.of().to_dict()
    for section, names in {
        "space": ["pca_seed"],
        "training": ["min_steps", "final_min_steps", "final_patience", "pca_fallback"],
    }.items():
        for n in names:
            del old[section][n]
    s = SearchSettings.from_dict(old)
    t = s.training
    assert (s.space.pca_seed, t.min_steps, t.final_min_steps, t.final_patience, t.pca_fallback) == (
        False,
        0,
        0,
        0,
        False,
    )
    flat = SearchSettings.from_dict({"dataset": "digits", "epochs": 2})  # evoae 0.1
    assert flat.space.pca_seed is False and flat.training.min_steps == 0
    new = SearchSettings.of()
    assert new.space.pca_seed and new.training.pca_fallback and new.training.min_steps > 0


def test_cli_turns_the_pca_seed_off(tmp_path):
    out = tmp_path / "cli"
    args = [
        "search",
        "--limit",
        "200",
        "--strategy",
        "microbial",
        "--population",
        "3",
        "--generations",
        "1",
        "--epochs",
        "1",
    ]
    args += ["--min-steps", "0", "--final-epochs", "1", "--final-min-steps", "0"]
    assert main([*args, "--no-pca-seed", "--no-residual", "--out", str(out), "--quiet"]) == 0
    stored = json.loads((out / "settings.json").read_text())
    assert stored["space"]["pca_seed"] is False and stored["space"]["residual"] is False
    with Journal(out / "journal.sqlite", readonly=True) as j:
        assert all("init" not in r.spec for r in j.rows())


KILL_ARGS = [
    "--strategy", "microbial",
    "--dataset", "digits", "--limit", "300", "--population", "4", "--generations", "4",
    "--epochs", "1", "--min-steps", "30", "--final-epochs", "2", "--final-min-steps", "0",
    "--seed", "3",
]  # fmt: skip


def _journal(run: Path) -> list[dict]:
    with Journal(run / "journal.sqlite", readonly=True) as j:
        return [r.comparable() for r in j.rows()]


def test_a_killed_and_resumed_run_keeps_the_pca_candidate(tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert _cli(*KILL_ARGS, "--out", str(ref)).returncode == 0
    killed = _cli(*KILL_ARGS, "--out", str(run), kill="appended:2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert 0 < len(_journal(run)) < 8
    assert _cli("--resume", str(run)).returncode == 0
    rows = _journal(run)
    assert rows == _journal(ref)
    assert rows[0]["spec"].get("init") == "pca"
    a, b = (json.loads((p / "summary.json").read_text())["final"] for p in (ref, run))
    assert {k: v for k, v in a.items() if k != "seconds"} == {
        k: v for k, v in b.items() if k != "seconds"
    }


def _cli(*args: str, kill: str | None = None):
    return run_cli("search", *args, kill=kill, timeout=900)
