"""Hostile run manifests: ``--overwrite`` of a run whose manifest is damaged, of another
format or version, names paths outside the run, or is not a file; refused with one
line, nothing deleted (rules of the ``UNCHANGED`` table in ``tests/hostile.py``)."""

from __future__ import annotations

from hostile import Env, Unchanged, registrar, small_search_argv, unchanged_test

from evoae.runs.manifest import MANIFEST

UNCHANGED: dict[str, Unchanged] = {}
case = registrar(UNCHANGED)


def _manifest(e: Env, text: str) -> list[str]:
    run = e.copy_run()
    (run / MANIFEST).write_text(text)
    return small_search_argv("--out", run, "--overwrite")


MANIFESTS = {
    "not JSON": "{not json",
    "a list": "[]",
    "wrong format": '{"format": "other", "version": 1, "files": []}',
    "newer version": '{"format": "evoae-run", "version": 99, "files": []}',
    "version a string": '{"format": "evoae-run", "version": "1", "files": []}',
    "files not a list": '{"format": "evoae-run", "version": 1, "files": "model"}',
    "an entry with ..": '{"format": "evoae-run", "version": 1, "files": [".."]}',
    "an entry with a slash": '{"format": "evoae-run", "version": 1, "files": ["../../etc"]}',
    "an entry that is a number": '{"format": "evoae-run", "version": 1, "files": [7]}',
    "deep nesting": "[" * 20_000 + "]" * 20_000,
    "too large": " " * 100_000 + "{}",
}
for _name, _text in MANIFESTS.items():
    UNCHANGED[f"overwrite: manifest {_name}"] = lambda e, t=_text: _manifest(e, t)


@case("overwrite: manifest is a folder")
def _(e: Env) -> list[str]:
    run = e.copy_run()
    (run / MANIFEST).unlink()
    (run / MANIFEST).mkdir()
    return small_search_argv("--out", run, "--overwrite")


test_hostile_input_gives_one_line_and_changes_nothing = unchanged_test(UNCHANGED)
