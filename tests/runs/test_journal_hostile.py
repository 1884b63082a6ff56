"""Hostile journals: ``--resume`` of a run whose journal.sqlite has damaged rows, damaged
stored settings, zeroed pages or is not a database at all; refused with one line, the
run unchanged (rules of the two tables in ``tests/hostile.py``)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hostile import (
    Refused,
    Unchanged,
    damaged,
    refused_test,
    resume_damaged,
    set_key,
    sql,
    truncate,
    unchanged_test,
)

from evoae.runs import folder as rf

REFUSED: dict[str, Refused] = {
    "resume: journal overwritten": lambda e: damaged(
        e, lambda r: (r / rf.JOURNAL).write_bytes(b"not a database" * 100)
    ),
    "resume: journal truncated": lambda e: damaged(e, lambda r: truncate(r / rf.JOURNAL)),
}

UNCHANGED: dict[str, Unchanged] = {}


def _settings_meta(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        con = sqlite3.connect(run / rf.JOURNAL)
        value = json.loads(con.execute("SELECT value FROM meta WHERE key='settings'").fetchone()[0])
        edit(value)
        con.execute("UPDATE meta SET value=? WHERE key='settings'", (json.dumps(value),))
        con.commit()
        con.close()

    return damage


JOURNALS: dict[str, Callable[[Path], None]] = {
    "row with a negative id": sql("UPDATE evaluations SET id=-1 WHERE id=0"),
    "rows with a gap": sql("DELETE FROM evaluations WHERE id=1"),
    "rows starting at 1": sql("DELETE FROM evaluations WHERE id=0"),
    "genome not JSON": sql("UPDATE evaluations SET genome='{oops' WHERE id=2"),
    "genome a JSON list": sql("UPDATE evaluations SET genome='[1,2]' WHERE id=2"),
    "spec nested 10000 deep": sql(
        f"UPDATE evaluations SET spec='{'[' * 10000}{']' * 10000}' WHERE id=1"
    ),
    "spec of 2 MB": sql(f"UPDATE evaluations SET spec='\"{'x' * 2_000_000}\"' WHERE id=1"),
    "terms not JSON": sql("UPDATE evaluations SET terms='nope' WHERE id=0"),
    "terms with a word": sql("""UPDATE evaluations SET terms='{"mse": "low"}' WHERE id=0"""),
    "fitness a word": sql("UPDATE evaluations SET fitness='abc' WHERE id=3"),
    "fitness -inf": sql("UPDATE evaluations SET fitness=-1e999 WHERE id=3"),
    "val_loss a blob": sql("UPDATE evaluations SET val_loss=x'00ff' WHERE id=3"),
    "params negative": sql("UPDATE evaluations SET params=-7 WHERE id=1"),
    "params a word": sql("UPDATE evaluations SET params='many' WHERE id=1"),
    "seed a float": sql("UPDATE evaluations SET seed=1.5 WHERE id=1"),
    "seconds infinite": sql("UPDATE evaluations SET seconds=1e999 WHERE id=1"),
    "status unknown": sql("UPDATE evaluations SET status='weird' WHERE id=1"),
    "cached 5": sql("UPDATE evaluations SET cached=5 WHERE id=1"),
    "generation negative": sql("UPDATE evaluations SET generation=-3 WHERE id=1"),
    "error a blob": sql("UPDATE evaluations SET error=x'00' WHERE id=1"),
    "settings meta not JSON": sql("UPDATE meta SET value='{oops' WHERE key='settings'"),
    "settings meta a list": sql("UPDATE meta SET value='[]' WHERE key='settings'"),
    "settings meta deep": sql(
        f"UPDATE meta SET value='{'[' * 5000}{']' * 5000}' WHERE key='settings'"
    ),
    "settings meta missing": sql("DELETE FROM meta WHERE key='settings'"),
    "settings population a word": _settings_meta(set_key("population", "abc")),
    "settings population -5": _settings_meta(set_key("population", -5)),
    "settings population 10**12": _settings_meta(set_key("population", 10**12)),
    "settings code size a list": _settings_meta(set_key("code_size", [4])),
    "settings epochs null": _settings_meta(set_key("epochs", None)),
    "settings split unknown": _settings_meta(set_key("split", "half")),
    "settings seed negative": _settings_meta(set_key("seed", -1)),
    "settings image size 100000": _settings_meta(set_key("image_size", 100000)),
    "space meta not JSON": sql("UPDATE meta SET value='{' WHERE key='space'"),
    "file zero bytes": lambda r: (r / rf.JOURNAL).write_bytes(b""),
    "file of zeros": lambda r: (r / rf.JOURNAL).write_bytes(bytes(16384)),
    "header kept, pages zeroed": lambda r: (r / rf.JOURNAL).write_bytes(
        (r / rf.JOURNAL).read_bytes()[:100] + bytes((r / rf.JOURNAL).stat().st_size - 100)
    ),
    "a folder": lambda r: ((r / rf.JOURNAL).unlink(), (r / rf.JOURNAL).mkdir()),
}
for _name, _damage in JOURNALS.items():
    UNCHANGED[f"resume: journal {_name}"] = lambda e, d=_damage: resume_damaged(e, d)


test_bad_input_is_refused_with_one_line = refused_test(REFUSED)

test_hostile_input_gives_one_line_and_changes_nothing = unchanged_test(UNCHANGED)
