"""Hostile run folders: ``--out`` and ``--overwrite`` of folders evoae did not write (or
wrote and a user added to), symlinks out of a run, bad input that must not wipe a good
run, and ``--resume`` of what is not a run; each refused with one line, nothing deleted
(rules of the two tables in ``tests/hostile.py``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hostile import (
    PICK_SEARCH,
    Env,
    Refused,
    Unchanged,
    refused_test,
    registrar,
    resume_argv,
    search_argv,
    small_search_argv,
    unchanged_test,
)

from evoae.cli import main
from evoae.runs import folder as rf

REFUSED: dict[str, Refused] = {
    "out is a file": lambda e: search_argv("--out", e.file("f", "x")),
    "out under a file": lambda e: search_argv("--out", e.file("f", "x") / "run"),
    "out not writable": lambda e: search_argv("--out", "/proc/evoae-hostile/run"),
    "out holds a run": lambda e: search_argv("--out", e.run),
    "out holds other files": lambda e: search_argv("--out", e.file("f", "x").parent),
    "resume a missing folder": lambda e: resume_argv(e, run=e.tmp / "nope"),
    "resume a folder that is not a run": lambda e: resume_argv(e, run=e.tmp),
}

# ------------------------------------------------------------------ second table: --overwrite

UNCHANGED: dict[str, Unchanged] = {}
case = registrar(UNCHANGED)


for _name in rf.ARTIFACTS:
    # A folder holding only a user file (or folder) that carries one of evoae's names.
    def _only(e: Env, name: str = _name) -> list[str]:
        files = {f"{name}/user.txt": "mine"} if "." not in name else {name: "mine"}
        return small_search_argv("--out", e.user_folder(files), "--overwrite")

    UNCHANGED[f"overwrite: folder holding only a user's {_name}"] = _only


@case("overwrite: u1/model/my_weights.bin and u1/plots/figure1.png")
def _(e: Env) -> list[str]:
    u1 = e.user_folder({"model/my_weights.bin": "w", "plots/figure1.png": "f"})
    return small_search_argv("--out", u1, "--overwrite")


@case("overwrite: summary.json and a .thesis.tmp")
def _(e: Env) -> list[str]:
    return small_search_argv(
        "--out", e.user_folder({"summary.json": "{}", ".thesis.tmp": "t"}), "--overwrite"
    )


@case("overwrite: only report.html")
def _(e: Env) -> list[str]:
    return small_search_argv("--out", e.user_folder({"report.html": "<p>mine</p>"}), "--overwrite")


@case("overwrite: all the artifact names, none of them evoae's")
def _(e: Env) -> list[str]:
    files = {n: "x" for n in rf.ARTIFACTS if "." in n}
    files.update({"model/model.json": "{}", "plots/fitness.png": "p"})
    return small_search_argv("--out", e.user_folder(files), "--overwrite")


@case("overwrite: a run with a user file beside it")
def _(e: Env) -> list[str]:
    run = e.copy_run()
    (run / "notes.txt").write_text("my notes")
    return small_search_argv("--out", run, "--overwrite")


@case("overwrite: a run with a user file in model/")
def _(e: Env) -> list[str]:
    run = e.copy_run()
    (run / "model" / "my_weights.bin").write_text("w")
    return small_search_argv("--out", run, "--overwrite")


@case("overwrite: a run with a user folder in plots/")
def _(e: Env) -> list[str]:
    run = e.copy_run()
    (run / "plots" / "drafts").mkdir()
    (run / "plots" / "drafts" / "a.png").write_text("a")
    return small_search_argv("--out", run, "--overwrite")


@case("overwrite: a run with a user's .thesis.tmp")
def _(e: Env) -> list[str]:
    run = e.copy_run()
    (run / ".thesis.tmp").write_text("t")
    return small_search_argv("--out", run, "--overwrite")


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
    return small_search_argv("--out", run, "--overwrite")


for _name in ("plots", "model"):
    UNCHANGED[f"overwrite: a run whose {_name} is a symlink to a folder outside"] = (
        lambda e, n=_name: _symlinked(e, n)
    )


@case("overwrite: a run whose summary.json is a symlink to a user file")
def _(e: Env) -> list[str]:
    run = e.copy_run()
    mine = e.file("mine.json", '{"mine": true}')
    e.watch(mine)
    (run / "summary.json").unlink()
    (run / "summary.json").symlink_to(mine)
    return small_search_argv("--out", run, "--overwrite")


@case("overwrite: bad data must not wipe a good run (1e308, -1e308 columns)")
def _(e: Env) -> list[str]:
    run = e.copy_run()
    big = e.npy("big.npy", np.array([[1e308, -1e308, 0.5, 1.0]] * 30))
    return small_search_argv("--dataset", big, "--code-size", "2", "--out", run, "--overwrite")


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
    _key = f"overwrite: --objective {_name} must not wipe a good run"
    UNCHANGED[_key] = lambda e, o=_obj, y=_y: small_search_argv(
        "--dataset", _labelled_npz(e, y), "--objective", o, "--out", e.copy_run(), "--overwrite"
    )


@case("overwrite: a FIFO as data must not wipe a good run")
def _(e: Env) -> list[str]:
    run = e.copy_run()
    fifo = e.tmp / "pipe.npy"
    os.mkfifo(fifo)
    return small_search_argv("--dataset", fifo, "--out", run, "--overwrite")


@case("out: a 300-character name")
def _(e: Env) -> list[str]:
    return small_search_argv("--out", e.tmp / ("r" * 300))


@case("out: a 300-character name with --overwrite")
def _(e: Env) -> list[str]:
    return small_search_argv("--out", e.tmp / ("r" * 300) / "run", "--overwrite")


test_bad_input_is_refused_with_one_line = refused_test(REFUSED)

test_hostile_input_gives_one_line_and_changes_nothing = unchanged_test(UNCHANGED)


# ------------------------------------------------------------------ --overwrite and front/


def test_overwrite_removes_the_front_that_export_pick_wrote(picked_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(picked_run, run)
    assert main([*PICK_SEARCH, "--out", str(run), "--overwrite"]) == 0
    assert not (run / "front").exists()


@pytest.mark.parametrize(
    "where", ["front/notes.txt", "front/1/notes.txt", "front/1/model/notes.txt", "front/x/a"]
)
def test_overwrite_refuses_a_user_file_in_front(picked_run, tmp_path, capsys, where):
    run = tmp_path / "run"
    shutil.copytree(picked_run, run)
    (run / where).parent.mkdir(parents=True, exist_ok=True)
    (run / where).write_text("mine")
    before = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    capsys.readouterr()
    assert main([*PICK_SEARCH, "--out", str(run), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a" in err[0] and "evoae writes" in err[0], err
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == before
