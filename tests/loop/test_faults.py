"""Faults: diverging and out-of-memory candidates, a full disk, dying pool workers, bad weights.

A candidate's failure is a failed journal row and the search goes on; a full disk ends
the run with one error line and a journal that holds every finished evaluation, from
which the run resumes to the same result as an uninterrupted one. Weights load only
through safetensors after their SHA-256 matched model.json.
"""

from __future__ import annotations

import errno
import hashlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import dense_spec, search_flags
from safetensors.torch import save_file

import evoae.families.io as model_io
import evoae.runs.folder as folder_mod
import evoae.training.trainer as trainer_mod
from evoae.cli import main
from evoae.errors import EvoaeError
from evoae.execution.process import ProcessEvaluator
from evoae.families.io import load_model
from evoae.finish import derive_seed
from evoae.loop import search
from evoae.runs import folder as rf
from evoae.runs.journal import Journal
from evoae.runs.killpoints import ENV, ONCE_ENV
from evoae.settings import SearchSettings
from evoae.training import SequentialEvaluator, Task

TINY: dict[str, Any] = dict(
    limit=300, strategy="microbial", population=4, generations=4, epochs=1, final_epochs=1
)
ARGV = search_flags(**TINY)


def _rows(run: Path) -> list[dict[str, Any]]:
    with Journal(run / rf.JOURNAL) as j:
        return [r.comparable() for r in j.rows()]


def _enospc_after(n: int, real: Callable[..., None]) -> Callable[..., None]:
    """A writer that works ``n`` times, then fails as a full disk does."""
    calls = []

    def write(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        if len(calls) > n:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(*args, **kwargs)

    return write


# ------------------------------------------------------------------ candidates


def test_a_really_diverging_learning_rate_is_a_failed_row(tmp_path: Path) -> None:
    # No patching: SGD with learning rates up to 1e3 really overflows for some candidates.
    space = {"lr_gene": True, "lr_range": [1e-3, 1e3], "optimizers": ["sgd"]}
    kw = {**TINY, "population": 6}
    r = search("digits", out=tmp_path / "r", seed=2, space_options=space, **kw)
    rows = _rows(r.run_dir)
    failed = [row for row in rows if row["status"] == "failed"]
    assert failed and len(failed) < len(rows) == r.n_evaluations
    # Diverged in training, or in its last steps (a PCA-residual candidate whose epoch
    # mean stayed finite): the validation loss then says so.
    diverged = ("training loss diverged", "validation loss diverged")
    assert all(row["error"] in diverged for row in failed)
    assert all(row["spec"]["lr"] > 1.0 for row in failed)
    assert (r.run_dir / rf.BEST_GENOME).is_file()


def test_out_of_memory_candidates_are_failed_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fit = trainer_mod.fit

    def fit(model: torch.nn.Module, x: torch.Tensor, **kw: Any) -> list[float]:
        if sum(p.numel() for p in model.parameters()) > 3000:  # "too big for the device"
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_fit(model, x, **kw)

    monkeypatch.setattr(trainer_mod, "fit", fit)
    r = search("digits", out=tmp_path / "r", seed=0, final_continue=False, **TINY)
    rows = _rows(r.run_dir)
    oom = [row for row in rows if row["error"] == "out of memory"]
    assert oom and all(row["status"] == "failed" and row["params"] > 3000 for row in oom)
    assert any(row["status"] == "ok" for row in rows)
    assert r.final["status"] == "ok"


# ------------------------------------------------------------------ full disk


def test_a_full_disk_while_saving_the_model_fails_cleanly_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "r"
    monkeypatch.setattr(
        model_io, "atomic_write_bytes", _enospc_after(0, model_io.atomic_write_bytes)
    )
    code = main(["search", "--quiet", *ARGV, "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "No space left on device" in err
    assert f"--resume {run}" in err
    rows = _rows(run)  # the journal opens (quick_check passes) with every evaluation
    assert len(rows) == 4 + 4 and not (run / rf.MODEL_DIR / "model.json").exists()
    monkeypatch.undo()
    assert main(["search", "--quiet", "--resume", str(run)]) == 0
    assert _rows(run) == rows
    load_model(run / rf.MODEL_DIR)


def _journal_full_after(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal's n+1-th INSERT fails as SQLite reports a full disk."""
    real = Journal.append
    calls = []

    def append(self: Journal, row: Any) -> None:
        calls.append(row.id)
        if len(calls) > n:
            raise sqlite3.OperationalError("database or disk is full")
        real(self, row)

    monkeypatch.setattr(Journal, "append", append)


@pytest.mark.parametrize(
    "writer, rows_kept, next_id",
    [
        # settings.json, then one checkpoint per batch: the third checkpoint fails, so
        # the row of that batch is in the journal but the checkpoint is one batch older.
        ("checkpoint", 4 + 2, 4 + 1),
        # the sixth journal INSERT fails: five rows committed, checkpoint after batch 2.
        ("journal", 5, 4 + 1),
    ],
)
def test_a_full_disk_mid_search_loses_nothing_and_resumes_to_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str, rows_kept: int, next_id: int
) -> None:
    # One tournament per batch (overlap 1), so the counts above name batches exactly.
    tiny = {**TINY, "overlap": 1}
    reference = search("digits", out=tmp_path / "ref", seed=4, **tiny)
    run = tmp_path / "r"
    if writer == "checkpoint":
        write = _enospc_after(3, folder_mod.atomic_write_text)
        monkeypatch.setattr(folder_mod, "atomic_write_text", write)
    else:
        _journal_full_after(5, monkeypatch)
    with pytest.raises(EvoaeError, match="(No space left on device|disk is full).*--resume"):
        search("digits", out=run, seed=4, **tiny)
    monkeypatch.undo()
    ckpt = json.loads((run / rf.CHECKPOINT).read_text())  # the last complete one
    assert ckpt["next_id"] == next_id
    assert _rows(run) == _rows(reference.run_dir)[:rows_kept]
    resumed = search("digits", out=run, resume=True)
    assert _rows(run) == _rows(reference.run_dir)
    assert resumed.best_genome == reference.best_genome
    assert resumed.final["val_loss"] == reference.final["val_loss"]


# ------------------------------------------------------------------ process pool


SPEC = dense_spec()


def test_process_pool_survives_a_killed_worker_with_identical_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    splits = SearchSettings.of(limit=300).load_splits()
    tasks = [Task(SPEC, derive_seed("pool", i), 1) for i in range(3)]
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # workers train with one thread: compare like with like
    try:
        expected = dict(SequentialEvaluator(splits.train.x, splits.val.x).evaluate(tasks))
    finally:
        torch.set_num_threads(before)
    marker = tmp_path / "killed"
    monkeypatch.setenv(ENV, "forward:40")  # spawned workers inherit the environment
    monkeypatch.setenv(ONCE_ENV, str(marker))
    with ProcessEvaluator(splits.train.x, splits.val.x, workers=1) as ev:
        got = dict(ev.evaluate(tasks))
    assert marker.exists(), "no worker was killed: the test did not test anything"
    assert sorted(got) == [0, 1, 2]
    for i, r in got.items():
        assert r.status == "ok" and (r.fitness, r.terms) == (expected[i].fitness, expected[i].terms)


def test_process_pool_fails_a_task_after_bounded_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    splits = SearchSettings.of(limit=300).load_splits()
    monkeypatch.setenv(ENV, "forward:1")  # every worker dies on its first forward call
    with ProcessEvaluator(splits.train.x, splits.val.x, workers=1, max_retries=1) as ev:
        (i, r), *rest = list(ev.evaluate([Task(SPEC, 1, 1)]))
    assert not rest and i == 0
    assert r.status == "failed" and "worker died 2 times" in (r.error or "")


# ------------------------------------------------------------------ weights


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    r = search(
        "digits", out=tmp_path_factory.mktemp("w") / "r", seed=0, **{**TINY, "generations": 0}
    )
    return r.run_dir / rf.MODEL_DIR


def _copy(saved: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "model"
    dst.mkdir()
    for p in saved.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def _set_digest(model: Path) -> None:
    meta = json.loads((model / "model.json").read_text())
    meta["weights_sha256"] = hashlib.sha256((model / "model.safetensors").read_bytes()).hexdigest()
    (model / "model.json").write_text(json.dumps(meta))


def test_intact_weights_load(saved: Path) -> None:
    assert all(torch.isfinite(p).all() for p in load_model(saved).parameters())


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda m: (m / "model.safetensors").write_bytes(
                (m / "model.safetensors").read_bytes()[:-9]
            ),
            "truncated or was modified",
        ),
        (
            lambda m: (m / "model.safetensors").write_bytes(
                (m / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\0"
            ),
            "truncated or was modified",
        ),
        (
            lambda m: ((m / "model.safetensors").write_bytes(b"\x80\x04K\x01."), _set_digest(m)),
            "not valid safetensors",
        ),
        (
            lambda m: (
                save_file({"w": torch.zeros(3)}, str(m / "model.safetensors")),
                _set_digest(m),
            ),
            "do not fit",
        ),
        (lambda m: (m / "model.json").write_text("{not json"), "not a readable"),
        (lambda m: (m / "model.safetensors").unlink(), "missing or unreadable"),
    ],
    ids=["truncated", "modified", "pickle-with-digest", "wrong-tensors", "bad-json", "missing"],
)
def test_damaged_weights_are_refused(
    saved: Path, tmp_path: Path, damage: Callable[[Path], Any], message: str
) -> None:
    model = _copy(saved, tmp_path)
    damage(model)
    with pytest.raises(EvoaeError, match=message) as info:
        load_model(model)
    assert "\n" not in str(info.value)
