"""The open core: strategies, objectives and families plug in without touching the loop.

* the refactored loop writes, row for row, the journals recorded before the change;
* a user's own strategy class and objective (tests/loop/user_plugins.py, not registered) run,
  are journaled, resume after a SIGKILL to the uninterrupted journal, and are reported;
* random search is one module plus one registration, reachable from the CLI and the
  estimator;
* the layers contract (import-linter) holds, and fails on a deliberate upward import.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_SEARCH
from user_plugins import HillClimb, HillOptions, L1Objective, LabelSpread

import evoae
from evoae import evolution, objectives
from evoae.cli import main
from evoae.data import Dataset
from evoae.errors import EvoaeError
from evoae.families import FAMILIES, describe
from evoae.report.html import write_report
from evoae.runs.journal import Journal
from evoae.runs.killpoints import ENV

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = json.loads((Path(__file__).parent / "golden" / "golden_journal.json").read_text())
sys.path.insert(0, str(Path(__file__).parent / "golden"))
from make_golden_journal import journal_rows  # noqa: E402

# ------------------------------------------------------------------ behaviour unchanged


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_journal_equals_the_one_recorded_before_the_open_core_change(tmp_path, case):
    recorded = GOLDEN[case]
    # Recorded with autograd, before the dense kernel (which agrees to float rounding),
    # and before PCA-residual candidates (new runs' default since, off in evoae 0.1),
    # when the final stage trained one architecture from scratch without cuts, and
    # when the microbial GA was the default strategy.
    old = {
        "strategy": "microbial",
        "trainer": "autograd",
        "residual": False,
        "final_candidates": 1,
        "final_lr_cuts": 0,
        "final_continue": False,
    }
    settings = {**old, **recorded["settings"]}
    result = evoae.search("digits", out=tmp_path / case, **settings)
    _same_rows(journal_rows(str(tmp_path / case)), recorded["rows"])
    assert result.final["val_loss"] == pytest.approx(recorded["final_val"], rel=1e-4)


def _same_rows(got: list[dict], want: list[dict]) -> None:
    """Equal journals: the same candidates, seeds and statuses; losses and terms equal
    to float tolerance (fused optimizers and other machines round differently)."""
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        floats = ("fitness", "train_loss", "val_loss", "terms")
        assert {k: v for k, v in a.items() if k not in floats} == {
            k: v for k, v in b.items() if k not in floats
        }
        for k in ("fitness", "train_loss", "val_loss"):
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-7), (a["id"], k)
        ta, tb = json.loads(a["terms"]), json.loads(b["terms"])
        assert ta.keys() == tb.keys()
        assert all(ta[k] == pytest.approx(tb[k], rel=1e-4, abs=1e-7) for k in ta), a["id"]


# ------------------------------------------------------------------ a user's strategy

USER = dict(limit=300, epochs=1, final_epochs=1, seed=4)


def _user_search(out: Path, evaluations: int = 8, **kw) -> evoae.SearchResult:
    strategy = HillClimb(options=HillOptions(evaluations=evaluations), seed=11)
    return evoae.search("digits", out=out, strategy=strategy, objective=L1Objective(), **kw)


def test_user_strategy_and_objective_run_and_are_journaled(tmp_path):
    r = _user_search(tmp_path / "u", **USER)
    stored = json.loads((tmp_path / "u" / "settings.json").read_text())
    assert stored["strategy"] == {"name": "hill", "options": {"evaluations": 8}}
    assert stored["training"]["objective"] == "l1"
    with Journal(tmp_path / "u" / "journal.sqlite", readonly=True) as j:
        rows = list(j.rows())
        assert j.get_meta("objective") == {"name": "l1"}
    assert len(rows) == 8 and all("l1" in r.terms for r in rows if r.status == "ok")
    # Fitness is the user's objective, not the model's loss.
    ok = [r for r in rows if r.status == "ok"]
    assert all(r.fitness == r.terms["l1"] for r in ok)
    assert r.best_fitness == min(row.fitness for row in ok)
    # The hill climber only ever keeps improvements.
    assert r.history[-1]["best"] == r.best_fitness


def test_user_strategy_resumes_after_a_kill_to_the_uninterrupted_journal(tmp_path):
    reference = _user_search(tmp_path / "ref", **USER)
    out = tmp_path / "killed"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import torch
        torch.set_num_threads(1)
        from user_plugins import HillClimb, HillOptions, L1Objective
        import evoae
        evoae.search("digits", out={str(out)!r},
                     strategy=HillClimb(options=HillOptions(evaluations=8), seed=11),
                     objective=L1Objective(), **{USER!r})
        """
    )
    env = {**os.environ, ENV: "appended:5"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    with Journal(out / "journal.sqlite", readonly=True) as j:
        assert 0 < len(list(j.rows())) < 8
    resumed = _user_search(out, resume=True)
    assert journal_rows(str(out)) == journal_rows(str(reference.run_dir))
    assert resumed.best_genome == reference.best_genome
    assert resumed.final["val_loss"] == reference.final["val_loss"]
    # A larger budget continues the same climb; a shrunk one is refused.
    with pytest.raises(EvoaeError, match="shrink"):
        _user_search(out, evaluations=4, resume=True)
    longer = _user_search(out, evaluations=10, resume=True)
    assert longer.n_evaluations == 10
    # The report renders a run of a strategy it has never heard of.
    text = write_report(out).read_text()
    assert "hill" in text and "<img" in text


def test_resume_with_another_strategy_or_objective_is_refused(tmp_path):
    _user_search(tmp_path / "u", **USER)
    with pytest.raises(EvoaeError, match="strategy hill"):
        evoae.search(out=tmp_path / "u", resume=True, strategy="random", objective=L1Objective())
    with pytest.raises(EvoaeError, match="objective"):
        evoae.search(out=tmp_path / "u", resume=True, strategy=HillClimb(), objective="recon")


# ------------------------------------------------------------------ objectives and labels


def test_labels_reach_the_objective_in_every_evaluator(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    x = (rng.random((120, 12)) * 0.3 + y[:, None] * 0.3).astype(np.float32)
    data = Dataset(x=x, y=y, name="<labelled>")
    fitness = {}
    for executor in ("inline", "population", "process"):
        r = evoae.search(
            "<labelled>",
            data=data,
            out=tmp_path / executor,
            objective=LabelSpread(),
            code_size=2,
            executor=executor,
            workers=1,
            seed=2,
            **TINY_SEARCH,
        )
        with Journal(tmp_path / executor / "journal.sqlite", readonly=True) as j:
            rows = [r for r in j.rows() if r.status == "ok"]
        assert rows and all(row.terms["spread"] == -row.fitness for row in rows)
        fitness[executor] = [row.fitness for row in rows]
        assert r.settings.training.objective == "label_spread"
    # Same candidates, same seeds: the executors agree (float tolerance for stacking).
    np.testing.assert_allclose(fitness["process"], fitness["inline"], rtol=1e-6)
    np.testing.assert_allclose(fitness["population"], fitness["inline"], rtol=1e-4, atol=1e-5)


def test_an_objective_that_needs_labels_refuses_unlabelled_data(tmp_path):
    x = np.random.default_rng(0).random((60, 8)).astype(np.float32)
    with pytest.raises(EvoaeError, match="needs labels") as info:
        evoae.search(
            "<x>",
            data=Dataset(x=x, y=None, name="<x>"),
            out=tmp_path / "r",
            objective=LabelSpread(),
            code_size=2,
            **TINY_SEARCH,
        )
    assert "\n" not in str(info.value)
    assert not (tmp_path / "r").exists()


def test_objective_registry_names_and_errors():
    assert isinstance(objectives.make_objective(None), objectives.Reconstruction)
    with pytest.raises(EvoaeError, match="unknown objective 'nope'"):
        objectives.make_objective("nope")


# ------------------------------------------------------------------ random search


def test_random_search_from_the_cli_and_its_options(tmp_path, capsys):
    out = tmp_path / "rs"
    code = main(
        [
            "search",
            "--strategy",
            "random",
            "--evaluations",
            "5",
            "--batch",
            "2",
            "--epochs",
            "1",
            "--final-epochs",
            "1",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    rows = journal_rows(str(out))
    assert [r["generation"] for r in rows] == [0, 0, 2, 2, 4]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["strategy"] == {
        "name": "random",
        "options": {"evaluations": 5, "batch": 2},
    }
    # Another strategy's option is refused with one line that names its owner.
    capsys.readouterr()
    code = main(["search", "--strategy", "random", "--deme", "3", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "option of strategy microbial" in err and err.count("\n") == 1


def test_random_search_in_the_estimator():
    x = np.random.default_rng(1).random((80, 10))
    ae = evoae.EvolvedAutoencoder(
        code_size=2,
        strategy="random",
        population=2,
        generations=3,
        epochs=1,
        final_epochs=1,
        random_state=0,
    ).fit(x)
    assert ae.n_evaluations_ == 5 and ae.transform(x).shape == (80, 2)
    with pytest.raises(EvoaeError, match="unknown strategy"):
        evoae.EvolvedAutoencoder(strategy="annealing").fit(x)


def test_adding_random_search_touched_exactly_its_module_and_one_registration():
    src = ROOT / "src" / "evoae"
    users = sorted(
        str(p.relative_to(src)) for p in src.rglob("*.py") if "RandomSearch" in p.read_text()
    )
    assert users == ["evolution/__init__.py", "evolution/random.py"]
    assert evolution.STRATEGIES["random"] is evolution.RandomSearch


# ------------------------------------------------------------------ families


def test_every_family_describes_its_specs_in_one_notation(tmp_path):
    assert set(FAMILIES) == {"dense", "conv-vae", "conv-ae"}
    r = evoae.search("digits", out=tmp_path / "d", **TINY_SEARCH)
    line = describe(r.best_spec)
    assert line.startswith("64 > ") and "mirrored" in line and f"[{4} " in line
    model = evoae.load_model(tmp_path / "d" / "model")
    x = torch.rand(3, 64)
    assert model.encode(x).shape == (3, 4) and model.variational is False


# ------------------------------------------------------------------ layers


def _lint(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "lint-imports"
    if not exe.exists():
        pytest.fail("lint-imports is missing: install the dev extras (import-linter)")
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([str(exe)], cwd=cwd, env=env, capture_output=True, text=True)


def test_the_layers_contract_holds():
    proc = _lint(ROOT, ROOT / "src")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "1 kept, 0 broken" in proc.stdout


def test_the_layers_contract_fails_on_an_upward_import(tmp_path):
    shutil.copytree(ROOT / "src" / "evoae", tmp_path / "src" / "evoae")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    # The data layer reaching up into the search loop.
    (tmp_path / "src" / "evoae" / "data" / "upward.py").write_text("import evoae.loop\n")
    proc = _lint(tmp_path, tmp_path / "src")
    assert proc.returncode != 0
    assert "BROKEN" in proc.stdout and "evoae.data.upward -> evoae.loop" in proc.stdout


class _ScalarFitness(HillClimb):
    """A strategy whose state names ``fitness`` and ``population`` as it likes."""

    def state_dict(self) -> dict:
        state = super().state_dict()
        return {**state, "fitness": state["current_fitness"], "population": "one climber"}

    def load_state_dict(self, state: dict) -> None:
        assert state["population"] == "one climber"
        super().load_state_dict(state)


def test_a_strategy_owns_the_keys_of_its_state(tmp_path):
    """The checkpoint schema checks the run's fields; ``fitness`` and ``population`` in a
    strategy's state are the strategy's own (a scalar here), so the run resumes."""
    out = tmp_path / "s"
    first = evoae.search(
        out=out, strategy=_ScalarFitness(options=HillOptions(evaluations=3), seed=1), **USER
    )
    more = evoae.search(
        out=out,
        resume=True,
        strategy=_ScalarFitness(options=HillOptions(evaluations=5), seed=1),
        **USER,
    )
    assert first.n_evaluations == 3 and more.n_evaluations == 5
