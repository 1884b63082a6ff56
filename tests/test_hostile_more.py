"""Hostile input, second table (issue 12, "nothing lost, ever").

Every case runs ``evoae.cli.main`` in this process and must end with exit status 2,
exactly one ``evoae: error:`` line on stderr and nothing else, no traceback, and must
leave the shared finished run, the case's own run folder and every user file it made
byte-identical (SHA-256 of every file, symlinks compared by target). Categories:
``--overwrite`` of folders evoae did not write, bounded and validated data reads,
damaged checkpoints, journals (rows and stored settings), manifests, model.json specs
and weights, and output paths.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import sqlite3
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save

from evoae.cli import main
from evoae.data import load_dataset
from evoae.data.idx import write_idx
from evoae.loop import search
from evoae.runs import folder as rf
from evoae.runs.manifest import MANIFEST

TINY = dict(population=4, generations=1, epochs=1, final_epochs=1, seed=1)
SEARCH = ["search", "--quiet", "--population", "4", "--generations", "1", "--epochs", "1"]
SEARCH += ["--final-epochs", "1"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One real small run (and its data file), made once for the module."""
    base = tmp_path_factory.mktemp("hostile-more")
    data = base / "digits.npy"
    np.save(data, load_dataset("digits", limit=200).x.reshape(200, 64))
    run = base / "run"
    # No PCA seed or fallback: the damaged-model cases edit the model's hidden layers.
    search(str(data), out=run, **TINY, pca_seed=False, pca_fallback=False)
    return run, data


@dataclass
class Env:
    tmp: Path
    run: Path
    data: Path
    watched: list[Path] = field(default_factory=list)

    def watch(self, *paths: Path) -> None:
        self.watched.extend(paths)

    def copy_run(self, name: str = "copy") -> Path:
        dst = self.tmp / name
        shutil.copytree(self.run, dst, symlinks=True)
        self.watch(dst)
        return dst

    def file(self, name: str, data: bytes | str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def user_folder(self, files: dict[str, str]) -> Path:
        """A folder of user files (watched), e.g. ``{"model/my_weights.bin": "w"}``."""
        folder = self.tmp / "u1"
        folder.mkdir()
        for name, text in files.items():
            p = folder / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        self.watch(folder)
        return folder

    def npy(self, name: str, arr: np.ndarray) -> Path:
        path = self.tmp / name
        np.save(path, arr)
        return path


Case = Callable[[Env], list[str]]
CASES: dict[str, Case] = {}


def case(name: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        assert name not in CASES, name
        CASES[name] = fn
        return fn

    return register


def _search(*args: str | Path) -> list[str]:
    return [*SEARCH, *(str(a) for a in args)]


# ------------------------------------------------------------------ --overwrite


for _name in rf.ARTIFACTS:
    # A folder holding only a user file (or folder) that carries one of evoae's names.
    def _only(e: Env, name: str = _name) -> list[str]:
        files = {f"{name}/user.txt": "mine"} if "." not in name else {name: "mine"}
        return _search("--out", e.user_folder(files), "--overwrite")

    CASES[f"overwrite: folder holding only a user's {_name}"] = _only


@case("overwrite: u1/model/my_weights.bin and u1/plots/figure1.png")
def _(e: Env) -> list[str]:
    u1 = e.user_folder({"model/my_weights.bin": "w", "plots/figure1.png": "f"})
    return _search("--out", u1, "--overwrite")


@case("overwrite: summary.json and a .thesis.tmp")
def _(e: Env) -> list[str]:
    return _search(
        "--out", e.user_folder({"summary.json": "{}", ".thesis.tmp": "t"}), "--overwrite"
    )


@case("overwrite: only report.html")
def _(e: Env) -> list[str]:
    return _search("--out", e.user_folder({"report.html": "<p>mine</p>"}), "--overwrite")


@case("overwrite: all the artifact names, none of them evoae's")
def _(e: Env) -> list[str]:
    files = {n: "x" for n in rf.ARTIFACTS if "." in n}
    files.update({"model/model.json": "{}", "plots/fitness.png": "p"})
    return _search("--out", e.user_folder(files), "--overwrite")


@case("overwrite: a run with a user file beside it")
def _(e: Env) -> list[str]:
    run = e.copy_run()
    (run / "notes.txt").write_text("my notes")
    return _search("--out", run, "--overwrite")


@case("overwrite: a run with a user file in model/")
def _(e: Env) -> list[str]:
    run = e.copy_run()
    (run / "model" / "my_weights.bin").write_text("w")
    return _search("--out", run, "--overwrite")


@case("overwrite: a run with a user folder in plots/")
def _(e: Env) -> list[str]:
    run = e.copy_run()
    (run / "plots" / "drafts").mkdir()
    (run / "plots" / "drafts" / "a.png").write_text("a")
    return _search("--out", run, "--overwrite")


@case("overwrite: a run with a user's .thesis.tmp")
def _(e: Env) -> list[str]:
    run = e.copy_run()
    (run / ".thesis.tmp").write_text("t")
    return _search("--out", run, "--overwrite")


def _symlinked(e: Env, name: str) -> list[str]:
    run = e.copy_run()
    outside = e.tmp / "outside"
    outside.mkdir()
    (outside / "figure1.png").write_text("keep me")
    (outside / "model.json").write_text("keep me too")
    e.watch(outside)
    target = run / name
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    target.symlink_to(outside, target_is_directory=True)
    return _search("--out", run, "--overwrite")


for _name in ("plots", "model"):
    CASES[f"overwrite: a run whose {_name} is a symlink to a folder outside"] = lambda e, n=_name: (
        _symlinked(e, n)
    )


@case("overwrite: a run whose summary.json is a symlink to a user file")
def _(e: Env) -> list[str]:
    run = e.copy_run()
    mine = e.file("mine.json", '{"mine": true}')
    e.watch(mine)
    (run / "summary.json").unlink()
    (run / "summary.json").symlink_to(mine)
    return _search("--out", run, "--overwrite")


def _manifest(e: Env, text: str) -> list[str]:
    run = e.copy_run()
    (run / MANIFEST).write_text(text)
    return _search("--out", run, "--overwrite")


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
    CASES[f"overwrite: manifest {_name}"] = lambda e, t=_text: _manifest(e, t)


@case("overwrite: manifest is a folder")
def _(e: Env) -> list[str]:
    run = e.copy_run()
    (run / MANIFEST).unlink()
    (run / MANIFEST).mkdir()
    return _search("--out", run, "--overwrite")


@case("overwrite: bad data must not wipe a good run (1e308, -1e308 columns)")
def _(e: Env) -> list[str]:
    run = e.copy_run()
    big = e.npy("big.npy", np.array([[1e308, -1e308, 0.5, 1.0]] * 30))
    return _search("--dataset", big, "--code-size", "2", "--out", run, "--overwrite")


def _labelled_npz(e: Env, y: np.ndarray) -> Path:
    path = e.tmp / "labelled.npz"
    np.savez(path, x=np.random.default_rng(0).random((len(y), 8)), y=y)
    return path


# Objectives whose labels cannot serve them were refused only when the first candidate
# was scored: after --overwrite had cleared the good run.
for _name, _obj, _y in (
    ("probe on one class", "probe", np.zeros(60, int)),
    ("knn:3 on one class", "knn:3", np.zeros(60, int)),
    ("knn:99999 on 60 rows", "knn:99999", np.arange(60) % 2),
    ("auroc with no normal rows", "auroc", np.ones(60, int)),
    ("auroc with only normal rows", "auroc", np.zeros(60, int)),
):
    CASES[f"overwrite: --objective {_name} must not wipe a good run"] = lambda e, o=_obj, y=_y: (
        _search(
            "--dataset", _labelled_npz(e, y), "--objective", o, "--out", e.copy_run(), "--overwrite"
        )
    )


@case("overwrite: a FIFO as data must not wipe a good run")
def _(e: Env) -> list[str]:
    run = e.copy_run()
    fifo = e.tmp / "pipe.npy"
    os.mkfifo(fifo)
    return _search("--dataset", fifo, "--out", run, "--overwrite")


@case("out: a 300-character name")
def _(e: Env) -> list[str]:
    return _search("--out", e.tmp / ("r" * 300))


@case("out: a 300-character name with --overwrite")
def _(e: Env) -> list[str]:
    return _search("--out", e.tmp / ("r" * 300) / "run", "--overwrite")


# ------------------------------------------------------------------ data


def _npy_header(shape: tuple[int, ...], descr: str = "<f8", body: int = 1024) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue() + bytes(body)


def _npz_raw(e: Env, name: str, member: bytes, key: str = "x") -> Path:
    import zipfile

    path = e.tmp / name
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{key}.npy", member)
    return path


DATA: dict[str, Callable[[Env], Path | str]] = {
    "npy declaring (10**11, 64) with 1 KB": lambda e: e.file("big.npy", _npy_header((10**11, 64))),
    "npy declaring (10**6, 64) with 1 KB": lambda e: e.file("mid.npy", _npy_header((10**6, 64))),
    "npy declaring (2**62,) uint8": lambda e: e.file("u.npy", _npy_header((2**62,), "|u1")),
    "npy declaring 4-D huge images": lambda e: e.file(
        "img.npy", _npy_header((10**5, 1, 10**4, 10**4), "|u1")
    ),
    "npz member declaring (10**11, 64)": lambda e: _npz_raw(
        e, "big.npz", _npy_header((10**11, 64))
    ),
    "npz member declaring (10**6, 64)": lambda e: _npz_raw(e, "mid.npz", _npy_header((10**6, 64))),
    "npz labels declaring 10**12 rows": lambda e: _npz_with_bad_y(e),
    "npy truncated": lambda e: e.file("t.npy", _npy_bytes(np.zeros((100, 8)))[: 128 + 8 * 100 * 4]),
    "npy header only": lambda e: e.file("h.npy", _npy_bytes(np.zeros((100, 8)))[:128]),
    "npy with a broken header dict": lambda e: e.file(
        "b.npy", np.lib.format.magic(1, 0) + b"\x10\x00{'descr': <f8, }\n" + bytes(64)
    ),
    "npy format version 9": lambda e: e.file("v.npy", b"\x93NUMPY\x09\x00" + bytes(100)),
    "npy of complex numbers": lambda e: e.npy("c.npy", np.ones((30, 4), np.complex128)),
    "npy of strings": lambda e: e.npy("s.npy", np.array([["a", "b"]] * 30)),
    "npy of datetimes": lambda e: e.npy(
        "d.npy", np.array([["2020-01-01"] * 4] * 30, dtype="datetime64[D]")
    ),
    "npy of objects": lambda e: e.npy("o.npy", np.array([[1, {}]] * 30, dtype=object)),
    "npy 1e308 and -1e308 columns": lambda e: e.npy(
        "big.npy", np.array([[1e308, -1e308, 0.5, 1.0]] * 30)
    ),
    "npy float16 with inf": lambda e: e.npy(
        "h.npy", np.array([[np.inf, 1.0, 2.0, 3.0]] * 30, np.float16)
    ),
    "npy float32 with NaN": lambda e: e.npy(
        "n.npy", np.array([[np.nan, 1.0, 2.0, 3.0]] * 30, np.float32)
    ),
    "npy all -inf": lambda e: e.npy("i.npy", np.full((30, 4), -np.inf)),
    "npz with 1e308 and -1e308 columns": lambda e: _npz(
        e, np.array([[1e308, -1e308, 0.5, 1.0]] * 30)
    ),
    "csv with 1e308 and -1e308 columns": lambda e: e.file(
        "big.csv", "1e308,-1e308,0.5\n-1e308,1e308,1\n" * 20
    ),
    "csv with inf": lambda e: e.file("inf.csv", "1,2,inf\n3,4,5\n" * 20),
    "csv with nan": lambda e: e.file("nan.csv", "1,2,nan\n3,4,5\n" * 20),
    "csv of one ragged row": lambda e: e.file("r.csv", "1,2,3\n4,5\n"),
    "csv in UTF-16": lambda e: e.file("u.csv", "1,2,3\n4,5,6\n".encode("utf-16")),
    "a FIFO named .npy": lambda e: _fifo(e, "p.npy"),
    "a FIFO named .csv": lambda e: _fifo(e, "p.csv"),
    "a FIFO named .npz": lambda e: _fifo(e, "p.npz"),
    "a character device behind a .npy link": lambda e: _link(e, "z.npy", "/dev/zero"),
    "a character device behind a .csv link": lambda e: _link(e, "z.csv", "/dev/null"),
    "a folder named .npy": lambda e: _folder(e, "f.npy"),
    "a dangling .npy link": lambda e: _link(e, "gone.npy", "/nonexistent/evoae/x.npy"),
    "a name of 300 characters": lambda e: str(e.tmp / ("d" * 300 + ".npy")),
    "an unknown suffix": lambda e: e.file("data.parquet", "PAR1"),
}


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _npz(e: Env, arr: np.ndarray) -> Path:
    path = e.tmp / "a.npz"
    np.savez(path, x=arr)
    return path


def _npz_with_bad_y(e: Env) -> Path:
    import zipfile

    path = e.tmp / "y.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", _npy_bytes(np.zeros((30, 4))))
        zf.writestr("y.npy", _npy_header((10**12,), "<i8"))
    return path


def _fifo(e: Env, name: str) -> Path:
    path = e.tmp / name
    os.mkfifo(path)
    return path


def _link(e: Env, name: str, target: str) -> Path:
    path = e.tmp / name
    path.symlink_to(target)
    return path


def _folder(e: Env, name: str) -> Path:
    path = e.tmp / name
    path.mkdir()
    return path


for _name, _make in DATA.items():
    CASES[f"data: {_name}"] = lambda e, m=_make: _search("--dataset", m(e), "--out", e.tmp / "o")


def _mnist(e: Env, images: bytes) -> list[str]:
    folder = e.tmp / "data" / "mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_idx(folder / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 60, dtype=np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 28, 28), np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 20, dtype=np.uint8))
    (folder / "train-images-idx3-ubyte.gz").write_bytes(images)
    return _search("--dataset", "mnist", "--data-dir", folder.parent, "--out", e.tmp / "o")


def _zeros_gz(n: int, prefix: bytes = b"") -> bytes:
    """gzip of ``prefix`` and ``n`` zero bytes, compressed in pieces (cheap to build)."""
    import zlib

    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [comp.compress(prefix)]
    block = bytes(1 << 20)
    for _ in range(n >> 20):
        parts.append(comp.compress(block))
    parts.append(comp.flush())
    return b"".join(parts)


IDX = {
    "a gzip bomb of 64 MB of zeros": lambda: _zeros_gz(64 << 20),
    "a gzip bomb behind a valid 60x28x28 header": lambda: _zeros_gz(
        64 << 20, struct.pack(">HBB3I", 0, 8, 3, 60, 28, 28)
    ),
    "a header declaring 60000x60000x60000": lambda: gzip.compress(
        struct.pack(">HBB3I", 0, 8, 3, 60000, 60000, 60000) + bytes(100)
    ),
    "a raw header declaring 10**9 images": lambda: (
        struct.pack(">HBB3I", 0, 8, 3, 10**9, 28, 28) + bytes(784)
    ),
    "a raw file longer than its header": lambda: (
        struct.pack(">HBB3I", 0, 8, 3, 60, 28, 28) + bytes(60 * 784 + 5000)
    ),
    "a header of 255 dimensions": lambda: gzip.compress(
        struct.pack(">HBB", 0, 8, 255) + struct.pack(">255I", *([2] * 255))
    ),
    "float64 images": lambda: gzip.compress(
        struct.pack(">HBB3I", 0, 0x0E, 3, 60, 28, 28) + bytes(60 * 784 * 8)
    ),
    "two gzip members then garbage": lambda: (
        gzip.compress(b"\0\0") + gzip.compress(b"\x08\x03") + b"garbage"
    ),
}
for _name, _make in IDX.items():
    CASES[f"idx: {_name}"] = lambda e, m=_make: _mnist(e, m())


for _size in ("1025", "100000", "2147483647"):
    CASES[f"image size {_size}"] = lambda e, s=_size: _search(
        "--image-size", s, "--out", e.tmp / "o"
    )


# ------------------------------------------------------------------ resume: checkpoint


def _resume(e: Env, damage: Callable[[Path], Any]) -> list[str]:
    run = e.copy_run()
    damage(run)
    return _search("--resume", run)


def _edit_checkpoint(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / rf.CHECKPOINT
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))

    return damage


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        target = d
        *parents, last = key.split(".")
        for p in parents:
            target = target[p]
        target[last] = value

    return edit


CHECKPOINTS: dict[str, Callable[[Path], None]] = {
    "next_id -5": _edit_checkpoint(_set("next_id", -5)),
    "next_id a string": _edit_checkpoint(_set("next_id", "3")),
    "next_id past the journal": _edit_checkpoint(_set("next_id", 10**6)),
    "next_id a float": _edit_checkpoint(_set("next_id", 2.5)),
    "trainings above next_id": _edit_checkpoint(_set("trainings", 10**6)),
    "trainings negative": _edit_checkpoint(_set("trainings", -1)),
    "history not a list": _edit_checkpoint(_set("history", {"a": 1})),
    "history row of strings": _edit_checkpoint(_set("history", [{"best": "low"}])),
    "history row a list": _edit_checkpoint(_set("history", [[1, 2]])),
    "strategy missing": _edit_checkpoint(lambda d: d.pop("strategy")),
    "strategy a list": _edit_checkpoint(_set("strategy", [])),
    "strategy population not a list": _edit_checkpoint(_set("strategy.population", 5)),
    "strategy fitness shorter": _edit_checkpoint(lambda d: d["strategy"]["fitness"].pop()),
    "strategy fitness a word": _edit_checkpoint(
        lambda d: d["strategy"]["fitness"].__setitem__(0, "x")
    ),
    "strategy rng garbage": _edit_checkpoint(_set("strategy.rng", {"bit_generator": "nope"})),
    "strategy genome too short": _edit_checkpoint(
        lambda d: d["strategy"]["population"].__setitem__(0, [])
    ),
    "top level a list": lambda r: (r / rf.CHECKPOINT).write_text("[1, 2]"),
    "empty file": lambda r: (r / rf.CHECKPOINT).write_text(""),
    "binary garbage": lambda r: (r / rf.CHECKPOINT).write_bytes(bytes(range(256))),
    "NaN literal": lambda r: (r / rf.CHECKPOINT).write_text('{"next_id": NaN}'),
    "deep nesting": lambda r: (r / rf.CHECKPOINT).write_text("[" * 100_000 + "]" * 100_000),
    "deep but parseable nesting": _edit_checkpoint(
        _set("strategy.extra", json.loads("[" * 200 + "]" * 200))
    ),
    "a folder": lambda r: ((r / rf.CHECKPOINT).unlink(), (r / rf.CHECKPOINT).mkdir()),
}
for _name, _damage in CHECKPOINTS.items():
    CASES[f"resume: checkpoint {_name}"] = lambda e, d=_damage: _resume(e, d)


def _strategy_resume(name: str, edit: Callable[[dict[str, Any]], Any], **opts: Any):
    """A small finished run of strategy ``name``, its strategy state edited, resumed."""

    def make(e: Env) -> list[str]:
        run = e.tmp / name
        search(str(e.data), out=run, strategy=name, epochs=1, final_epochs=1, seed=1, **opts)
        e.watch(run)
        _edit_checkpoint(lambda d: edit(d["strategy"]))(run)
        return ["search", "--quiet", "--resume", str(run), "--evaluations", "9"]

    return make


def _trial(i: int, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda s: s["trials"][i].__setitem__(key, value)


def _param(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda s: s["trials"][0]["params"].__setitem__(key, value)


# The new strategies' states were trusted: each of these raised a traceback on resume
# (or, told -3, wrote a journal row of generation -3 before failing).
STRATEGY_STATES: dict[str, Callable[[Env], list[str]]] = {
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
for _name, _make in STRATEGY_STATES.items():
    CASES[f"resume: checkpoint {_name}"] = _make


# ------------------------------------------------------------------ resume: journal


def _sql(*statements: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        con = sqlite3.connect(run / rf.JOURNAL)
        for s in statements:
            con.execute(s)
        con.commit()
        con.close()

    return damage


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
    "row with a negative id": _sql("UPDATE evaluations SET id=-1 WHERE id=0"),
    "rows with a gap": _sql("DELETE FROM evaluations WHERE id=1"),
    "rows starting at 1": _sql("DELETE FROM evaluations WHERE id=0"),
    "genome not JSON": _sql("UPDATE evaluations SET genome='{oops' WHERE id=2"),
    "genome a JSON list": _sql("UPDATE evaluations SET genome='[1,2]' WHERE id=2"),
    "spec nested 10000 deep": _sql(
        f"UPDATE evaluations SET spec='{'[' * 10000}{']' * 10000}' WHERE id=1"
    ),
    "spec of 2 MB": _sql(f"UPDATE evaluations SET spec='\"{'x' * 2_000_000}\"' WHERE id=1"),
    "terms not JSON": _sql("UPDATE evaluations SET terms='nope' WHERE id=0"),
    "terms with a word": _sql("""UPDATE evaluations SET terms='{"mse": "low"}' WHERE id=0"""),
    "fitness a word": _sql("UPDATE evaluations SET fitness='abc' WHERE id=3"),
    "fitness -inf": _sql("UPDATE evaluations SET fitness=-1e999 WHERE id=3"),
    "val_loss a blob": _sql("UPDATE evaluations SET val_loss=x'00ff' WHERE id=3"),
    "params negative": _sql("UPDATE evaluations SET params=-7 WHERE id=1"),
    "params a word": _sql("UPDATE evaluations SET params='many' WHERE id=1"),
    "seed a float": _sql("UPDATE evaluations SET seed=1.5 WHERE id=1"),
    "seconds infinite": _sql("UPDATE evaluations SET seconds=1e999 WHERE id=1"),
    "status unknown": _sql("UPDATE evaluations SET status='weird' WHERE id=1"),
    "cached 5": _sql("UPDATE evaluations SET cached=5 WHERE id=1"),
    "generation negative": _sql("UPDATE evaluations SET generation=-3 WHERE id=1"),
    "error a blob": _sql("UPDATE evaluations SET error=x'00' WHERE id=1"),
    "settings meta not JSON": _sql("UPDATE meta SET value='{oops' WHERE key='settings'"),
    "settings meta a list": _sql("UPDATE meta SET value='[]' WHERE key='settings'"),
    "settings meta deep": _sql(
        f"UPDATE meta SET value='{'[' * 5000}{']' * 5000}' WHERE key='settings'"
    ),
    "settings meta missing": _sql("DELETE FROM meta WHERE key='settings'"),
    "settings population a word": _settings_meta(_set("population", "abc")),
    "settings population -5": _settings_meta(_set("population", -5)),
    "settings population 10**12": _settings_meta(_set("population", 10**12)),
    "settings code size a list": _settings_meta(_set("code_size", [4])),
    "settings epochs null": _settings_meta(_set("epochs", None)),
    "settings split unknown": _settings_meta(_set("split", "half")),
    "settings seed negative": _settings_meta(_set("seed", -1)),
    "settings image size 100000": _settings_meta(_set("image_size", 100000)),
    "space meta not JSON": _sql("UPDATE meta SET value='{' WHERE key='space'"),
    "file zero bytes": lambda r: (r / rf.JOURNAL).write_bytes(b""),
    "file of zeros": lambda r: (r / rf.JOURNAL).write_bytes(bytes(16384)),
    "header kept, pages zeroed": lambda r: (r / rf.JOURNAL).write_bytes(
        (r / rf.JOURNAL).read_bytes()[:100] + bytes((r / rf.JOURNAL).stat().st_size - 100)
    ),
    "a folder": lambda r: ((r / rf.JOURNAL).unlink(), (r / rf.JOURNAL).mkdir()),
}
for _name, _damage in JOURNALS.items():
    CASES[f"resume: journal {_name}"] = lambda e, d=_damage: _resume(e, d)


# ------------------------------------------------------------------ saved models


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
    CASES[f"export: {_name}"] = lambda e, d=_edit: _model(e, d)
for _name in ("hidden width -5", "unknown activation", "weights all NaN", "weights float64"):
    CASES[f"report: {_name}"] = lambda e, d=MODELS[_name]: _model(e, d, "report")
    CASES[f"sample: {_name}"] = lambda e, d=MODELS[_name]: _model(e, d, "sample")


# ------------------------------------------------------------------ smaller


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


@case("sample: a 300-character --out")
def _(e: Env) -> list[str]:
    return ["sample", str(e.run), "--out", str(e.tmp / ("s" * 300 + ".png"))]


@case("sample: --out not a png")
def _(e: Env) -> list[str]:
    return ["sample", str(e.run), "--out", str(e.tmp / "samples.txt")]


@case("runs show: a damaged journal row")
def _(e: Env) -> list[str]:
    run = e.copy_run()
    _sql("UPDATE evaluations SET genome='{' WHERE id=0")(run)
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


# ------------------------------------------------------------------ the test


def _snapshot(path: Path) -> dict[str, str]:
    """Every entry under ``path``: file digests, link targets, folder markers."""
    if path.is_symlink():
        return {".": "link:" + os.readlink(path)}
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    out = {}
    for p in sorted(path.rglob("*")):
        key = str(p.relative_to(path))
        if p.is_symlink():
            out[key] = "link:" + os.readlink(p)
        elif p.is_file():
            out[key] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[key] = "dir"
        else:
            out[key] = "special"
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_gives_one_line_and_changes_nothing(
    name: str, finished: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, data = finished
    env = Env(tmp_path, run, data)
    argv = CASES[name](env)
    watched = [run, *env.watched]
    before = [_snapshot(p) for p in watched]
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # pragma: no cover - argparse errors are not expected here
        code = int(e.code or 0)
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2, f"exit {code}; stderr: {err}; stdout: {captured.out[-500:]}"
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    # evoae's own errors read "evoae: error:", argument errors "evoae COMMAND: error:"
    assert len(lines) == 1 and re.match(r"evoae( [a-z]+)?: error: ", lines[0]), err
    assert [_snapshot(p) for p in watched] == before, "a run folder or user file changed"


def test_the_tables_hold_at_least_150_cases() -> None:
    import test_hostile

    assert len(CASES) >= 100
    assert len(CASES) + len(test_hostile.CASES) >= 150
