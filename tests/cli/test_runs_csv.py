"""``evoae runs show RUN --csv``: the data frame's columns and rows, no pandas needed."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from conftest import TINY_SEARCH

import evoae
from evoae.cli import main
from evoae.loop import search
from evoae.runs.frame import columns, records


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("csv") / "run"
    search("digits", out=out, seed=3, limit=300, executor="inline", **TINY_SEARCH)
    return out


def _cell(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, list | dict):
        return json.dumps(v)
    return str(v)


def test_csv_parses_to_the_same_rows_as_the_frame(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs", "show", str(run), "--csv"]) == 0
    reader = csv.DictReader(io.StringIO(capsys.readouterr().out))
    view = evoae.read_run(run)
    assert reader.fieldnames == columns(view)
    got = list(reader)
    want = [{k: _cell(v) for k, v in rec.items()} for rec in records(view)]
    assert got == want and len(got) == len(view.rows)
    # Numbers round-trip exactly; a gene such as [width, activation] is JSON.
    assert [float(r["fitness"]) for r in got] == [r.fitness for r in view.rows]
    genes = [c for c in columns(view) if c.startswith("genome.")]
    for g in genes:
        for r, row in zip(got, view.rows, strict=True):
            value = row.genome.get(g.removeprefix("genome."))
            if isinstance(value, list):
                assert json.loads(r[g]) == value


def test_csv_and_json_are_exclusive(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["runs", "show", str(run), "--csv", "--json"])
    assert info.value.code == 2 and "not allowed with" in capsys.readouterr().err


@pytest.mark.parametrize("flag", [["--top", "2"], ["--front"]])
def test_csv_refuses_the_table_only_flags(
    run: Path, flag: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # --csv prints every evaluation: --top 2 silently printing all rows would mislead
    assert main(["runs", "show", str(run), "--csv", *flag]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and flag[0] in captured.err
