"""Every registered family, a toy one defined in the tests included, goes through the
whole life of a run: search, kill-free resume, ``load_model``, export, report, ``runs show``.

The toy family (``tests/families/toy_family``) is one folder and one ``register`` call; nothing
in ``src/`` names it. Conv families run on 8x8 digits at the smallest size.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import torch
from toy_family import TIED

import evoae
from evoae.cli import main
from evoae.errors import EvoaeError
from evoae.families import FAMILIES, check_spec, register

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(
    final_continue=False,
    strategy="microbial",
    population=2,
    generations=2,
    epochs=1,
    final_epochs=1,
    min_steps=0,
    final_min_steps=0,
    limit=200,
    seed=3,
)


@pytest.fixture(scope="module", autouse=True)
def toy_registered():
    register(TIED)
    yield
    FAMILIES.pop(TIED.name, None)


def _rows(run: Path) -> list[tuple]:
    with sqlite3.connect(f"file:{run / 'journal.sqlite'}?mode=ro", uri=True) as db:
        return db.execute("SELECT id, genome, spec, fitness FROM evaluations").fetchall()


def _families() -> list[str]:
    return ["dense", "conv-vae", "conv-ae", TIED.name]


@pytest.mark.parametrize("name", _families())
def test_a_family_lives_through_search_resume_load_export_report(name, tmp_path, capsys):
    out = tmp_path / "run"
    r = evoae.search("digits", model=name, code_size=2, out=out, **TINY)
    assert r.best_spec["family"] == name and (out / "model" / "model.json").is_file()
    journal = _rows(out)

    # The model file is checked by the family's own schema and rebuilt by its builder.
    model = evoae.load_model(out / "model")
    assert model.spec == r.best_spec
    x = torch.rand(3, *FAMILIES[name].input_shape(r.best_spec))
    assert model.encode(x).shape == (3, 2)
    check_spec(r.best_spec, "spec")

    # A finished run resumes to the same result without training again. (TINY turns
    # final_continue off: a resumed finished run re-runs its final stage, which would
    # then train from scratch, the finalists' states being gone.)
    again = evoae.search("digits", model=name, code_size=2, out=out, resume=True, **TINY)
    assert again.best_fitness == pytest.approx(r.best_fitness, rel=1e-6)
    assert _rows(out) == journal

    capsys.readouterr()
    assert main(["runs", "show", str(out)]) == 0
    assert name in capsys.readouterr().out
    assert main(["report", str(out), "--quiet"]) == 0
    assert (out / "report.html").is_file()
    assert main(["export", str(out), "--format", "torchscript", "--quiet"]) == 0
    exported = json.loads((out / "export" / "export.json").read_text())
    assert exported["spec"]["family"] == name


def test_a_damaged_toy_spec_is_refused_by_the_toy_schema(tmp_path):
    out = tmp_path / "run"
    evoae.search("digits", model=TIED.name, code_size=2, out=out, **TINY)
    meta_path = out / "model" / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["spec"]["optimizer"] = "rmsprop"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(EvoaeError, match=r"field optimizer: .*rmsprop"):
        evoae.load_model(out / "model")


def test_no_source_file_names_the_toy_family():
    src = ROOT / "src" / "evoae"
    assert not [p for p in src.rglob("*.py") if "tied" in p.read_text().lower().split()]


def test_a_toy_executor_is_one_module_and_one_registration(tmp_path):
    """``tests/families/toy_executor.py``, registered as ``backwards``, gives the inline journal."""
    from toy_executor import BackwardsEvaluator

    from evoae import execution

    execution.register("backwards", BackwardsEvaluator, "last task first")
    try:
        ref = evoae.search("digits", out=tmp_path / "inline", executor="inline", **TINY)
        run = evoae.search("digits", out=tmp_path / "toy", executor="backwards", **TINY)
    finally:
        execution.EXECUTORS.pop("backwards", None)
        execution.EXECUTOR_HELP.pop("backwards", None)
    assert [r[:3] for r in _rows(tmp_path / "toy")] == [r[:3] for r in _rows(tmp_path / "inline")]
    fits = zip(_rows(tmp_path / "toy"), _rows(tmp_path / "inline"), strict=True)
    assert all(a[3] == pytest.approx(b[3], rel=1e-5) for a, b in fits)
    assert run.best_fitness == pytest.approx(ref.best_fitness, rel=1e-5)
