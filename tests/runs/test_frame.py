"""``evoae.read_run(RUN).trials_dataframe()``: one row per evaluation, like Optuna's."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from conftest import TINY_SEARCH, one_line_error

import evoae
from evoae.loop import search
from evoae.runs import folder as rf
from evoae.runs.frame import BASE_COLUMNS, columns, records
from evoae.runs.journal import Journal


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("frame") / "run"
    search("digits", out=out, seed=1, limit=300, executor="inline", **{**TINY_SEARCH, "epochs": 2})
    return out


def test_records_have_one_row_per_evaluation_with_genes_and_terms(run: Path) -> None:
    view = evoae.read_run(run)
    recs = records(view)
    with Journal(run / rf.JOURNAL, readonly=True) as j:
        rows = list(j.rows())
    assert [r["id"] for r in recs] == [r.id for r in rows]
    cols = columns(view)
    assert tuple(cols[: len(BASE_COLUMNS)]) == BASE_COLUMNS
    genes = [c for c in cols if c.startswith("genome.")]
    assert {f"genome.{g}" for g in rows[0].genome} <= set(genes)
    assert "terms.mse" in cols
    for rec, row in zip(recs, rows, strict=True):
        assert rec["fitness"] == row.fitness and rec["status"] == row.status
        assert rec["seconds"] == row.seconds and rec["cached"] == row.cached
        assert rec["terms.mse"] == row.terms.get("mse")
        for g, v in row.genome.items():
            assert rec[f"genome.{g}"] == v


def test_trials_dataframe(run: Path) -> None:
    pd = pytest.importorskip("pandas")
    view = evoae.read_run(run)
    df = view.trials_dataframe()
    assert isinstance(df, pd.DataFrame) and len(df) == len(view.rows)
    assert list(df.columns) == columns(view)
    assert df["id"].tolist() == [r.id for r in view.rows]
    assert df["fitness"].tolist() == [r.fitness for r in view.rows]
    assert set(df["status"]) <= {"ok", "failed"}
    assert (df["seconds"] >= 0).all()
    best = df.loc[df["fitness"].idxmin()]
    assert best["id"] == view.best().id  # type: ignore[union-attr]
    with_curves = view.to_pandas(curves=True)
    trained = with_curves[~with_curves["cached"]]
    assert all(len(c) == 2 for c in trained["curve"])
    assert all(c[-1][2] == v for c, v in zip(trained["curve"], trained["val_loss"], strict=True))
    assert all(math.isfinite(c[0][1]) for c in trained["curve"])


def test_without_pandas_one_line_saying_how_to_install(
    run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas raises ImportError
    view = evoae.read_run(run)
    one_line_error(view.trials_dataframe, "pandas", "evoae[pandas]")


def test_import_evoae_stays_lazy() -> None:
    import subprocess

    code = (
        "import sys, evoae; evoae.read_run; "
        "print(any(m in sys.modules for m in ('torch', 'pandas', 'sklearn', 'matplotlib')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_csv_cells_that_a_spreadsheet_would_run_are_quoted() -> None:
    from evoae.runs.frame import _cell

    assert _cell('=HYPERLINK("http://x")') == '\'=HYPERLINK("http://x")'
    assert _cell("@SUM(A1)") == "'@SUM(A1)" and _cell("relu") == "relu"
    assert _cell(-0.5) == -0.5  # numbers stay numbers
