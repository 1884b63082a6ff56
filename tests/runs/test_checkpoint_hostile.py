"""Hostile checkpoints: ``--resume`` of a run whose checkpoint.json is damaged, of another
shape, out of step with its journal, deeply nested or not a file; refused with one line,
the run unchanged (rules of the two tables in ``tests/hostile.py``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from hostile import (
    Refused,
    Unchanged,
    damaged,
    edit_checkpoint,
    refused_test,
    resume_damaged,
    set_key,
    unchanged_test,
)

from evoae.runs import folder as rf

REFUSED: dict[str, Refused] = {
    "resume: checkpoint corrupted": lambda e: damaged(
        e, lambda r: (r / rf.CHECKPOINT).write_text('{"strategy": ')
    ),
    "resume: checkpoint of another shape": lambda e: damaged(
        e, lambda r: (r / rf.CHECKPOINT).write_text('{"strategy": {}}')
    ),
}

UNCHANGED: dict[str, Unchanged] = {}

CHECKPOINTS: dict[str, Callable[[Path], None]] = {
    "next_id -5": edit_checkpoint(set_key("next_id", -5)),
    "next_id a string": edit_checkpoint(set_key("next_id", "3")),
    "next_id past the journal": edit_checkpoint(set_key("next_id", 10**6)),
    "next_id a float": edit_checkpoint(set_key("next_id", 2.5)),
    "trainings above next_id": edit_checkpoint(set_key("trainings", 10**6)),
    "trainings negative": edit_checkpoint(set_key("trainings", -1)),
    "history not a list": edit_checkpoint(set_key("history", {"a": 1})),
    "history row of strings": edit_checkpoint(set_key("history", [{"best": "low"}])),
    "history row a list": edit_checkpoint(set_key("history", [[1, 2]])),
    "strategy missing": edit_checkpoint(lambda d: d.pop("strategy")),
    "strategy a list": edit_checkpoint(set_key("strategy", [])),
    "strategy population not a list": edit_checkpoint(set_key("strategy.population", 5)),
    "strategy fitness shorter": edit_checkpoint(lambda d: d["strategy"]["fitness"].pop()),
    "strategy fitness a word": edit_checkpoint(
        lambda d: d["strategy"]["fitness"].__setitem__(0, "x")
    ),
    "strategy rng garbage": edit_checkpoint(set_key("strategy.rng", {"bit_generator": "nope"})),
    "strategy genome too short": edit_checkpoint(
        lambda d: d["strategy"]["population"].__setitem__(0, [])
    ),
    "top level a list": lambda r: (r / rf.CHECKPOINT).write_text("[1, 2]"),
    "empty file": lambda r: (r / rf.CHECKPOINT).write_text(""),
    "binary garbage": lambda r: (r / rf.CHECKPOINT).write_bytes(bytes(range(256))),
    "NaN literal": lambda r: (r / rf.CHECKPOINT).write_text('{"next_id": NaN}'),
    "deep nesting": lambda r: (r / rf.CHECKPOINT).write_text("[" * 100_000 + "]" * 100_000),
    "deep but parseable nesting": edit_checkpoint(
        set_key("strategy.extra", json.loads("[" * 200 + "]" * 200))
    ),
    "a folder": lambda r: ((r / rf.CHECKPOINT).unlink(), (r / rf.CHECKPOINT).mkdir()),
}
for _name, _damage in CHECKPOINTS.items():
    UNCHANGED[f"resume: checkpoint {_name}"] = lambda e, d=_damage: resume_damaged(e, d)


test_bad_input_is_refused_with_one_line = refused_test(REFUSED)

test_hostile_input_gives_one_line_and_changes_nothing = unchanged_test(UNCHANGED)
