"""Hostile exports: opsets out of range, an ``--out`` too long, a user's folder or a
symlink to a user file as ``--out``; refused with one line, nothing changed (rules of
the ``UNCHANGED`` table in ``tests/hostile.py``)."""

from __future__ import annotations

from hostile import Env, Unchanged, registrar, unchanged_test

UNCHANGED: dict[str, Unchanged] = {}
case = registrar(UNCHANGED)


@case("export: opset 1")
def _(e: Env) -> list[str]:
    return ["export", str(e.run), "--format", "onnx", "--opset", "1", "--out", str(e.tmp / "e")]


@case("export: opset 21")
def _(e: Env) -> list[str]:
    return ["export", str(e.run), "--format", "onnx", "--opset", "21", "--out", str(e.tmp / "e")]


@case("export: a 300-character --out")
def _(e: Env) -> list[str]:
    out = str(e.tmp / ("e" * 300))
    return ["export", str(e.run), "--format", "safetensors", "--out", out]


@case("export: --out a user folder holding export.json and encoder.safetensors")
def _(e: Env) -> list[str]:
    u1 = e.user_folder({"export.json": "{}", "encoder.safetensors": "mine"})
    return ["export", str(e.run), "--out", str(u1)]


@case("export: --out a folder whose encoder.pt is a symlink to a user file")
def _(e: Env) -> list[str]:
    u1 = e.user_folder({"notes.txt": "mine"})
    (u1 / "encoder.pt").symlink_to(u1 / "notes.txt")
    return ["export", str(e.run), "--format", "torchscript", "--out", str(u1)]


test_hostile_input_gives_one_line_and_changes_nothing = unchanged_test(UNCHANGED)
