"""Issue 12, "nothing lost, ever": manifest, run lock, WAL-aware integrity, full disk,
workers that die with their parent, and the smaller promises (sample --out DIR/, Ray's
log lines, runs list with a damaged run).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import search_flags

from evoae.cli import main
from evoae.errors import EvoaeError
from evoae.families import check_spec as validate_spec
from evoae.loop import search
from evoae.runs import folder as rf
from evoae.runs import lock as run_lock
from evoae.runs.journal import Journal
from evoae.runs.manifest import MANIFEST, add_to_manifest, read_manifest
from evoae.runs.schema import validate_checkpoint

SRC = str(Path(__file__).resolve().parents[2] / "src")
TINY: dict[str, Any] = dict(
    limit=300, strategy="microbial", population=4, generations=2, epochs=1, final_epochs=1
)
ARGV = search_flags(**TINY)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _rows(run: Path) -> list[dict[str, Any]]:
    with Journal(run / rf.JOURNAL, readonly=True) as j:
        return [r.comparable() for r in j.rows()]


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted tiny run that the interrupted ones must equal."""
    return search("digits", out=tmp_path_factory.mktemp("ref") / "r", seed=4, **TINY).run_dir


# ------------------------------------------------------------------ manifest, --overwrite


def test_a_new_run_writes_its_manifest_first(tmp_path: Path) -> None:
    folder = rf.prepare_new(tmp_path / "r", overwrite=False)
    try:
        assert sorted(p.name for p in folder.iterdir()) == [MANIFEST]
        assert set(read_manifest(folder) or []) == set(rf.RUN_FILES)
    finally:
        run_lock.release_hold(folder)


@pytest.mark.parametrize(
    "files",
    [
        {"model/my_weights.bin": "w", "plots/figure1.png": "f"},
        {"summary.json": "{}", ".thesis.tmp": "t"},
        {"report.html": "<p>mine</p>"},
        {"journal.sqlite": "not a database"},
        {"model/model.json": "{}", "settings.json": "{}", "checkpoint.json": "{}"},
    ],
    ids=["model-and-plots", "summary-and-thesis-tmp", "report-only", "fake-journal", "names"],
)
def test_overwrite_refuses_a_folder_of_user_files_and_deletes_nothing(
    tmp_path: Path, files: dict[str, str]
) -> None:
    u1 = tmp_path / "u1"
    for name, text in files.items():
        (u1 / name).parent.mkdir(parents=True, exist_ok=True)
        (u1 / name).write_text(text)
    before = _tree(u1)
    with pytest.raises(EvoaeError, match="not an evoae run") as info:
        rf.prepare_new(u1, overwrite=True)
    assert "\n" not in str(info.value)
    assert _tree(u1) == before
    assert not run_lock.is_locked(u1)


def test_overwrite_never_follows_a_plots_symlink(tmp_path: Path) -> None:
    run = search("digits", out=tmp_path / "run", seed=0, **{**TINY, "generations": 0}).run_dir
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "figure1.png").write_text("keep me")
    shutil.rmtree(run / "plots")
    (run / "plots").symlink_to(outside, target_is_directory=True)
    before = _tree(run)
    with pytest.raises(EvoaeError, match="symbolic link"):
        rf.prepare_new(run, overwrite=True)
    assert (outside / "figure1.png").read_text() == "keep me"
    assert _tree(run) == before and (run / "plots").is_symlink()


def test_overwrite_replaces_a_run_and_what_was_added_to_its_manifest(tmp_path: Path) -> None:
    run = search("digits", out=tmp_path / "run", seed=0, **{**TINY, "generations": 0}).run_dir
    assert main(["report", str(run)]) == 0  # atomic writes record report.html
    assert main(["export", str(run), "--format", "safetensors", "--quiet"]) == 0
    listed = set(read_manifest(run) or [])
    assert {"report.html", "export"} <= listed
    assert main(["search", "--quiet", *ARGV, "--generations", "0", "--out", str(run)]) == 2
    assert (
        main(["search", "--quiet", *ARGV, "--generations", "0", "--overwrite", "--out", str(run)])
        == 0
    )
    assert not (run / "report.html").exists() and not (run / "export").exists()
    assert (run / "model" / "model.json").is_file()


def test_a_run_without_manifest_is_still_a_run_for_its_fixed_names(tmp_path: Path) -> None:
    """Runs from before manifests: a valid journal.sqlite makes the folder a run."""
    run = search("digits", out=tmp_path / "run", seed=0, **{**TINY, "generations": 0}).run_dir
    (run / MANIFEST).unlink()
    assert not add_to_manifest(run, "report.html")  # no manifest: left alone
    (run / "notes.txt").write_text("mine")
    with pytest.raises(EvoaeError, match=r"not evoae's \(notes.txt\)"):
        rf.prepare_new(run, overwrite=True)
    (run / "notes.txt").unlink()
    try:
        assert rf.prepare_new(run, overwrite=True) == run
        assert [p.name for p in run.iterdir()] == [MANIFEST]
    finally:
        run_lock.release_hold(run)


def test_stale_temps_removed_on_resume_are_only_evoaes(tmp_path: Path) -> None:
    (tmp_path / ".checkpoint.json.123.tmp").write_text("x")
    (tmp_path / ".thesis.tmp").write_text("mine")
    removed = rf.remove_stale_temps(tmp_path)
    assert [p.name for p in removed] == [".checkpoint.json.123.tmp"]
    assert (tmp_path / ".thesis.tmp").exists()


# ------------------------------------------------------------------ one writer per run


_HOLDER = """
import sys, time
from evoae.runs.lock import RunLock
with RunLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    folder = tmp_path / "run"
    folder.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(folder)], stdout=subprocess.PIPE, text=True, env=_env()
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    yield folder, proc
    proc.kill()
    proc.wait()


def test_a_second_holder_gets_one_line_with_the_pid(held: tuple[Path, Any]) -> None:
    folder, proc = held
    assert run_lock.is_locked(folder)
    with pytest.raises(EvoaeError) as info:
        with run_lock.RunLock(folder):
            pass
    msg = str(info.value)
    assert f"in use by another evoae process (pid {proc.pid})" in msg and "\n" not in msg
    proc.kill()
    proc.wait()  # the OS releases the lock of a killed process
    with run_lock.RunLock(folder):
        with run_lock.RunLock(folder):  # re-entrant in one process
            pass
    assert not run_lock.is_locked(folder)


def test_two_processes_on_one_run_the_second_is_refused_the_first_finishes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "evoae.cli", "search", "--quiet", *ARGV] + ["--out", str(run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / rf.CHECKPOINT).exists():  # the first is inside its loop
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        os.kill(first.pid, signal.SIGSTOP)  # mid-run, for as long as the checks take
        try:
            capsys.readouterr()
            for argv in (["--resume", str(run)], [*ARGV, "--out", str(run), "--overwrite"]):
                assert main(["search", "--quiet", *argv]) == 2
                err = capsys.readouterr().err.strip().splitlines()
                assert len(err) == 1 and err[0].startswith("evoae: error: ")
                assert f"is in use by another evoae process (pid {first.pid})" in err[0]
        finally:
            os.kill(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 0, err
    assert _rows(run)[-1]["id"] == len(_rows(run)) - 1
    assert (run / "model" / "model.json").is_file()


# ------------------------------------------------------------------ journal integrity


def _header_pages(path: Path) -> int:
    head = path.read_bytes()[:100]
    page = int.from_bytes(head[16:18], "big")
    return (65536 if page == 1 else page) * int.from_bytes(head[28:32], "big")


def test_a_journal_whose_pages_are_in_the_wal_passes_integrity(tmp_path: Path) -> None:
    """The full-disk bug: main file shorter than its header says, the WAL holds the rest."""
    src = tmp_path / "src.sqlite"
    code = f"""
import os, signal, sys
sys.path.insert(0, {SRC!r})
from evoae.runs.journal import Journal, Row
j = Journal({str(src)!r}, create=True)
j._db.execute("PRAGMA wal_autocheckpoint=0")
for i in range(60):
    j.append(Row(i, 0, {{"g": "x" * 900}}, {{"s": i}}, 0.5, 0.4, 0.3, 10, 0.1, 7, "ok", False,
                 {{"mse": 0.3}}, None))
os.kill(os.getpid(), signal.SIGKILL)  # no checkpoint of the WAL: it holds every row
"""
    subprocess.run([sys.executable, "-c", code], check=False)
    wal = src.with_name(src.name + "-wal")
    assert wal.stat().st_size > src.stat().st_size  # the rows live in the WAL
    # A checkpoint cut short by a full disk: page 1 (the new header) reached the main
    # file, the other pages did not; the WAL still holds them all.
    full = tmp_path / "full.sqlite"
    shutil.copy(src, full)
    shutil.copy(wal, full.with_name(full.name + "-wal"))
    sqlite3.connect(full).execute("PRAGMA wal_checkpoint(FULL)").close()
    run = tmp_path / "run"
    run.mkdir()
    journal = run / rf.JOURNAL
    journal.write_bytes(full.read_bytes()[:4096])
    shutil.copy(wal, journal.with_name(journal.name + "-wal"))
    assert journal.stat().st_size < _header_pages(journal)  # the old check said "truncated"
    with Journal(journal, readonly=True) as j:
        assert len(j) == 60 and [r.id for r in j.rows()] == list(range(60))
    with Journal(journal) as j:  # opened for writing (a resume): integrity passes too
        assert len(j) == 60


def test_resume_after_a_kill_with_rows_only_in_the_wal(tmp_path: Path, reference: Path) -> None:
    run = tmp_path / "r"
    cmd = [sys.executable, "-m", "evoae.cli", "search", "--quiet", *ARGV, "--seed", "4"]
    env = {**_env(), "EVOAE_TEST_KILL_AT": "appended:6"}
    done = subprocess.run([*cmd, "--out", str(run)], env=env, capture_output=True, timeout=300)
    assert done.returncode == -signal.SIGKILL
    assert (run / (rf.JOURNAL + "-wal")).stat().st_size > 0
    assert len(_rows(run)) == 6
    resumed = subprocess.run(
        [sys.executable, "-m", "evoae.cli", "search", "--quiet", "--resume", str(run)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "truncated" not in resumed.stderr
    assert _rows(run) == _rows(reference)


# ------------------------------------------------------------------ full disk


def _fail_rename_of(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first atomic write of ``name`` fails as a full disk does."""
    import evoae.runs.atomic as atomic

    real = os.replace

    def replace(src: Any, dst: Any, *a: Any, **kw: Any) -> None:
        if Path(dst).name == name:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(src, dst, *a, **kw)

    monkeypatch.setattr(atomic.os, "replace", replace)


def _fail_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    def savefig(self: Any, *a: Any, **kw: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", savefig)


def _fail_journal(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Journal.append
    calls: list[int] = []

    def append(self: Journal, row: Any) -> None:
        calls.append(row.id)
        if len(calls) > 5:
            raise sqlite3.OperationalError("database or disk is full")
        real(self, row)

    monkeypatch.setattr(Journal, "append", append)


SITES = {
    "settings.json": lambda mp: _fail_rename_of("settings.json", mp),
    "checkpoint.json": lambda mp: _fail_rename_of("checkpoint.json", mp),
    "journal": _fail_journal,
    "model.safetensors": lambda mp: _fail_rename_of("model.safetensors", mp),
    "model.json": lambda mp: _fail_rename_of("model.json", mp),
    "best_genome.json": lambda mp: _fail_rename_of("best_genome.json", mp),
    "plots": _fail_plots,
    "summary.json": lambda mp: _fail_rename_of("summary.json", mp),
}


@pytest.mark.parametrize("site", list(SITES))
def test_a_full_disk_at_each_write_site_then_resume_equals_the_uninterrupted_run(
    site: str,
    tmp_path: Path,
    reference: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = tmp_path / "r"
    SITES[site](monkeypatch)
    code = main(["search", "--quiet", *ARGV, "--seed", "4", "--out", str(run)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("evoae: error: "), err
    assert f"--resume {run}" in err[0]
    monkeypatch.undo()
    assert main(["search", "--quiet", "--resume", str(run)]) == 0
    assert _rows(run) == _rows(reference)
    ref_best = json.loads((reference / rf.BEST_GENOME).read_text())
    assert json.loads((run / rf.BEST_GENOME).read_text()) == ref_best
    ref_final = json.loads((reference / rf.SUMMARY).read_text())["final"]["val_loss"]
    assert json.loads((run / rf.SUMMARY).read_text())["final"]["val_loss"] == ref_final


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return done.returncode == 0


@pytest.mark.parametrize("free_kib", [24, 64, 96, 140, 200, 260, 320])
def test_a_real_full_disk_then_resume_once_there_is_room(
    tmp_path: Path, reference: Path, free_kib: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real tmpfs filled up to ``free_kib`` KiB (root only; skipped elsewhere)."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "2m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        filler = disk / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, bytes(4096))
        except OSError:
            pass
        finally:
            os.close(fd)
        st = os.statvfs(disk)
        assert st.f_bavail * st.f_frsize < 8192
        os.truncate(filler, filler.stat().st_size - free_kib * 1024)
        run = disk / "r"
        code = main(["search", "--quiet", *ARGV, "--seed", "4", "--out", str(run)])
        err = capsys.readouterr().err.strip().splitlines()
        print(f"free {free_kib} KiB: exit {code} {err}")  # which write site ran out (-s)
        if code == 2:
            assert len(err) == 1 and err[0].startswith("evoae: error: "), err
            filler.unlink()
            if "--resume" in err[0]:
                assert main(["search", "--quiet", "--resume", str(run)]) == 0, capsys.readouterr()
            else:  # stopped before the journal existed: nothing was evaluated
                assert "--overwrite" in err[0]
                again = ["search", "--quiet", *ARGV, "--seed", "4", "--out", str(run)]
                assert main([*again, "--overwrite"]) == 0, capsys.readouterr()
        else:  # the disk was not full enough for this run to notice
            assert code == 0
        assert _rows(run) == _rows(reference)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


# ------------------------------------------------------------------ workers


_POOL = """
import sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from evoae.execution.process import ProcessEvaluator
from evoae.training import Task
spec = {"family": "dense", "input_dim": 64, "code_size": 4, "hidden": [[32, "relu"]],
        "code_activation": "linear", "output_activation": "sigmoid", "optimizer": "adam",
        "lr": 0.001, "batch_size": 32}
x = np.random.default_rng(0).random((300, 64), dtype=np.float32)
ev = ProcessEvaluator(x, x, workers=2)
print("started", flush=True)
for _ in ev.evaluate([Task(spec, i, 10_000) for i in range(2)]):
    pass
"""


def _pool_workers(parent: int) -> list[int]:
    """Pids of the spawned pool workers whose parent is ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.split(") ")[1].split()[1]) == parent and b"spawn_main" in cmd:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_pool_workers_exit_when_the_search_is_killed() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _POOL, SRC], stdout=subprocess.PIPE, text=True, env=_env()
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 60
        while len(workers := _pool_workers(proc.pid)) < 2:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        time.sleep(3.0)  # the workers import torch, load the data and train
        proc.kill()  # SIGKILL: no cleanup, no atexit
        proc.wait()
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in workers), "orphaned pool workers"
    finally:
        proc.kill()


def test_a_wrong_ray_address_is_one_line_without_ray_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("ray")
    t0 = time.monotonic()
    code = main(["search", "--quiet", *ARGV, "--executor", "ray", "--ray-address", "127.0.0.1:9"])
    code_out = capsys.readouterr()
    assert code == 2 and time.monotonic() - t0 < 60
    lines = code_out.err.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Ray cluster at 127.0.0.1:9" in lines[0], lines


# ------------------------------------------------------------------ smaller promises


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vae") / "r"
    kw = dict(
        limit=200, strategy="microbial", population=2, generations=0, epochs=1, final_epochs=1
    )
    return search("digits", out=out, model="conv-vae", **kw).run_dir


@pytest.mark.parametrize("out", ["o/", "existing"])
def test_sample_into_a_folder_writes_samples_png_and_prints_it(
    vae_run: Path,
    tmp_path: Path,
    out: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    if out == "existing":
        (tmp_path / out).mkdir()
    assert main(["sample", str(vae_run), "--n", "4", "--out", out]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == str(Path(out) / "samples.png")
    assert (tmp_path / out.rstrip("/") / "samples.png").is_file()
    assert not (tmp_path / "o.png").exists()


def test_runs_list_shows_a_damaged_run_and_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = search("digits", out=tmp_path / "good", seed=0, **{**TINY, "generations": 0}).run_dir
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    con = sqlite3.connect(bad / rf.JOURNAL)
    con.execute("UPDATE evaluations SET genome='{' WHERE id=1")
    con.commit()
    con.close()
    capsys.readouterr()
    assert main(["runs", "list", str(tmp_path), "--json"]) == 0
    records = {Path(r["run"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert records["good"]["state"] == "finished"
    assert records["bad"]["state"].startswith("damaged (journal row 1 of run")
    assert main(["runs", "list", str(tmp_path)]) == 0
    assert "damaged" in capsys.readouterr().out


def test_an_empty_dataset_name_is_an_error() -> None:
    from evoae.data import load_dataset

    with pytest.raises(EvoaeError, match="dataset name is empty"):
        load_dataset("")


def test_a_checkpoint_may_not_point_past_its_journal() -> None:
    ckpt = {"strategy": {}, "next_id": 9, "history": [], "trainings": 3}
    validate_checkpoint(ckpt, journal_rows=9)
    with pytest.raises(EvoaeError, match="next_id: 9 but the journal holds 8"):
        validate_checkpoint(ckpt, journal_rows=8)


def test_a_spec_describing_a_giant_model_is_refused_before_it_is_built() -> None:
    spec = {
        "family": "dense",
        "input_dim": 65536,
        "code_size": 4,
        "hidden": [[65536, "relu"]] * 3,
        "code_activation": "linear",
        "output_activation": "sigmoid",
        "optimizer": "adam",
        "lr": 0.001,
        "batch_size": 32,
    }
    with pytest.raises(EvoaeError, match="parameters"):
        validate_spec(spec, "model.json")
    validate_spec({**spec, "input_dim": 64, "hidden": [[55, "relu"]]}, "model.json")


def test_ids_must_be_contiguous_when_a_journal_is_opened(tmp_path: Path) -> None:
    path = tmp_path / rf.JOURNAL
    with Journal(path, create=True):
        pass
    con = sqlite3.connect(path)
    row = (0, "{}", "{}", 1.0, None, None, 1, 0.1, 1, "ok", 0, "{}", None)
    con.execute("INSERT INTO evaluations VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", (-4, *row))
    con.commit()
    con.close()
    with pytest.raises(EvoaeError, match="ids run from -4 to -4"):
        Journal(path, readonly=True)
    assert np.isfinite(1.0)


class _Killed(BaseException):
    """Stands for a SIGKILL: no ``except Exception`` handler catches it."""


def test_a_kill_between_results_that_finish_out_of_order_leaves_a_resumable_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process pool finishes a batch in any order; the loop committed each result as
    # it came, so a kill after id 3 finished but before id 2 did left ids 0,1,3: a
    # journal that every later command refused as damaged, the run lost.
    from evoae.training.evaluator import SequentialEvaluator

    args = dict(strategy="random", evaluations=8, batch=4, epochs=1, final_epochs=1, limit=200)
    args.update(executor="inline", seed=3, pca_seed=False, pca_fallback=False)
    reference = search("digits", out=tmp_path / "ref", **args)
    inner = SequentialEvaluator.evaluate
    batches: list[int] = []

    def reversed_then_killed(self: Any, tasks: Any) -> Iterator[Any]:
        batches.append(len(tasks))
        results = sorted(inner(self, tasks), key=lambda r: -r[0])
        yield results[0]
        if len(batches) == 2:  # the second batch: its last task done, the others not
            raise _Killed
        yield from results[1:]

    monkeypatch.setattr(SequentialEvaluator, "evaluate", reversed_then_killed)
    run = tmp_path / "run"
    with pytest.raises(_Killed):
        search("digits", out=run, **args)
    monkeypatch.undo()
    with Journal(run / rf.JOURNAL, readonly=True) as j:  # refused before the fix
        ids = [r.id for r in j.rows()]
    assert batches[1] > 1 and ids == list(range(len(ids))) and len(ids) >= 4
    resumed = search("digits", out=run, resume=True, **args)
    assert resumed.best_genome == reference.best_genome
    with Journal(run / rf.JOURNAL) as a, Journal(tmp_path / "ref" / rf.JOURNAL) as b:
        assert [r.comparable() for r in a.rows()] == [r.comparable() for r in b.rows()]
