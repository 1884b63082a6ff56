"""ASHA in the search loop: rung rows, continued trainings, kill and resume, bad states."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from conftest import dense_spec, start_cli

import evoae
from evoae.cli import main
from evoae.errors import EvoaeError
from evoae.evolution import make_strategy
from evoae.evolution.asha import Asha
from evoae.families.dense.space import DenseSpace
from evoae.runs import folder as rf
from evoae.runs.journal import Journal
from evoae.settings import SearchSettings
from evoae.training import Task, train_candidate
from evoae.training.evaluator import train_task
from evoae.training.rungs import BadState, load_rung, train_rung

#: Rungs of 1, 2 and 4 epochs (the best half goes on), a 12-epoch budget.
ASHA = dict(fidelity="asha", min_epochs=1, eta=2, max_epochs=4, evaluations=12)
SMALL = dict(limit=300, epochs=1, final_epochs=1, final_min_steps=0, strategy="random")
CLI = [
    *("--dataset", "digits", "--limit", "300", "--epochs", "1", "--final-epochs", "1"),
    *("--strategy", "random", "--evaluations", "12", "--fidelity", "asha"),
    *("--min-epochs", "1", "--eta", "2", "--max-epochs", "4", "--seed", "5"),
]


def _rows(run: Path) -> list[dict]:
    with Journal(run / rf.JOURNAL, readonly=True) as j:
        return [r.comparable() for r in j.rows()]


def _cost(rows: list[dict]) -> int:
    """Epochs trained: a promotion costs only what it adds to its previous rung."""
    rungs = [1, 2, 4]
    return sum(
        int(r["terms"]["epochs"])
        - (rungs[int(r["terms"]["rung"]) - 1] if r["terms"]["rung"] else 0)
        for r in rows
    )


def test_asha_journals_every_rung_reproducibly_and_continues_promotions(tmp_path):
    a = evoae.search("digits", out=tmp_path / "a", seed=1, **SMALL, **ASHA)
    b = evoae.search("digits", out=tmp_path / "b", seed=1, **SMALL, **ASHA)
    rows = _rows(tmp_path / "a")
    assert rows == _rows(tmp_path / "b") and a.best_fitness == b.best_fitness
    rungs = [int(r["terms"]["rung"]) for r in rows]
    assert {int(r["terms"]["epochs"]) for r in rows} == {1, 2, 4} and set(rungs) == {0, 1, 2}
    assert _cost(rows) == 12  # the budget: the random search's 12 evaluations x 1 epoch
    # A row's learning curve holds the epochs it trained: a promotion, those it added.
    with Journal(tmp_path / "a" / rf.JOURNAL, readonly=True) as j:
        curves = j.curves("search")
    with Journal(tmp_path / "b" / rf.JOURNAL, readonly=True) as j:
        assert j.curves("search") == curves
    for i, r in enumerate(rows):
        if r["cached"]:
            continue
        rung = int(r["terms"]["rung"])
        done = [1, 2, 4][rung - 1] if rung else 0
        epochs = list(range(done + 1, int(r["terms"]["epochs"]) + 1))
        assert [e for e, _, _ in curves[i]] == epochs
        assert curves[i][-1][2] == r["val_loss"]
    # A promotion trains with its candidate's seed: rows of one spec share it.
    first = {}
    for r in rows:
        first.setdefault(json.dumps(r["spec"], sort_keys=True), r)
    for r in rows:
        assert r["seed"] == first[json.dumps(r["spec"], sort_keys=True)]["seed"]
    # The best is the best at the highest rung, and states/ is empty once the search is done.
    top = [r for r in rows if r["terms"]["rung"] == 2]
    assert a.best_fitness == min(r["fitness"] for r in top)
    assert list((tmp_path / "a" / rf.STATES_DIR).iterdir()) == []
    assert rf.STATES_DIR in json.loads((tmp_path / "a" / "evoae-run.json").read_text())["files"]
    # A continued candidate equals one trained from scratch to its total epochs.
    s = SearchSettings.from_dict(json.loads((tmp_path / "a" / rf.SETTINGS).read_text()))
    splits = s.load_splits()
    promoted = next(r for r in rows if r["terms"]["rung"] == 2)
    direct, _ = train_candidate(
        promoted["spec"], splits.train, splits.val, epochs=4, seed=promoted["seed"]
    )
    assert direct.fitness == promoted["fitness"]


def test_asha_around_a_batched_strategy_spends_its_budget(tmp_path):
    pytest.importorskip("optuna")
    evoae.search("digits", out=tmp_path / "t", **{**SMALL, "strategy": "tpe"}, **ASHA, batch=2)
    rows = _rows(tmp_path / "t")
    assert 12 <= _cost(rows) <= 13  # a last batch of two new candidates may pass it by one
    assert any(r["terms"]["rung"] > 0 for r in rows)


def test_asha_strategy_state_round_trips_and_prunes_hopeless_states():
    space = DenseSpace(64, 4)
    inner = make_strategy("random", space, {"evaluations": 10}, seed=0)
    a = Asha.around(inner, seed=0, epochs=1, min_epochs=1, eta=2, max_epochs=4)
    asked = []
    next_id = 0
    for _ in range(4):
        genomes = a.ask()
        plans = a.plan(genomes, next_id)
        asked.append((genomes, plans))
        a.tell(genomes, [float(next_id + i) for i in range(len(genomes))])
        next_id += len(genomes)
    b = Asha.around(
        make_strategy("random", space, {"evaluations": 10}, seed=0),
        seed=0,
        epochs=1,
        min_epochs=1,
        eta=2,
        max_epochs=4,
    )
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.ask() == a.ask()
    assert b.plan([], next_id) == a.plan([], next_id)
    # Promotions continue the row of the candidate's previous rung.
    promotions = [p for _, plans in asked for p in plans if p.rung > 0]
    assert promotions and all(p.resume is not None for p in promotions)
    assert a.live_states() <= set(range(next_id))


def test_kill_after_a_promotion_saved_its_state_then_resume(tmp_path):
    """Killed once a promotion saved its state but before its row was journaled; resumed
    as is, and resumed with its source state corrupted (trained from scratch instead):
    both give the uninterrupted journal."""
    ref = _cli(*CLI, "--out", str(tmp_path / "ref"))
    _, err = ref.communicate(timeout=600)
    assert ref.returncode == 0, err
    expected = _rows(tmp_path / "ref")
    k = next(i for i, r in enumerate(expected) if r["terms"]["rung"] > 0)
    assert not any(r["cached"] for r in expected[:k])
    killed = _cli(*CLI, "--out", str(tmp_path / "run"), kill=f"trained:{k + 1}")
    _, err = killed.communicate(timeout=600)
    assert killed.returncode == -signal.SIGKILL, err
    assert len(_rows(tmp_path / "run")) == k
    states = tmp_path / "run" / rf.STATES_DIR
    assert (states / f"{k}.safetensors").is_file()  # saved, but its row is not journaled
    shutil.copytree(tmp_path / "run", tmp_path / "bad")
    source = expected[k]["spec"]
    src_id = next(r["id"] for r in expected if r["spec"] == source)
    (tmp_path / "bad" / rf.STATES_DIR / f"{src_id}.safetensors").write_bytes(b"\0garbage" * 9)
    for run, left in (("run", []), ("bad", [f"{src_id}.safetensors"])):
        proc = _cli("--resume", str(tmp_path / run))
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert _rows(tmp_path / run) == expected
        # A state whose content is no longer evoae's is never deleted (issue 21).
        assert sorted(p.name for p in (tmp_path / run / rf.STATES_DIR).iterdir()) == left
    best = (tmp_path / "ref" / rf.BEST_GENOME).read_bytes()
    assert (tmp_path / "run" / rf.BEST_GENOME).read_bytes() == best


# ------------------------------------------------------------------ untrusted states


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(96, 64, generator=g), torch.rand(32, 64, generator=g)


def _damage(stem: Path, how: str) -> None:
    weights, meta = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    if how == "missing":
        weights.unlink()
    elif how == "garbage":
        weights.write_bytes(os.urandom(200))
    elif how == "truncated":
        weights.write_bytes(weights.read_bytes()[:-50])
    elif how == "nan":
        from safetensors.torch import load_file, save_file

        t = load_file(str(weights))
        t["model.encoder.0.weight"] = torch.full_like(t["model.encoder.0.weight"], float("nan"))
        save_file(t, str(weights))
    elif how == "other-model":
        x, v = _data()
        train_rung(dense_spec(hidden=[[16, "relu"]]), x, v, epochs=1, seed=3, save=stem)
    elif how == "other-seed":
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "seed": 99}))
    elif how == "meta":
        meta.write_text('{"epochs": -1, "optimizer_scalars": {}}')
    elif how == "too-many-epochs":
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "epochs": 9}))


@pytest.mark.parametrize(
    "how",
    [
        "missing",
        "garbage",
        "truncated",
        "nan",
        "other-model",
        "other-seed",
        "meta",
        "too-many-epochs",
    ],
)
def test_a_bad_state_is_refused_and_the_task_trains_from_scratch(tmp_path, how):
    x, v = _data()
    spec = dense_spec()
    stem = tmp_path / "states" / "0"
    train_rung(spec, x, v, epochs=1, seed=3, save=stem)
    if how == "nan" and "model.encoder.0.weight" not in _keys(stem):
        pytest.skip("the dense model names its tensors differently")
    _damage(stem, how)
    model = _model(spec)
    with pytest.raises(BadState):
        from evoae.training.optim import make_optimizer

        opt = make_optimizer(spec["optimizer"], model.parameters(), spec["lr"])
        if load_rung(stem, model, opt, seed=3) > 3:
            raise BadState("more epochs than asked")
    result = train_task(Task(spec, 3, 3, resume=str(stem)), _split(x), _split(v), _objective())
    direct, _ = train_candidate(spec, x, v, epochs=3, seed=3)
    assert result.fitness == direct.fitness


def _keys(stem: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(stem.with_suffix(".safetensors")), framework="pt") as f:
        return set(f.keys())


def _model(spec: dict) -> torch.nn.Module:
    from evoae.families import build_model

    return build_model(spec, 3)


def _split(x: torch.Tensor):
    from evoae.training.trainer import as_split

    return as_split(x)


def _objective():
    from evoae.objectives import Reconstruction

    return Reconstruction()


# ------------------------------------------------------------------ settings and CLI


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fidelity", "asha", "--min-epochs", "5", "--max-epochs", "2"], "min epochs"),
        (["--fidelity", "asha", "--strategy", "microbial", "--reevaluate"], "reevaluate"),
        (
            ["--fidelity", "asha", "--executor", "ray", "--ray-address", "10.0.0.1:6379"],
            "Ray",
        ),
    ],
)
def test_bad_asha_settings_are_one_line_errors(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main(["search", "--limit", "300", "--out", str(out), "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "args", [["--eta", "1"], ["--fidelity", "hyperband"], ["--min-epochs", "0"]]
)
def test_bad_asha_flag_values_exit_2(args):
    with pytest.raises(SystemExit) as info:
        main(["search", *args])
    assert info.value.code == 2


def test_cli_asha_end_to_end_and_old_settings_read_as_no_fidelity(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one line per summary row
    out = tmp_path / "run"
    assert main(["search", *CLI[:-2], "--epoch-budget", "5", "--out", str(out)]) == 0
    assert "(search, rung of " in capsys.readouterr().out  # the best names its rung
    stored = json.loads((out / rf.SETTINGS).read_text())
    assert stored["fidelity"]["fidelity"] == "asha" and stored["fidelity"]["epoch_budget"] == 5
    assert _cost(_rows(out)) == 5
    assert main(["runs", "show", str(out)]) == 0
    assert "asha" in capsys.readouterr().out
    # Budgets grow on resume, never shrink; the rungs are fixed.
    with pytest.raises(EvoaeError, match="shrink"):
        evoae.search(out=out, resume=True, epoch_budget=4)
    with pytest.raises(EvoaeError, match="eta"):
        evoae.search(out=out, resume=True, eta=3)
    evoae.search(out=out, resume=True, epoch_budget=7)
    assert _cost(_rows(out)) == 7
    old = {k: v for k, v in stored.items() if k != "fidelity"}
    assert SearchSettings.from_dict(old).fidelity.fidelity == "none"


def _cli(*args: str, kill: str | None = None):
    return start_cli("search", *args, kill=kill)
