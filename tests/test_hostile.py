"""Hostile input: bad data, bad settings, bad folders and damaged runs, one table.

Every case runs the real command line in this process (``evoae.cli.main``) and must
end with exit status 2, one clear error line on stderr (argparse may add its usage
lines above it) and no traceback, and must leave an existing run folder byte-for-byte
and mtime-for-mtime as it was. The run folders watched are a finished run shared by all
cases and, for the cases that damage a run, the damaged copy itself.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from evoae.cli import main
from evoae.data import load_dataset
from evoae.data.idx import write_idx
from evoae.loop import search
from evoae.runs import folder as rf

TINY = dict(population=4, generations=2, epochs=1, final_epochs=1, seed=1)
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": (60, 28, 28),
    "train-labels-idx1-ubyte.gz": (60,),
    "t10k-images-idx3-ubyte.gz": (20, 28, 28),
    "t10k-labels-idx1-ubyte.gz": (20,),
}


@dataclass
class Env:
    """What a case builds on: a scratch folder, a finished run and its data file."""

    tmp: Path
    run: Path
    data: Path

    def copy_run(self) -> Path:
        dst = self.tmp / "copy"
        shutil.copytree(self.run, dst)
        return dst

    def fake_mnist(self) -> Path:
        """A data dir with small but valid MNIST IDX files (cases then break one)."""
        rng = np.random.default_rng(0)
        folder = self.tmp / "data" / "mnist"
        folder.mkdir(parents=True)
        for name, shape in MNIST_FILES.items():
            high = 10 if len(shape) == 1 else 256
            write_idx(folder / name, rng.integers(0, high, shape, dtype=np.uint8))
        return folder

    def file(self, name: str, data: bytes | str) -> Path:
        path = self.tmp / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def npy(self, name: str, arr: np.ndarray) -> Path:
        path = self.tmp / name
        np.save(path, arr)
        return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("hostile")
    data = base / "digits.npy"
    np.save(data, load_dataset("digits", limit=200).x.reshape(200, 64))
    run = base / "run"
    search(str(data), out=run, **TINY)
    return run, data


# ------------------------------------------------------------------ case builders
# Each returns the argv of one `evoae` call; cases that damage a run return the damaged
# copy as a second element so that it is watched too.

Case = Callable[[Env], "list[str] | tuple[list[str], Path]"]


def _search(*args: str | Path) -> list[str]:
    return ["search", "--quiet", *(str(a) for a in args)]


def _mnist(env: Env, damage: Callable[[Path], None]) -> list[str]:
    folder = env.fake_mnist()
    damage(folder / "train-images-idx3-ubyte.gz")
    return _search("--dataset", "mnist", "--data-dir", folder.parent, "--out", env.tmp / "o")


def _truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def _garbage_gzip(path: Path) -> None:
    path.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4)


def _wrong_magic(path: Path) -> None:
    header = struct.pack(">HBB", 0, 0x42, 3)  # dtype code 0x42 does not exist
    path.write_bytes(gzip.compress(header + struct.pack(">3I", 60, 28, 28) + bytes(60 * 784)))


def _short_payload(path: Path) -> None:
    header = struct.pack(">HBB3I", 0, 0x08, 3, 60, 28, 28)
    path.write_bytes(gzip.compress(header + bytes(100)))


def _resume(env: Env, *args: str | Path, run: Path | None = None) -> list[str]:
    return _search("--resume", run or env.run, *args)


def _damaged(env: Env, damage: Callable[[Path], None]) -> tuple[list[str], Path]:
    copy = env.copy_run()
    damage(copy)
    return _search("--resume", copy), copy


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


CASES: dict[str, Case] = {
    # --- data files
    "idx truncated gzip": lambda e: _mnist(e, _truncate),
    "idx corrupt gzip stream": lambda e: _mnist(e, _garbage_gzip),
    "idx wrong magic number": lambda e: _mnist(e, _wrong_magic),
    "idx payload shorter than header": lambda e: _mnist(e, _short_payload),
    "data dir is a file": lambda e: _search(
        "--dataset", "mnist", "--data-dir", e.file("f", "x"), "--out", e.tmp / "o"
    ),
    "npy with NaN": lambda e: _search(
        "--dataset", e.npy("a.npy", np.full((30, 8), np.nan, np.float32)), "--out", e.tmp / "o"
    ),
    "npz with infinity": lambda e: _search(
        "--dataset", _npz(e, np.array([[1.0, np.inf]] * 30)), "--out", e.tmp / "o"
    ),
    "empty npy": lambda e: _search(
        "--dataset", e.npy("a.npy", np.zeros((0, 8), np.float32)), "--out", e.tmp / "o"
    ),
    "1-D npy": lambda e: _search(
        "--dataset", e.npy("a.npy", np.zeros(50, np.float32)), "--out", e.tmp / "o"
    ),
    "5-D npy": lambda e: _search(
        "--dataset", e.npy("a.npy", np.zeros((5, 1, 2, 3, 4))), "--out", e.tmp / "o"
    ),
    "npy of pickled objects": lambda e: _search(
        "--dataset", e.npy("a.npy", np.array([{"a": 1}] * 4, dtype=object)), "--out", e.tmp / "o"
    ),
    "npy that is not npy": lambda e: _search(
        "--dataset", e.file("a.npy", b"\x93NUMPY garbage"), "--out", e.tmp / "o"
    ),
    "csv with a text column": lambda e: _search(
        "--dataset", e.file("a.csv", "1,2,cat\n3,4,dog\n" * 20), "--out", e.tmp / "o"
    ),
    "empty csv": lambda e: _search("--dataset", e.file("a.csv", ""), "--out", e.tmp / "o"),
    "unknown dataset name": lambda e: _search("--dataset", "cifar", "--out", e.tmp / "o"),
    "image size on tabular data": lambda e: _search(
        "--dataset", e.data, "--image-size", "8", "--out", e.tmp / "o"
    ),
    # --- settings
    "code size = input size": lambda e: _search("--code-size", "64", "--out", e.tmp / "o"),
    "code size > input size": lambda e: _search("--code-size", "1000", "--out", e.tmp / "o"),
    "zero population": lambda e: _search("--population", "0"),
    "negative population": lambda e: _search("--population", "-3"),
    "population of one": lambda e: _search("--population", "1", "--out", e.tmp / "o"),
    "zero epochs": lambda e: _search("--epochs", "0"),
    "negative epochs": lambda e: _search("--epochs", "-1"),
    "zero deme": lambda e: _search("--deme", "0"),
    "negative generations": lambda e: _search("--generations", "-2"),
    "recombination above 1": lambda e: _search("--recombination", "1.5"),
    "unknown activation": lambda e: _search("--activations", "swishy", "--out", e.tmp / "o"),
    "unknown optimizer": lambda e: _search("--optimizers", "adamx", "--out", e.tmp / "o"),
    "unknown model family": lambda e: _search("--model", "gan", "--out", e.tmp / "o"),
    "unknown preset": lambda e: _search("--preset", "huge", "--out", e.tmp / "o"),
    "unknown executor over a run": lambda e: _search(
        "--executor", "spark", "--out", e.run, "--overwrite"
    ),
    "bad settings over a run": lambda e: _search(
        "--code-size", "500", "--out", e.run, "--overwrite"
    ),
    # --- output folders
    "out is a file": lambda e: _search("--out", e.file("f", "x")),
    "out under a file": lambda e: _search("--out", e.file("f", "x") / "run"),
    "out not writable": lambda e: _search("--out", "/proc/evoae-hostile/run"),
    "out holds a run": lambda e: _search("--out", e.run),
    "out holds other files": lambda e: _search("--out", e.file("f", "x").parent),
    # --- resume
    "resume a missing folder": lambda e: _resume(e, run=e.tmp / "nope"),
    "resume a folder that is not a run": lambda e: _resume(e, run=e.tmp),
    "resume: journal overwritten": lambda e: _damaged(
        e, lambda r: (r / rf.JOURNAL).write_bytes(b"not a database" * 100)
    ),
    "resume: journal truncated": lambda e: _damaged(e, lambda r: _truncate(r / rf.JOURNAL)),
    "resume: checkpoint corrupted": lambda e: _damaged(
        e, lambda r: (r / rf.CHECKPOINT).write_text('{"strategy": ')
    ),
    "resume: checkpoint of another shape": lambda e: _damaged(
        e, lambda r: (r / rf.CHECKPOINT).write_text('{"strategy": {}}')
    ),
    "resume: other code size": lambda e: _resume(e, "--code-size", "3"),
    "resume: other dataset": lambda e: _resume(e, "--dataset", "digits"),
    "resume: other preset": lambda e: _resume(e, "--preset", "extended"),
    "resume: fewer generations": lambda e: _resume(e, "--generations", "1"),
    "resume: data changed since": lambda e: _resume_changed_data(e),
    # --- saved models
    "export: weights modified": lambda e: _export(e, _flip_byte),
    "export: weights truncated": lambda e: _export(e, _truncate),
    "export: pickle with matching digest": lambda e: _export(e, _pickle_weights),
}


def _npz(env: Env, arr: np.ndarray) -> Path:
    path = env.tmp / "a.npz"
    np.savez(path, x=arr)
    return path


def _resume_changed_data(env: Env) -> tuple[list[str], Path]:
    """A run on a copy of the data file whose values then change (same shape)."""
    data = env.tmp / "data.npy"
    shutil.copy(env.data, data)
    run = env.tmp / "run-on-copy"
    search(str(data), out=run, **{**TINY, "final_epochs": 0})
    np.save(data, np.load(data)[::-1].copy())
    return _search("--resume", run), run


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own usage errors
        code = int(e.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_with_one_line(
    name: str, finished: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, data = finished
    env = Env(tmp_path, run, data)
    built = CASES[name](env)
    argv, watched = built if isinstance(built, tuple) else (built, None)
    folders = [run] + ([watched] if watched is not None else [])
    before = [_snapshot(f) for f in folders]
    capsys.readouterr()
    code, err = _run_cli(argv, capsys)
    assert code == 2, f"exit {code}; stderr: {err}"
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("evoae") and "error:" in ln]
    assert len(errors) == 1, err
    if not errors[0].startswith("evoae search: error:"):  # ours: nothing but that line
        assert lines == errors, err
    assert [_snapshot(f) for f in folders] == before, "an existing run folder was changed"
    assert not Path("/tmp/evoae-pwned").exists()


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 25
