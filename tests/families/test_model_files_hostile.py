"""Hostile saved models: a model folder whose model.json spec, metadata or weights were
damaged, read by ``export``, ``report`` and ``sample``; refused with one line, the run
unchanged, no pickle ever run (rules of the two tables in ``tests/hostile.py``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hostile import Env, Refused, Unchanged, refused_test, truncate, unchanged_test
from safetensors.torch import save

from evoae.runs import folder as rf


def _export(env: Env, damage: Callable[[Path], None]) -> tuple[list[str], Path]:
    copy = env.copy_run()
    damage(copy / rf.MODEL_DIR / "model.safetensors")
    return ["export", str(copy), "--format", "safetensors", "--out", str(env.tmp / "e")], copy


def _flip_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))


def _pickle_weights(path: Path) -> None:
    """A pickle that would run code, with model.json's digest updated to match it."""
    payload = b"cos\nsystem\n(S'touch /tmp/evoae-pwned'\ntR."
    path.write_bytes(payload)
    meta = path.parent / "model.json"
    text = meta.read_text()
    old = text.split('"weights_sha256": "')[1].split('"')[0]
    meta.write_text(text.replace(old, hashlib.sha256(payload).hexdigest()))


REFUSED: dict[str, Refused] = {
    "export: weights modified": lambda e: _export(e, _flip_byte),
    "export: weights truncated": lambda e: _export(e, truncate),
    "export: pickle with matching digest": lambda e: _export(e, _pickle_weights),
}

UNCHANGED: dict[str, Unchanged] = {}


def _model(e: Env, edit: Callable[[Path], Any], command: str = "export") -> list[str]:
    run = e.copy_run()
    edit(run / rf.MODEL_DIR)
    if command == "export":
        return ["export", str(run), "--format", "safetensors", "--out", str(e.tmp / "e")]
    if command == "report":
        return ["report", str(run), "--out", str(e.tmp / "r.html")]
    return ["sample", str(run), "--out", str(e.tmp / "s.png")]


def _spec(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def damage(model: Path) -> None:
        meta = json.loads((model / "model.json").read_text())
        edit(meta["spec"])
        (model / "model.json").write_text(json.dumps(meta))

    return damage


def _meta(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def damage(model: Path) -> None:
        meta = json.loads((model / "model.json").read_text())
        edit(meta)
        (model / "model.json").write_text(json.dumps(meta))

    return damage


def _hidden(i: int, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda s: s["hidden"][0].__setitem__(i, value)


def _weights(transform: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Path], None]:
    """Rewrite every tensor with ``transform`` and make model.json's digest match again."""

    def damage(model: Path) -> None:
        from safetensors.torch import load

        tensors = load((model / "model.safetensors").read_bytes())
        data = save({k: transform(v).contiguous() for k, v in tensors.items()})
        (model / "model.safetensors").write_bytes(data)
        meta = json.loads((model / "model.json").read_text())
        meta["weights_sha256"] = hashlib.sha256(data).hexdigest()
        (model / "model.json").write_text(json.dumps(meta))

    return damage


def _nan_one(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[0] = float("nan")
    return t


MODELS: dict[str, Callable[[Path], None]] = {
    "hidden width -5": _spec(_hidden(0, -5)),
    "hidden width 0": _spec(_hidden(0, 0)),
    "hidden width 10**9": _spec(_hidden(0, 10**9)),
    "hidden width 1.5": _spec(_hidden(0, 1.5)),
    "hidden width a string": _spec(_hidden(0, "55")),
    "hidden width true": _spec(_hidden(0, True)),
    "unknown activation": _spec(_hidden(1, "swishy")),
    "activation a number": _spec(_hidden(1, 3)),
    "hidden entry of 3 items": _spec(lambda s: s["hidden"].__setitem__(0, [5, "relu", 1])),
    "hidden not a list": _spec(lambda s: s.__setitem__("hidden", "55 relu")),
    "100 hidden layers": _spec(lambda s: s.__setitem__("hidden", [[8, "relu"]] * 100)),
    "input_dim missing": _spec(lambda s: s.pop("input_dim")),
    "input_dim a string": _spec(lambda s: s.__setitem__("input_dim", "64")),
    "input_dim -64": _spec(lambda s: s.__setitem__("input_dim", -64)),
    "code_size 0": _spec(lambda s: s.__setitem__("code_size", 0)),
    "code activation unknown": _spec(lambda s: s.__setitem__("code_activation", "magic")),
    "optimizer unknown": _spec(lambda s: s.__setitem__("optimizer", "rmsprop")),
    "lr negative": _spec(lambda s: s.__setitem__("lr", -1.0)),
    "batch size 0": _spec(lambda s: s.__setitem__("batch_size", 0)),
    "family unknown": _spec(lambda s: s.__setitem__("family", "gan")),
    "spec nested deep": _spec(lambda s: s.__setitem__("extra", json.loads("[" * 100 + "]" * 100))),
    "spec a list": _meta(lambda m: m.__setitem__("spec", [])),
    "format wrong": _meta(lambda m: m.__setitem__("format", "other")),
    "version 2": _meta(lambda m: m.__setitem__("version", 2)),
    "digest missing": _meta(lambda m: m.pop("weights_sha256")),
    "digest not hex": _meta(lambda m: m.__setitem__("weights_sha256", "zz")),
    "model.json deep nesting": lambda m: (m / "model.json").write_text(
        "[" * 100_000 + "]" * 100_000
    ),
    "model.json a list": lambda m: (m / "model.json").write_text("[]"),
    "model.json empty": lambda m: (m / "model.json").write_text(""),
    "weights float64": _weights(lambda t: t.double()),
    "weights int32": _weights(lambda t: t.to(torch.int32)),
    "weights float16": _weights(lambda t: t.half()),
    "weights all NaN": _weights(lambda t: torch.full_like(t, float("nan"))),
    "weights one NaN": _weights(_nan_one),
    "weights one inf": _weights(lambda t: t.clone().fill_(float("inf"))),
    "weights transposed": _weights(lambda t: t.t() if t.dim() == 2 else t),
    "weights file a folder": lambda m: (
        (m / "model.safetensors").unlink(),
        (m / "model.safetensors").mkdir(),
    ),
}
for _name, _edit in MODELS.items():
    UNCHANGED[f"export: {_name}"] = lambda e, d=_edit: _model(e, d)
for _name in ("hidden width -5", "unknown activation", "weights all NaN", "weights float64"):
    UNCHANGED[f"report: {_name}"] = lambda e, d=MODELS[_name]: _model(e, d, "report")
    UNCHANGED[f"sample: {_name}"] = lambda e, d=MODELS[_name]: _model(e, d, "sample")


test_bad_input_is_refused_with_one_line = refused_test(REFUSED)

test_hostile_input_gives_one_line_and_changes_nothing = unchanged_test(UNCHANGED)
