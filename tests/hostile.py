"""Shared machinery of the hostile-input tables (``tests/*/test_*_hostile.py``).

Each hostile test file holds the cases of one module's topic in up to two tables, both
run through the real command line in this process (``evoae.cli.main``):

* ``REFUSED`` (the first campaign's rule, :func:`check_refused`): exit status 2, one
  ``evoae ... error:`` line on stderr (argparse may add its usage lines above it), no
  traceback, and the shared finished run (:func:`hostile_run`) and any damaged copy a
  case returns unchanged byte-for-byte and mtime-for-mtime. A case returns the argv of
  one ``evoae`` call, or ``(argv, damaged_copy)``.
* ``UNCHANGED`` (the second, stricter rule, :func:`check_unchanged`): exit status 2,
  exactly one ``evoae: error:`` line on stderr and nothing else, no traceback, and the
  shared finished run (:func:`hostile_run_without_pca`), the case's own run folders
  and every user file it made byte-identical (SHA-256 of every file, symlinks compared
  by target). A case returns the argv; what it made is watched with :meth:`Env.watch`.

The fixtures are registered for every test by ``pytest_plugins`` in ``conftest.py``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import search_flags

from evoae.cli import main
from evoae.data import load_dataset
from evoae.data.idx import write_idx
from evoae.loop import search
from evoae.runs import folder as rf

#: The shared run of the ``REFUSED`` tables (and of the runs their cases make).
TINY = dict(strategy="microbial", population=4, generations=2, epochs=1, final_epochs=1, seed=1)
#: The shared run of the ``UNCHANGED`` tables.
TINY_ONE_GENERATION = dict(
    strategy="microbial", population=4, generations=1, epochs=1, final_epochs=1, seed=1
)
SMALL_SEARCH = ["search", "--quiet"]
SMALL_SEARCH += search_flags(
    strategy="microbial", population=4, generations=1, epochs=1, final_epochs=1
)
#: The tiny ``evoae search`` of :func:`picked_run` (and of the cases that search beside it).
PICK_SEARCH = ["search", "--quiet"]
PICK_SEARCH += search_flags(
    limit=200, strategy="microbial", population=4, generations=1, epochs=1, final_epochs=1,
    seed=1,
)  # fmt: skip
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": (60, 28, 28),
    "train-labels-idx1-ubyte.gz": (60,),
    "t10k-images-idx3-ubyte.gz": (20, 28, 28),
    "t10k-labels-idx1-ubyte.gz": (20,),
}
TESTS = Path(__file__).resolve().parent


# ------------------------------------------------------------------ fixtures


def _digits_file(base: Path) -> Path:
    data = base / "digits.npy"
    np.save(data, load_dataset("digits", limit=200).x.reshape(200, 64))
    return data


@pytest.fixture(scope="session")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The finished run (and its data file) the ``REFUSED`` cases build on, made once."""
    base = tmp_path_factory.mktemp("hostile")
    data = _digits_file(base)
    run = base / "run"
    search(str(data), out=run, **TINY)
    return run, data


@pytest.fixture(scope="session")
def hostile_run_without_pca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The finished run (and its data file) the ``UNCHANGED`` cases build on, made once."""
    base = tmp_path_factory.mktemp("hostile-more")
    data = _digits_file(base)
    run = base / "run"
    # No PCA seed or fallback: the damaged-model cases edit the model's hidden layers.
    search(str(data), out=run, **TINY_ONE_GENERATION, pca_seed=False, pca_fallback=False)
    return run, data


@pytest.fixture(scope="session")
def picked_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny finished run with front member 1 exported into it (``front/1``)."""
    run = tmp_path_factory.mktemp("wave3") / "run"
    assert main([*PICK_SEARCH, "--out", str(run)]) == 0
    assert main(["export", str(run), "--pick", "1", "--quiet"]) == 0
    assert (run / "front" / "1" / "export").is_dir()
    return run


# ------------------------------------------------------------------ what a case builds on


@dataclass
class Env:
    """What a case builds on: a scratch folder, a finished run, its data file, and the
    paths the case made that must come out unchanged."""

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

    def fake_mnist(self) -> Path:
        """A data dir with small but valid MNIST IDX files (cases then break one)."""
        rng = np.random.default_rng(0)
        folder = self.tmp / "data" / "mnist"
        folder.mkdir(parents=True)
        for name, shape in MNIST_FILES.items():
            high = 10 if len(shape) == 1 else 256
            write_idx(folder / name, rng.integers(0, high, shape, dtype=np.uint8))
        return folder


#: A ``REFUSED`` case: the argv, or the argv and a damaged copy to watch.
Refused = Callable[[Env], "list[str] | tuple[list[str], Path]"]
#: An ``UNCHANGED`` case: the argv (what it made is watched through the Env).
Unchanged = Callable[[Env], list[str]]


def search_argv(*args: str | Path) -> list[str]:
    """``evoae search --quiet ARGS`` (the ``REFUSED`` tables)."""
    return ["search", "--quiet", *(str(a) for a in args)]


def small_search_argv(*args: str | Path) -> list[str]:
    """A one-generation ``evoae search ARGS`` (the ``UNCHANGED`` tables)."""
    return [*SMALL_SEARCH, *(str(a) for a in args)]


def registrar(table: dict[str, Unchanged]) -> Callable[[str], Callable[[Unchanged], Unchanged]]:
    """``@case(name)`` for ``case = registrar(TABLE)``: adds a case under a new name."""

    def case(name: str) -> Callable[[Unchanged], Unchanged]:
        def register(fn: Unchanged) -> Unchanged:
            assert name not in table, name
            table[name] = fn
            return fn

        return register

    return case


def resume_argv(env: Env, *args: str | Path, run: Path | None = None) -> list[str]:
    """A ``REFUSED`` case: ``evoae search --resume RUN ARGS`` (the shared run by default)."""
    return search_argv("--resume", run or env.run, *args)


def digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """90 training and 30 validation digits (8x8, flattened) for the training-state cases."""
    d = load_dataset("digits", limit=120)
    x = torch.as_tensor(d.x.reshape(len(d.x), -1), dtype=torch.float32)
    return x[:90], x[90:]


# ------------------------------------------------------------------ damage shared by tables


def truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def damaged(env: Env, damage: Callable[[Path], None]) -> tuple[list[str], Path]:
    """A ``REFUSED`` case: a copy of the run, damaged, then resumed."""
    copy = env.copy_run()
    damage(copy)
    return search_argv("--resume", copy), copy


def resume_damaged(e: Env, damage: Callable[[Path], Any]) -> list[str]:
    """An ``UNCHANGED`` case: a copy of the run, damaged, then resumed."""
    run = e.copy_run()
    damage(run)
    return small_search_argv("--resume", run)


def edit_checkpoint(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / rf.CHECKPOINT
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))

    return damage


def set_key(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit setting ``key`` (dotted for nested dicts) to ``value``."""

    def edit(d: dict[str, Any]) -> None:
        target = d
        *parents, last = key.split(".")
        for p in parents:
            target = target[p]
        target[last] = value

    return edit


def sql(*statements: str) -> Callable[[Path], None]:
    """A damage running ``statements`` on the run's journal."""

    def damage(run: Path) -> None:
        con = sqlite3.connect(run / rf.JOURNAL)
        for s in statements:
            con.execute(s)
        con.commit()
        con.close()

    return damage


# ------------------------------------------------------------------ the two rules


def _files_with_mtimes(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``evoae ARGV`` in this process: exit status, stdout, stderr."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own usage errors
        code = int(e.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check_refused(
    case: Refused,
    finished: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Run a ``REFUSED`` case against :func:`hostile_run` and check the first rule."""
    run, data = finished
    built = case(Env(tmp_path, run, data))
    argv, watched = built if isinstance(built, tuple) else (built, None)
    folders = [run] + ([watched] if watched is not None else [])
    before = [_files_with_mtimes(f) for f in folders]
    code, _, err = _run_cli(argv, capsys)
    assert code == 2, f"exit {code}; stderr: {err}"
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("evoae") and "error:" in ln]
    assert len(errors) == 1, err
    if not errors[0].startswith("evoae search: error:"):  # ours: nothing but that line
        assert lines == errors, err
    assert [_files_with_mtimes(f) for f in folders] == before, "an existing run folder was changed"
    assert not Path("/tmp/evoae-pwned").exists()


def _entries(path: Path) -> dict[str, str]:
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


def check_unchanged(
    case: Unchanged,
    finished: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Run an ``UNCHANGED`` case against :func:`hostile_run_without_pca`, check the second rule."""
    run, data = finished
    env = Env(tmp_path, run, data)
    argv = case(env)
    watched = [run, *env.watched]
    before = [_entries(p) for p in watched]
    code, out, err = _run_cli(argv, capsys)
    assert code == 2, f"exit {code}; stderr: {err}; stdout: {out[-500:]}"
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    # evoae's own errors read "evoae: error:", argument errors "evoae COMMAND: error:"
    assert len(lines) == 1 and re.match(r"evoae( [a-z]+)?: error: ", lines[0]), err
    assert [_entries(p) for p in watched] == before, "a run folder or user file changed"


def refused_test(table: dict[str, Refused]) -> Callable[..., None]:
    """The parametrized test of a ``REFUSED`` table; bind it to
    ``test_bad_input_is_refused_with_one_line`` in the table's file."""

    @pytest.mark.parametrize("name", list(table))
    def test_bad_input_is_refused_with_one_line(name, hostile_run, tmp_path, capsys) -> None:
        check_refused(table[name], hostile_run, tmp_path, capsys)

    return test_bad_input_is_refused_with_one_line


def unchanged_test(table: dict[str, Unchanged]) -> Callable[..., None]:
    """The parametrized test of an ``UNCHANGED`` table; bind it to
    ``test_hostile_input_gives_one_line_and_changes_nothing`` in the table's file."""

    @pytest.mark.parametrize("name", list(table))
    def test_hostile_input_gives_one_line_and_changes_nothing(
        name, hostile_run_without_pca, tmp_path, capsys
    ) -> None:
        check_unchanged(table[name], hostile_run_without_pca, tmp_path, capsys)

    return test_hostile_input_gives_one_line_and_changes_nothing


# ------------------------------------------------------------------ all tables together


def all_cases(table: str) -> dict[str, Callable[[Env], Any]]:
    """The table ``table`` (``REFUSED`` or ``UNCHANGED``) of every hostile test file,
    merged; each file is imported under its own name, as pytest imports it."""
    merged: dict[str, Callable[[Env], Any]] = {}
    for path in sorted(TESTS.rglob("test_*_hostile.py")):
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        module = importlib.import_module(path.stem)
        for name, case in getattr(module, table, {}).items():
            assert name not in merged, f"{name!r} is in two {table} tables"
            merged[name] = case
    return merged
