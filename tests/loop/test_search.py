"""End-to-end tests of evoae.search: artifacts, reload, determinism, cache, failures."""

from __future__ import annotations

import importlib
import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import RUN_FILES, TINY_SEARCH

import evoae
import evoae.training.evaluator as evaluator_mod
from evoae import evolution
from evoae.data import Dataset, load_dataset
from evoae.errors import EvoaeError
from evoae.families import space_from_config
from evoae.families.io import weights_equal
from evoae.runs.journal import Journal, Row
from evoae.settings import SearchSettings

pytestmark = pytest.mark.usefixtures("single_thread_torch")

#: A tiny budget: 4 initial candidates and 4 tournaments of one epoch each.
TINY = TINY_SEARCH
ARTIFACTS = RUN_FILES
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def journal_rows(run_dir: Path) -> list[Row]:
    with Journal(Path(run_dir) / "journal.sqlite") as j:
        return list(j.rows())


def comparable(run_dir: Path) -> list[dict]:
    return [r.comparable() for r in journal_rows(run_dir)]


def assert_complete_run(run_dir: Path) -> None:
    """Every artifact is there, the JSON files parse and the plots are PNG images."""
    for name in ARTIFACTS:
        path = Path(run_dir) / name
        assert path.is_file() and path.stat().st_size > 0, name
        if name.endswith(".json"):
            json.loads(path.read_text())
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == PNG_MAGIC, name


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory, single_thread_torch):
    """One tiny digits search shared by the tests that only read its results."""
    out = tmp_path_factory.mktemp("digits") / "run"
    return evoae.search("digits", out=out, code_size=4, seed=0, **TINY)


# ------------------------------------------------------------------ artifacts and reload


def test_search_writes_every_artifact(digits_run):
    assert_complete_run(digits_run.run_dir)


def test_saved_model_reloads_with_identical_outputs(digits_run):
    loaded = evoae.load_model(digits_run.run_dir / "model")
    assert weights_equal(loaded, digits_run.model)
    x = torch.as_tensor(load_dataset("digits", limit=50).x)
    digits_run.model.eval()
    assert torch.equal(loaded(x).recon, digits_run.model(x).recon)
    assert torch.equal(loaded.encode(x), digits_run.model.encode(x))
    # The model folder alone rebuilds the genome and its space.
    meta = json.loads((digits_run.run_dir / "model" / "model.json").read_text())
    space = space_from_config(meta["space"])
    assert meta["genome"] == digits_run.best_genome
    assert space.decode(space.from_json(meta["genome"])) == meta["spec"] == digits_run.best_spec


def test_run_files_agree_with_the_result(digits_run):
    run, r = digits_run.run_dir, digits_run
    assert r.n_evaluations == TINY["population"] + TINY["generations"]
    rows = journal_rows(run)
    assert [row.id for row in rows] == list(range(r.n_evaluations))
    assert r.n_trainings == sum(not row.cached for row in rows)
    best = min((row for row in rows if row.status == "ok"), key=lambda row: (row.fitness, row.id))
    assert r.best_fitness == best.fitness and r.best_genome == best.genome
    best_json = json.loads((run / "best_genome.json").read_text())
    assert best_json["genome"] == r.best_genome and best_json["spec"] == r.best_spec
    assert best_json["fitness"] == r.best_fitness and best_json["evaluation"] == best.id
    assert json.loads((run / "settings.json").read_text()) == asdict(r.settings)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_fitness"] == r.best_fitness
    assert summary["n_evaluations"] == r.n_evaluations
    assert summary["final"]["val_loss"] == r.final["val_loss"]
    assert math.isfinite(r.final["val_loss"]) and r.final["status"] == "ok"
    ckpt = json.loads((run / "checkpoint.json").read_text())
    assert ckpt["next_id"] == r.n_evaluations
    # One history row per told batch: the initial population, then each batch of
    # overlapped tournaments (each tournament's alone with overlap 1).
    assert 1 < len(r.history) <= 1 + TINY["generations"]
    assert r.history[-1]["evaluations"] == r.n_evaluations
    bests = [h["best"] for h in r.history]
    assert bests == sorted(bests, reverse=True) and bests[-1] == r.best_fitness


# ------------------------------------------------------------------ determinism


def test_same_seed_same_journal_and_model_different_seed_differs(tmp_path, digits_run):
    again = evoae.search("digits", out=tmp_path / "again", code_size=4, seed=0, **TINY)
    assert comparable(again.run_dir) == comparable(digits_run.run_dir)
    assert again.best_genome == digits_run.best_genome
    assert weights_equal(again.model, digits_run.model)
    other = evoae.search("digits", out=tmp_path / "other", code_size=4, seed=1, **TINY)
    assert comparable(other.run_dir) != comparable(digits_run.run_dir)
    genomes = [r["genome"] for r in comparable(other.run_dir)]
    assert genomes != [r["genome"] for r in comparable(digits_run.run_dir)]


# ------------------------------------------------------------------ phenotype cache


def test_identical_phenotypes_are_trained_once(tmp_path):
    # Crossover always copies the winner and nothing mutates: every offspring is a copy
    # of an already-trained phenotype.
    r = evoae.search(
        "digits", out=tmp_path / "r", recombination=1.0, mutation=0.0, **{**TINY, "generations": 6}
    )
    rows = journal_rows(r.run_dir)
    assert len(rows) == r.n_evaluations == 10
    first = {}
    for row in rows:
        key = json.dumps(row.spec, sort_keys=True)
        if row.cached:
            src = first[key]
            assert (row.fitness, row.val_loss, row.seed, row.status) == (
                src.fitness,
                src.val_loss,
                src.seed,
                src.status,
            )
            assert row.seconds == 0.0
        else:
            assert key not in first  # an uncached row is the first of its phenotype
            first[key] = row
    assert all(row.cached for row in rows[4:])
    assert r.n_trainings == len(first) <= 4 < r.n_evaluations


def test_duplicates_within_one_batch_are_trained_once(tmp_path):
    # A space with exactly one phenotype: all four initial genomes decode alike (no PCA
    # seed, which would be a second one).
    one = {"activations": ["relu"], "optimizers": ["adam"]}
    r = evoae.search(
        "digits", out=tmp_path / "r", max_depth=0, space_options=one, pca_seed=False, **TINY
    )
    rows = journal_rows(r.run_dir)
    assert r.n_trainings == 1 and r.n_evaluations == 8
    assert [row.cached for row in rows] == [False] + [True] * 7
    assert len({(row.fitness, row.seed) for row in rows}) == 1


def test_reevaluate_trains_every_evaluation_with_its_own_seed(tmp_path):
    one = {"activations": ["relu"], "optimizers": ["adam"]}
    r = evoae.search(
        "digits", out=tmp_path / "r", max_depth=0, space_options=one, reevaluate=True, **TINY
    )
    rows = journal_rows(r.run_dir)
    # Each tournament asks for two parents and one offspring.
    assert r.n_evaluations == len(rows) == 4 + 3 * 4
    assert r.n_trainings == r.n_evaluations
    assert not any(row.cached for row in rows)
    assert len({row.seed for row in rows}) == len(rows)
    assert len({row.fitness for row in rows}) > 1  # same phenotype, different seeds


def test_reevaluate_journals_the_parents_then_the_offspring(tmp_path):
    r = evoae.search("digits", out=tmp_path / "r", reevaluate=True, seed=3, **TINY)
    rows = journal_rows(r.run_dir)
    population = [row.genome for row in rows[:4]]
    for t, start in enumerate(range(4, len(rows), 3)):
        pa, pb, child = rows[start : start + 3]
        assert pa.genome in population and pb.genome in population
        assert pa.generation == pb.generation == child.generation == t
        # The fresh fitness decides; a wins ties; the loser's slot takes the offspring.
        loser = pb if pa.fitness <= pb.fitness else pa
        population[population.index(loser.genome)] = child.genome
    assert start == len(rows) - 3


# ------------------------------------------------------------------ failures


def diverge_when(monkeypatch, predicate) -> None:
    """Candidates whose spec matches ``predicate`` really train, with an infinite SGD step.

    The parameters turn non-finite after the first step, as any diverging run's do.
    Patched where a plain task trains: the searches that use it pass
    ``final_continue=False`` (a task saving its state for the final stage trains
    through :mod:`evoae.training.rungs`).
    """
    real = evaluator_mod.train_candidate

    def train(spec, *args, **kwargs):
        if predicate(spec):
            spec = {**spec, "optimizer": "sgd", "lr": math.inf}
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(evaluator_mod, "train_candidate", train)


def test_diverging_candidates_are_failed_rows_and_the_search_goes_on(tmp_path, monkeypatch):
    diverge_when(monkeypatch, lambda spec: spec["optimizer"] == "sgd")
    r = evoae.search(
        "digits", out=tmp_path / "r", seed=0, final_continue=False, **{**TINY, "generations": 6}
    )
    rows = journal_rows(r.run_dir)
    failed = [row for row in rows if row.status == "failed"]
    ok = [row for row in rows if row.status == "ok"]
    assert failed and ok and len(rows) == r.n_evaluations == 10
    for row in failed:
        assert row.spec["optimizer"] == "sgd"
        assert row.fitness == math.inf and row.val_loss is None and row.error
    assert all(row.spec["optimizer"] == "adam" and math.isfinite(row.fitness) for row in ok)
    assert r.best_spec["optimizer"] == "adam" and math.isfinite(r.best_fitness)
    assert_complete_run(r.run_dir)
    # The checkpoint stays strict JSON although the population holds infinite fitness.
    json.loads((r.run_dir / "checkpoint.json").read_text(), parse_constant=_no_constants)


def _no_constants(name: str):
    raise AssertionError(f"non-standard JSON constant {name} in a run file")


def test_run_files_stay_strict_json_when_the_first_population_fails(tmp_path, monkeypatch):
    trained = []
    diverge_when(monkeypatch, lambda spec: trained.append(spec) or len(trained) <= 4)
    r = evoae.search("digits", out=tmp_path / "r", final_continue=False, **TINY)
    assert math.isfinite(r.best_fitness)
    for name in ("checkpoint.json", "summary.json", "best_genome.json", "settings.json"):
        json.loads((r.run_dir / name).read_text(), parse_constant=_no_constants)


def test_a_diverging_final_training_never_saves_a_broken_model(tmp_path, monkeypatch):
    # evoae.search (the attribute) is the function; the module lives in sys.modules.
    search_mod = importlib.import_module("evoae.finish")
    real = search_mod.train_candidate

    def final_diverges(spec, *args, **kwargs):
        return real({**spec, "optimizer": "sgd", "lr": math.inf}, *args, **kwargs)

    monkeypatch.setattr(search_mod, "train_candidate", final_diverges)
    try:
        evoae.search("digits", out=tmp_path / "r", **TINY)
    except EvoaeError:
        return  # refusing is fine
    model = evoae.load_model(tmp_path / "r" / "model")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_search_where_every_candidate_fails_says_so(tmp_path, monkeypatch):
    diverge_when(monkeypatch, lambda spec: True)
    with pytest.raises(EvoaeError, match="every candidate failed") as info:
        evoae.search("digits", out=tmp_path / "r", final_continue=False, **TINY)
    assert "\n" not in str(info.value)
    assert all(row.status == "failed" for row in journal_rows(tmp_path / "r"))


# ------------------------------------------------------------------ other inputs


def test_concurrent_tournaments_spend_the_same_budget(tmp_path):
    r = evoae.search("digits", out=tmp_path / "r", concurrent=2, **{**TINY, "generations": 5})
    assert r.n_evaluations == 4 + 5
    assert [h["generation"] for h in r.history] == [0, 2, 4, 5]
    assert_complete_run(r.run_dir)


def test_extended_preset_evolves_learning_rate_and_batch_size(tmp_path):
    r = evoae.search("digits", out=tmp_path / "r", preset="extended", seed=1, **TINY)
    specs = [row.spec for row in journal_rows(r.run_dir)]
    assert len({s["lr"] for s in specs}) > 1
    assert {s["batch_size"] for s in specs} <= {16, 32, 64, 128}
    assert all(1e-4 <= s["lr"] <= 1e-1 for s in specs)
    assert len(r.best_genome) == 4 + 3 + 2
    assert_complete_run(r.run_dir)


def test_in_memory_tabular_data(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(120, 12)).astype(np.float32)
    r = evoae.search(
        "table", data=Dataset(x, None, "table"), out=tmp_path / "r", code_size=3, **TINY
    )
    assert r.best_spec["input_dim"] == 12 and r.best_spec["code_size"] == 3
    assert_complete_run(r.run_dir)
    loaded = evoae.load_model(r.run_dir / "model")
    assert torch.equal(loaded(torch.as_tensor(x)).recon, r.model(torch.as_tensor(x)).recon)


# ------------------------------------------------------------------ settings


def test_default_settings_are_valid_and_json_able():
    s = SearchSettings()
    s.validate()
    assert s.strategy.name == "aging"
    assert json.loads(json.dumps(asdict(s))) == asdict(s)
    # A run stores its strategy's options in full (absent ones read as their legacy
    # values, what runs stored before the option existed had): so does this copy.
    s.strategy.options = asdict(evolution.make_options("aging", {}))
    assert SearchSettings.from_dict(json.loads(json.dumps(asdict(s)))) == s
    # evoae 0.1 stored settings flat; they still read (unknown names ignored).
    flat = {"dataset": "digits", "code_size": 3, "population": 8, "not_a_setting": 1}
    old = SearchSettings.from_dict(flat)
    # Options whose default changed since read as their legacy values (one at a time).
    legacy = {"population": 8, "overlap": 1, "inherit": False}
    assert (old.space.code_size, old.strategy.options) == (3, legacy)
    assert old.strategy.name == "microbial"  # what evoae 0.1 searched with
    assert (s.data.dataset, s.space.code_size, s.strategy.name) == ("digits", 4, "aging")


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("population", 0, "population"),
        ("epochs", 0, "epochs"),
        ("deme", 0, "deme"),
        ("concurrent", 0, "concurrent"),
        ("generations", -1, "generations"),
        ("final_epochs", -1, "final epochs"),
        ("code_size", 0, "code size"),
        ("limit", 0, "limit"),
        ("image_size", 0, "image size"),
        ("split", "half", "split"),
        ("model", "transformer", "model"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_written(tmp_path, field, value, fragment):
    with pytest.raises(EvoaeError) as info:
        SearchSettings.of(**{field: value}).validate()
    assert fragment in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(EvoaeError):
        evoae.search("digits", out=tmp_path / "r", **{field: value})
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"populaton": 4}, "populaton"),
        ({"code_size": 64}, "code size"),
        ({"preset": "huge"}, "preset"),
        ({"population": 4, "concurrent": 3}, "concurrent"),
        ({"recombination": 2.0}, "recombination"),
        ({"device": "tpu"}, "device"),
        ({"space_options": {"activation": ["relu"]}}, "dense space option"),
        ({"space_options": {"activations": ["swish"]}}, "swish"),
    ],
)
def test_inconsistent_settings_are_refused_before_anything_is_written(tmp_path, settings, fragment):
    with pytest.raises(EvoaeError) as info:
        evoae.search("digits", out=tmp_path / "r", **settings)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "r").exists()
