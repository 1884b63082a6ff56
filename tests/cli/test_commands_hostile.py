"""Hostile ``sample`` and ``runs show``: an ``--out`` too long or not a png, a run whose
journal row, summary or settings.json is damaged; refused with one line, nothing
changed (rules of the ``UNCHANGED`` table in ``tests/hostile.py``)."""

from __future__ import annotations

from hostile import Env, Unchanged, registrar, sql, unchanged_test

from evoae.runs import folder as rf

UNCHANGED: dict[str, Unchanged] = {}
case = registrar(UNCHANGED)


@case("sample: a 300-character --out")
def _(e: Env) -> list[str]:
    return ["sample", str(e.run), "--out", str(e.tmp / ("s" * 300 + ".png"))]


@case("sample: --out not a png")
def _(e: Env) -> list[str]:
    return ["sample", str(e.run), "--out", str(e.tmp / "samples.txt")]


@case("runs show: a damaged journal row")
def _(e: Env) -> list[str]:
    run = e.copy_run()
    sql("UPDATE evaluations SET genome='{' WHERE id=0")(run)
    return ["runs", "show", str(run)]


@case("runs show: damaged summary")
def _(e: Env) -> list[str]:
    run = e.copy_run()
    (run / rf.SUMMARY).write_text('{"final": {"val_loss": "low"}}')
    return ["runs", "show", str(run)]


@case("runs show: damaged settings.json")
def _(e: Env) -> list[str]:
    run = e.copy_run()
    (run / rf.SETTINGS).write_text('{"population": -4}')
    return ["runs", "show", str(run)]


test_hostile_input_gives_one_line_and_changes_nothing = unchanged_test(UNCHANGED)
