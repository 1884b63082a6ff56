"""Hostile strategy states: ``--resume`` of a tpe, nsga2 or aging run whose stored strategy
state was edited; refused with one line, the run unchanged (rules of the ``UNCHANGED``
table in ``tests/hostile.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hostile import Env, Unchanged, edit_checkpoint, unchanged_test

from evoae.loop import search


def _strategy_resume(name: str, edit: Callable[[dict[str, Any]], Any], **opts: Any):
    """A small finished run of strategy ``name``, its strategy state edited, resumed."""

    def make(e: Env) -> list[str]:
        run = e.tmp / name
        search(str(e.data), out=run, strategy=name, epochs=1, final_epochs=1, seed=1, **opts)
        e.watch(run)
        edit_checkpoint(lambda d: edit(d["strategy"]))(run)
        return ["search", "--quiet", "--resume", str(run), "--evaluations", "9"]

    return make


def _trial(i: int, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda s: s["trials"][i].__setitem__(key, value)


def _param(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda s: s["trials"][0]["params"].__setitem__(key, value)


# The new strategies' states were trusted: each of these raised a traceback on resume
# (or, told -3, wrote a journal row of generation -3 before failing).
STRATEGY_STATES: dict[str, Unchanged] = {
    "tpe trial with an unknown optimizer": _strategy_resume(
        "tpe", _param("optimizer", "rmsprop"), evaluations=2
    ),
    "tpe trial with a ratio of 7.5": _strategy_resume(
        "tpe", _param("hidden_1.0", 7.5), evaluations=2
    ),
    "tpe trial value a word": _strategy_resume("tpe", _trial(0, "value", "x"), evaluations=2),
    "tpe trial without a gene": _strategy_resume(
        "tpe", lambda s: s["trials"][0]["params"].pop("optimizer"), evaluations=2
    ),
    "nsga2 values shorter than the population": _strategy_resume(
        "nsga2", lambda s: s["values"].pop(), population=2, evaluations=2
    ),
    "nsga2 told -3": _strategy_resume(
        "nsga2", lambda s: s.__setitem__("told", -3), population=2, evaluations=2
    ),
    "aging told -1": _strategy_resume(
        "aging", lambda s: s.__setitem__("told", -1), population=2, sample=1, evaluations=2
    ),
}
UNCHANGED: dict[str, Unchanged] = {
    f"resume: checkpoint {name}": make for name, make in STRATEGY_STATES.items()
}

test_hostile_input_gives_one_line_and_changes_nothing = unchanged_test(UNCHANGED)
