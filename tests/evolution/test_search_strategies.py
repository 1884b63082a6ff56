"""Aging evolution, Optuna (tpe) and NSGA-II: behaviour, exact resume, the Pareto front."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import start_cli

from evoae.cli import main
from evoae.errors import EvoaeError
from evoae.evolution import make_strategy
from evoae.evolution.nsga2 import crowding, nondominated_sort
from evoae.families.conv.space import ConvSpace
from evoae.families.dense.space import DenseSpace, dense_preset
from evoae.finish import front_member, retrain_row
from evoae.runs import folder as rf
from evoae.runs.journal import Journal
from evoae.runs.reader import pareto_front, read_run
from evoae.spaces import Choice, Float, Int, Parts

COMMON = ["--dataset", "digits", "--limit", "300", "--epochs", "1", "--final-epochs", "1"]
#: strategy -> its options for a small run (batches of 2: a kill can split a batch).
SMALL = {
    "aging": ["--evaluations", "8", "--batch", "2", "--population", "4", "--sample", "2"],
    "tpe": ["--evaluations", "8", "--batch", "2"],
    "nsga2": ["--evaluations", "8", "--batch", "2", "--population", "4"],
}


def _fake_fitness(genome) -> float:
    """A cheap deterministic score of a dense genome (no training)."""
    return float(sum(r for r, _ in genome[:3])) + 0.1 * len(str(genome))


def _drive(strategy, steps: int) -> list:
    asked = []
    for _ in range(steps):
        if strategy.done:
            break
        genomes = strategy.ask()
        asked.append(genomes)
        values = [_fake_fitness(g) for g in genomes]
        if strategy.objectives == ("fitness", "params"):
            values = [(v, float(len(str(g)))) for v, g in zip(values, genomes, strict=True)]
        strategy.tell(genomes, values)
    return asked


# ------------------------------------------------------------------ aging evolution


def test_aging_evolution_retires_the_oldest_however_fit():
    space = DenseSpace(64, 4)
    opts = {"population": 4, "sample": 2, "evaluations": 20, "batch": 1}
    s = make_strategy("aging", space, opts, seed=1)
    init = s.ask()
    assert len(init) == 1  # batch 1: the initial population a candidate at a time
    s.tell(init, [0.0])  # the oldest member is the fittest possible
    for _ in range(3):
        g = s.ask()
        s.tell(g, [1.0])
    assert s.population[0] == init[0] and len(s.population) == 4
    child = s.ask()
    s.tell(child, [2.0])
    assert init[0] not in s.population and len(s.population) == 4
    assert s.population[-1] == child[0] and s.fitness[-1] == 2.0


def test_aging_children_come_from_the_sample_winner_and_always_change():
    space = DenseSpace(64, 4)
    s = make_strategy(
        "aging",
        space,
        {
            "population": 3,
            "sample": 3,
            "evaluations": 30,
            "batch": 3,
            "mutation": 0.0,
            "morph": False,
        },
        seed=2,
    )
    init = s.ask()
    s.tell(init, [3.0, 1.0, 2.0])
    children = s.ask()
    assert len(children) == 3
    for c in children:  # S = P: the winner is always member 1; exactly one gene differs
        assert sum(a != b for a, b in zip(c, init[1], strict=True)) == 1
    with pytest.raises(EvoaeError, match="sample"):
        make_strategy("aging", space, {"population": 3, "sample": 4})


# ------------------------------------------------------------------ NSGA-II


def test_nondominated_sort_and_crowding():
    pts = [(1.0, 5.0), (2.0, 2.0), (5.0, 1.0), (3.0, 3.0), (math.inf, math.inf)]
    assert nondominated_sort(pts) == [[0, 1, 2], [3], [4]]
    d = crowding(pts, [0, 1, 2])
    assert d[0] == d[2] == math.inf and 0 < d[1] < math.inf
    assert crowding(pts, [4]) == {4: 0.0}


def test_nsga2_survivors_are_the_best_fronts():
    space = DenseSpace(64, 4)
    s = make_strategy("nsga2", space, {"population": 4, "batch": 4, "evaluations": 8}, seed=0)
    init = s.ask()
    s.tell(init, [(1.0, 4.0), (2.0, 3.0), (3.0, 3.5), (4.0, 1.0)])
    kids = s.ask()
    s.tell(kids, [(0.5, 0.5), (9.0, 9.0), (8.0, 9.0), (9.0, 8.0)])
    # (0.5, 0.5) dominates everything; then the old front minus the dominated (3, 3.5).
    assert set(s.values) == {(0.5, 0.5), (1.0, 4.0), (2.0, 3.0), (4.0, 1.0)}


# ------------------------------------------------------------------ Optuna


def test_tpe_state_round_trip_asks_exactly_what_an_unbroken_run_asks():
    pytest.importorskip("optuna")
    space = dense_preset("extended", 64, 4)  # floats, log-floats, categoricals, tuples
    opts = {"evaluations": 16, "batch": 2}
    a = make_strategy("tpe", space, opts, seed=7)
    unbroken = _drive(a, 8)
    b = make_strategy("tpe", space, opts, seed=7)
    first = _drive(b, 4)
    state = json.loads(json.dumps(b.state_dict()))
    c = make_strategy("tpe", space, opts, seed=7)
    c.load_state_dict(state)
    assert first + _drive(c, 4) == unbroken
    assert c.done and len({g for batch in unbroken for g in batch}) == 16


def test_multivariate_tpe_is_the_default_and_independent_tpe_an_option():
    pytest.importorskip("optuna")
    space = dense_preset("extended", 64, 4)
    opts = {"evaluations": 30, "batch": 2}
    mv = make_strategy("tpe", space, opts, seed=7)
    assert mv._sampler_kwargs() == {"multivariate": True}
    uni = make_strategy("tpe", space, {**opts, "multivariate": False}, seed=7)
    assert uni._sampler_kwargs() == {"multivariate": False}
    a, b = _drive(mv, 15), _drive(uni, 15)
    assert a[:5] == b[:5]  # the startup trials are random either way
    assert a[-3:] != b[-3:]  # past them the samplers differ
    c = make_strategy("tpe", space, {**opts, "multivariate": False}, seed=7)
    first = _drive(c, 7)
    d = make_strategy("tpe", space, {**opts, "multivariate": False}, seed=7)
    d.load_state_dict(json.loads(json.dumps(c.state_dict())))
    assert first + _drive(d, 8) == b  # exact resume
    with pytest.raises(EvoaeError, match="TPESampler"):
        make_strategy("tpe", space, {"optuna_sampler": "RandomSampler", "multivariate": False})


@pytest.mark.parametrize("sampler", ["RandomSampler", "NSGAIISampler", "QMCSampler"])
def test_other_optuna_samplers_by_name(sampler):
    pytest.importorskip("optuna")
    s = make_strategy(
        "tpe", DenseSpace(64, 4), {"optuna_sampler": sampler, "evaluations": 6}, seed=1
    )
    assert len([g for b in _drive(s, 6) for g in b]) == 6
    with pytest.raises(EvoaeError, match="unknown Optuna sampler"):
        make_strategy("tpe", DenseSpace(64, 4), {"optuna_sampler": "Nope"})


@pytest.mark.parametrize(
    "sampler", ["GridSampler", "BaseSampler", "PartialFixedSampler", "BruteForceSampler"]
)
def test_samplers_that_need_more_than_a_seed_are_refused_by_name(sampler):
    # They raised TypeError when built, or ValueError at the first float gene.
    pytest.importorskip("optuna")
    with pytest.raises(EvoaeError, match="unknown Optuna sampler"):
        make_strategy("tpe", DenseSpace(64, 4), {"optuna_sampler": sampler})


def test_a_sampler_whose_package_is_missing_is_refused_before_it_samples(monkeypatch):
    # CmaEsSampler imports cmaes lazily: without it, the second trial raised a traceback.
    pytest.importorskip("optuna")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "cmaes" else real(name, *a)
    )
    with pytest.raises(EvoaeError, match="CmaEsSampler needs cmaes"):
        make_strategy("tpe", DenseSpace(64, 4), {"optuna_sampler": "CmaEsSampler"})


# ------------------------------------------------------------------ spaces


def test_every_gene_of_the_built_in_spaces_declares_its_domain():
    rng = np.random.default_rng(0)
    for space in (
        dense_preset("extended", 64, 4, max_ratio=2.0),
        ConvSpace((1, 16, 16), 4, batch_gene=True),
    ):
        for gene in space.genes:
            assert gene.domain is not None, gene.name
            parts = gene.domain.parts if isinstance(gene.domain, Parts) else (gene.domain,)
            for _ in range(20):
                value = gene.sample(rng)
                values = value if isinstance(gene.domain, Parts) else (value,)
                for dom, v in zip(parts, values, strict=True):
                    if isinstance(dom, Choice):
                        assert v in dom.options
                    else:
                        assert isinstance(dom, Float | Int) and dom.low <= v <= dom.high


def test_max_ratio_allows_overcomplete_layers_and_keeps_the_seed_space():
    assert "max_ratio" not in DenseSpace(256, 4).config()
    wide = DenseSpace(256, 4, max_ratio=2.0)
    genome = ((2.0, "relu"), (0.5, "relu"), (0.5, "relu"), "linear", "sigmoid", "adam")
    assert [w for w, _ in wide.decode(genome)["hidden"]] == [512, 256, 128]
    capped = ((1.9, "relu"), (1.9, "relu"), (0.1, "relu"), "linear", "sigmoid", "adam")
    assert [w for w, _ in wide.decode(capped)["hidden"]] == [486, 512, 51]
    assert DenseSpace.from_config(wide.config()).config() == wide.config()
    with pytest.raises(EvoaeError, match="max ratio"):
        DenseSpace(256, 4, max_ratio=0.0)


# ------------------------------------------------------------------ kill and resume


def _rows(run: Path) -> list[dict]:
    with Journal(run / rf.JOURNAL, readonly=True) as j:
        return [r.comparable() for r in j.rows()]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_sigkill_then_resume_gives_the_uninterrupted_journal(tmp_path, name):
    if name == "tpe":
        pytest.importorskip("optuna")
    args = [*COMMON, "--strategy", name, *SMALL[name], "--seed", "3"]
    ref = _cli(*args, "--out", str(tmp_path / "ref"))
    killed = _cli(*args, "--out", str(tmp_path / "run"), kill="appended:3")
    _, err = killed.communicate(timeout=900)
    assert killed.returncode == -signal.SIGKILL, err
    assert 0 < len(_rows(tmp_path / "run")) < 8
    resumed = _cli("--resume", str(tmp_path / "run"))
    for proc in (ref, resumed):
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err
    assert _rows(tmp_path / "run") == _rows(tmp_path / "ref")
    assert len(_rows(tmp_path / "ref")) == 8
    best = (tmp_path / "ref" / rf.BEST_GENOME).read_bytes()
    assert (tmp_path / "run" / rf.BEST_GENOME).read_bytes() == best


# ------------------------------------------------------------------ the Pareto front


def test_nsga2_front_is_shown_and_any_member_exported(tmp_path, capsys):
    run = tmp_path / "mo"
    # --no-final-continue: the run's model is then a from-scratch retraining, which
    # export --pick repeats exactly (the search's saved states are gone by then).
    argv = ["search", *COMMON, "--strategy", "nsga2", *SMALL["nsga2"], "--no-pca-fallback"]
    code = main([*argv, "--no-final-continue", "--out", str(run)])
    assert code == 0
    view = read_run(run)
    front = pareto_front(view.rows)
    assert front and [r.params for r in front] == sorted(r.params for r in front)
    assert all(a.fitness > b.fitness for a, b in zip(front, front[1:], strict=False))
    for r in view.rows:  # nothing trained beats a member in both objectives
        assert not any(r.fitness < f.fitness and r.params < f.params for f in front)
    capsys.readouterr()
    assert main(["runs", "show", str(run)]) == 0
    assert "Pareto front" in capsys.readouterr().out
    assert main(["runs", "show", str(run), "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)["front"]] == [r.id for r in front]
    # The last member is the fittest (the journal's best).
    n, fittest = front_member(run, pick=len(front))
    assert n == len(front) and fittest.fitness == min(r.fitness for r in view.rows)
    # Retraining the row the run returned reproduces the run's model.
    summary = json.loads((run / rf.SUMMARY).read_text())
    row = next(r for r in view.rows if r.genome == summary["best_genome"] and not r.cached)
    model_dir = retrain_row(run, row, tmp_path / "again")
    metrics = json.loads((model_dir / "model.json").read_text())["metrics"]
    assert metrics["val_loss"] == summary["final"]["val_loss"]
    assert front_member(run, max_params=front[0].params) == (1, front[0])
    code = main(["export", str(run), "--pick", "1", "--format", "safetensors", "--part", "encoder"])
    assert code == 0
    assert (run / "front" / "1" / "model" / "model.safetensors").is_file()
    assert list((run / "front" / "1" / "export").glob("*.safetensors"))
    capsys.readouterr()
    assert main(["export", str(run), "--pick", "99", "--format", "safetensors"]) != 0
    assert "outside the run's front" in capsys.readouterr().err


# ------------------------------------------------------------------ seed genomes


@pytest.mark.parametrize("name", ["aging", "tpe", "nsga2", "random", "microbial"])
def test_every_strategy_asks_for_the_seed_genomes_first(name):
    space = dense_preset("seed", 64, 4, pca_init=True)
    seeds = space.seed_genomes()
    assert seeds, "the dense space offers the PCA seed"
    opts = {
        "aging": {"evaluations": 6, "population": 4, "sample": 2},
        "tpe": {"evaluations": 6},
        "nsga2": {"evaluations": 6, "population": 4},
        "random": {"evaluations": 6},
        "microbial": {"population": 4, "generations": 2},
    }[name]
    strategy = make_strategy(name, space, opts, seed=3)
    strategy.add_seeds(seeds)
    first = strategy.ask()
    assert first[: len(seeds)] == seeds
    assert all(space.decode(g).get("init") is None for g in first[len(seeds) :])
    # Without seeds the same strategy asks the same batch, less the seed.
    plain = make_strategy(name, space, opts, seed=3).ask()
    assert first[len(seeds) :] == plain[len(seeds) :]


def test_nsga2_copies_of_one_point_do_not_crowd_out_the_others():
    space = DenseSpace(64, 4)
    s = make_strategy("nsga2", space, {"population": 4, "evaluations": 20}, seed=0)
    rng = np.random.default_rng(0)
    genomes = [space.sample(rng) for _ in range(8)]
    # Five copies of a point that dominates everything, and three distinct others.
    s.population = genomes
    s.values = [(0.01, 100.0)] * 5 + [(0.02, 50.0), (0.03, 20.0), (0.05, 10.0)]
    s.survive()
    assert sorted(s.values) == [(0.01, 100.0), (0.02, 50.0), (0.03, 20.0), (0.05, 10.0)]
    # Copies still fill places that distinct points cannot.
    s.population = genomes[:6]
    s.values = [(0.01, 100.0)] * 5 + [(0.02, 50.0)]
    s.survive()
    assert sorted(s.values) == [(0.01, 100.0)] * 3 + [(0.02, 50.0)]


def _cli(*args: str, kill: str | None = None):
    return start_cli("search", *args, kill=kill)
