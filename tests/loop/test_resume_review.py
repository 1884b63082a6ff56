"""Cases a hostile review of the family/loop/guard changes found, kept as regressions."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import one_line_error

import evoae
from evoae.cli import main

RUN = dict(
    limit=300,
    strategy="microbial",
    population=4,
    generations=2,
    epochs=1,
    final_epochs=1,
    code_size=3,
    seed=1,
)


def _count(run: Path) -> int:
    with sqlite3.connect(f"file:{run / 'journal.sqlite'}?mode=ro", uri=True) as db:
        return db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("review") / "run"
    evoae.search("digits", out=run, **RUN)
    return run


def _copy(finished: Path, tmp_path: Path) -> Path:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    return run


def test_a_refused_resume_writes_no_journal_row(finished, tmp_path):
    """A checkpoint evoae did not write (here only re-indented) is refused before any
    candidate is evaluated: the journal keeps its rows, so the run stays resumable."""
    run = _copy(finished, tmp_path)
    ckpt = run / "checkpoint.json"
    ckpt.write_text(json.dumps(json.loads(ckpt.read_text()), indent=4))
    rows = _count(run)
    more = {**RUN, "generations": 4}
    one_line_error(lambda: evoae.search(out=run, resume=True, **more), "checkpoint.json")
    assert _count(run) == rows


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s.update(tournaments=-5),
        lambda s: s.update(tournaments=10**9),
        lambda s: s.update(reeval_pairs=[[0, 99]]),
    ],
)
def test_a_damaged_microbial_state_is_one_line(finished, tmp_path, edit, capsys):
    run = _copy(finished, tmp_path)
    ckpt = run / "checkpoint.json"
    data = json.loads(ckpt.read_text())
    edit(data["strategy"])
    ckpt.write_text(json.dumps(data, indent=2, sort_keys=True))
    from evoae.runs import guard

    guard.record(ckpt)  # as if evoae had written it: only the strategy's check refuses
    rows = _count(run)
    code = main(["search", "--resume", str(run), "--generations", "4", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert _count(run) == rows


def test_the_estimator_never_replaces_a_search_run(tmp_path):
    x = np.random.default_rng(0).random((80, 6))
    evoae.search(data=x, out=tmp_path / "api", **RUN)
    ae = evoae.EvolvedAutoencoder(
        3,
        run_dir=tmp_path / "api",
        strategy="microbial",
        population=2,
        generations=1,
        epochs=1,
        final_epochs=1,
    )
    one_line_error(lambda: ae.fit(x), "did not make")


def test_numpy_integers_are_settings_too():
    x = np.random.default_rng(0).random((60, 6))
    ae = evoae.EvolvedAutoencoder(
        np.int64(2),
        strategy="microbial",
        population=np.int64(2),
        generations=1,
        epochs=1,
        final_epochs=1,
    )
    assert ae.fit(x).transform(x).shape == (60, 2)


def test_ray_address_without_the_ray_executor_is_refused(tmp_path, capsys):
    code = main(["search", "--ray-address", "127.0.0.1:6379", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "--executor ray" in err and not (tmp_path / "r").exists()


def test_overwriting_a_run_in_use_says_so(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = sorted(p.name for p in run.iterdir())
        code = main(["search", "--out", str(run), "--overwrite", "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and "in use" in err, err
        assert sorted(p.name for p in run.iterdir()) == before
    finally:
        holder.kill()
        holder.wait(timeout=10)
