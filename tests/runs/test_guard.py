"""The write guard (:mod:`evoae.runs.guard`) and read-only inspection (issue 21).

Each hostile case of the issue is one test: a user's file that evoae used to replace or
delete, a link that used to lead a write outside the run, a wrong success. Every test
checks that the user's bytes are unchanged, not only that an error was raised.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from campaign import hold_lock

from evoae.cli import main
from evoae.errors import EvoaeError
from evoae.loop import search
from evoae.runs import folder as rf
from evoae.runs import guard
from evoae.runs import lock as run_lock
from evoae.runs.atomic import atomic_write_bytes
from evoae.runs.guard import check_new_file, claim, is_recorded
from evoae.runs.journal import Journal
from evoae.runs.manifest import add_to_manifest, read_digests

TINY: dict[str, Any] = dict(
    limit=300, strategy="microbial", population=4, generations=0, epochs=1, final_epochs=1
)


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file (and link) under ``folder``: its bytes and mtime."""
    out: dict[str, tuple[bytes, int]] = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            out[rel] = (os.readlink(p).encode(), 0)
        elif p.is_file():
            out[rel] = (p.read_bytes(), p.stat().st_mtime_ns)
        else:
            out[rel] = (b"<dir>", 0)
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run, exported once (export/ and report.html are evoae's)."""
    run = search("digits", out=tmp_path_factory.mktemp("base") / "run", seed=0, **TINY).run_dir
    assert main(["export", str(run), "--quiet"]) == 0
    assert main(["report", str(run), "--quiet"]) == 0
    return run


@pytest.fixture
def run(base: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(base, dst, symlinks=True)
    return dst


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1, err


# ------------------------------------------------------------------ the manifest


def test_every_file_evoae_wrote_in_a_run_has_its_digest(run: Path) -> None:
    digests = read_digests(run)
    assert digests is not None
    for rel in (
        "checkpoint.json",
        "settings.json",
        "summary.json",
        "best_genome.json",
        "model/model.json",
        "model/model.safetensors",
        "plots/fitness.png",
        "plots/reconstructions.png",
        "report.html",
        "export/export.json",
    ):
        assert rel in digests, rel
        assert is_recorded(run, run / rel), rel


# ------------------------------------------------------------------ --overwrite


@pytest.mark.parametrize(
    "rel, data",
    [
        ("plots/holiday.png", b"\x89PNG my photo"),
        ("export/production_v3.onnx", b"my production model"),
        ("model/notes.txt", b"mine"),
    ],
)
def test_overwrite_keeps_a_user_file_in_an_evoae_folder(run: Path, rel: str, data: bytes) -> None:
    (run / rel).write_bytes(data)
    before = _snapshot(run)
    with pytest.raises(EvoaeError, match=Path(rel).name) as info:
        rf.prepare_new(run, overwrite=True)
    assert "\n" not in str(info.value) and "nothing was deleted" in str(info.value)
    assert _snapshot(run) == before
    assert not run_lock.is_locked(run)


@pytest.mark.parametrize("rel", ["plots/fitness.png", "summary.json", "report.html"])
def test_overwrite_keeps_an_evoae_file_the_user_edited(run: Path, rel: str) -> None:
    (run / rel).write_bytes((run / rel).read_bytes() + b" edited")
    before = _snapshot(run)
    with pytest.raises(EvoaeError, match="changed since"):
        rf.prepare_new(run, overwrite=True)
    assert _snapshot(run) == before


def test_overwrite_keeps_a_user_json_named_like_a_state(run: Path, tmp_path: Path) -> None:
    add_to_manifest(run, rf.STATES_DIR)
    (run / "states").mkdir()
    (run / "states" / "2024.json").write_text('{"year": 2024}')
    before = _snapshot(run)
    with pytest.raises(EvoaeError, match="2024.json"):
        rf.prepare_new(run, overwrite=True)
    assert _snapshot(run) == before


def test_overwrite_removes_evoaes_own_run_after_a_report_and_export(run: Path) -> None:
    removed = rf.prepare_new(run, overwrite=True)
    try:
        assert sorted(p.name for p in removed.iterdir()) == ["evoae-run.json"]
    finally:
        run_lock.release_hold(run)


def _save_state(stem: Path) -> None:
    from evoae.training.rungs import save_rung

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    save_rung(stem, model, opt, 1, seed=3)


def test_states_are_told_apart_by_content_and_pruning_keeps_user_files(tmp_path: Path) -> None:
    states = tmp_path / "states"
    states.mkdir()
    _save_state(states / "3")
    (states / "2024.json").write_text('{"year": 2024}')
    (states / "7.safetensors").write_bytes(b"my own weights, not a safetensors file")
    assert rf.is_state_file(states / "3.json") and rf.is_state_file(states / "3.safetensors")
    assert not rf.is_state_file(states / "2024.json")
    assert not rf.is_state_file(states / "7.safetensors")
    rf.prune_states(tmp_path, keep=set())
    assert sorted(p.name for p in states.iterdir()) == ["2024.json", "7.safetensors"]
    # A state is never saved over a user's file of its name; a killed run's own is fine.
    _save_state(states / "8")
    assert rf.save_stem(tmp_path, 8) == states / "8"
    with pytest.raises(EvoaeError, match="not a training state"):
        rf.save_stem(tmp_path, 7)
    assert (states / "7.safetensors").read_bytes() == b"my own weights, not a safetensors file"


# ------------------------------------------------------------------ links


def test_a_write_through_a_linked_plots_folder_is_refused(run: Path, tmp_path: Path) -> None:
    outside = tmp_path / "photos"
    outside.mkdir()
    (outside / "fitness.png").write_bytes(b"my photo")
    shutil.rmtree(run / "plots")
    (run / "plots").symlink_to(outside, target_is_directory=True)
    with pytest.raises(EvoaeError, match="symbolic link"):
        atomic_write_bytes(run / "plots" / "fitness.png", b"evoae's plot")
    with pytest.raises(EvoaeError, match="symbolic link"):
        atomic_write_bytes(run / "plots" / "new.png", b"evoae's plot")
    assert sorted(p.name for p in outside.iterdir()) == ["fitness.png"]
    assert (outside / "fitness.png").read_bytes() == b"my photo"


def test_a_linked_states_folder_is_never_written(tmp_path: Path) -> None:
    """The ASHA resume that wrote 18 files into a user's folder through states/."""
    asha = dict(fidelity="asha", min_epochs=1, eta=2, max_epochs=2, evaluations=4)
    small = dict(limit=300, epochs=1, final_epochs=1, final_min_steps=0, strategy="random")
    out = tmp_path / "run"
    search("digits", out=out, seed=1, **small, **asha)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    if (out / "states").exists():
        shutil.rmtree(out / "states")
    (out / "states").symlink_to(mine, target_is_directory=True)
    with pytest.raises(EvoaeError, match="symbolic link"):
        rf.state_stem(out, 3)
    with pytest.raises(EvoaeError, match="symbolic link"):
        search(out=out, resume=True, epoch_budget=12)
    assert [p.name for p in mine.iterdir()] == ["keep.txt"]


def test_export_out_through_a_link_leaves_the_users_files(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "autoencoder.safetensors").write_bytes(b"mine")
    link = tmp_path / "link"
    link.symlink_to(mine, target_is_directory=True)
    _refused(["export", str(run), "--out", str(link)], capsys, "symbolic link")
    assert [p.name for p in mine.iterdir()] == ["autoencoder.safetensors"]
    assert (mine / "autoencoder.safetensors").read_bytes() == b"mine"


def test_export_over_a_changed_part_file_is_refused_its_own_export_is_not(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "exp"
    assert main(["export", str(run), "--out", str(dest), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["export", str(run), "--out", str(dest), "--quiet"]) == 0  # its own: again
    capsys.readouterr()
    (dest / "encoder.safetensors").write_bytes(b"my fine-tuned encoder")
    before = _snapshot(dest)
    _refused(["export", str(run), "--out", str(dest)], capsys, "encoder.safetensors")
    assert _snapshot(dest) == before
    other = tmp_path / "other"
    assert main(["export", str(run), "--out", str(other), "--quiet"]) == 0
    capsys.readouterr()
    meta = json.loads((other / "export.json").read_text())
    meta["source"] = "my notes"  # an edited export.json is the user's now
    (other / "export.json").write_text(json.dumps(meta, indent=2))
    before = _snapshot(other)
    _refused(["export", str(run), "--out", str(other)], capsys, "export.json")
    assert _snapshot(other) == before


def test_export_pick_keeps_a_user_model_json_in_front(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = run / "front" / "1" / "model"
    model.mkdir(parents=True)
    (model / "model.json").write_text('{"mine": true}')
    add_to_manifest(run, rf.FRONT_DIR)
    before = _snapshot(run)
    _refused(["export", str(run), "--pick", "1"], capsys, "model.json")
    assert _snapshot(run) == before


def test_export_pick_never_follows_a_linked_front(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (run / "front").symlink_to(mine, target_is_directory=True)
    _refused(["export", str(run), "--pick", "1"], capsys, "symbolic link")
    assert list(mine.iterdir()) == []


@pytest.fixture
def held(run: Path) -> Iterator[Path]:
    """Another process holding the run lock, as a running search does."""
    holder = hold_lock(run)
    next(holder)
    yield run
    holder.close()


def test_export_into_a_run_takes_its_lock(held: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _snapshot(held)
    _refused(["export", str(held), "--pick", "1"], capsys, "in use by another evoae process")
    _refused(["export", str(held), "--format", "onnx"], capsys, "in use by another evoae")
    assert _snapshot(held) == before


def test_parallel_fits_sharing_a_run_dir_get_their_own_folders(held: Path) -> None:
    from evoae.estimator import _fit_folder

    assert run_lock.is_locked(held)
    assert _fit_folder(held) == held.with_name(held.name + "-2")


# ------------------------------------------------------------------ files outside a run


def test_sample_never_replaces_an_existing_image(tmp_path: Path) -> None:
    from evoae.cli.sample import out_path

    (tmp_path / "samples.png").write_bytes(b"my samples")
    with pytest.raises(EvoaeError, match="already exists"):
        out_path(str(tmp_path) + "/")
    with pytest.raises(EvoaeError, match="already exists"):
        out_path(str(tmp_path / "samples.png"))
    assert out_path(str(tmp_path / "new.png")) == tmp_path / "new.png"
    assert (tmp_path / "samples.png").read_bytes() == b"my samples"


def test_report_keeps_a_user_report_and_replaces_its_own(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(run), "--quiet"]) == 0  # its own report.html: replaced
    (run / "report.html").write_text("<p>my notes</p>")
    _refused(["report", str(run)], capsys, "report.html")
    assert (run / "report.html").read_text() == "<p>my notes</p>"
    mine = tmp_path / "mine.html"
    mine.write_text("mine")
    _refused(["report", str(run), "--out", str(mine)], capsys, "already exists")
    assert mine.read_text() == "mine"


def test_check_new_file_refuses_links_and_files_outside_runs(tmp_path: Path) -> None:
    (tmp_path / "target").write_text("x")
    (tmp_path / "link.png").symlink_to(tmp_path / "target")
    for name in ("target", "link.png"):
        with pytest.raises(EvoaeError):
            check_new_file(tmp_path / name)
    with pytest.raises(EvoaeError, match="symbolic link"):
        claim(tmp_path / "link.png", b"data")
    assert (tmp_path / "target").read_text() == "x"


def test_the_estimator_never_replaces_a_cli_run(run: Path) -> None:
    from evoae import EvolvedAutoencoder

    before = _snapshot(run)
    est = EvolvedAutoencoder(
        code_size=1, strategy="microbial", population=2, generations=0, epochs=1, run_dir=run
    )
    with pytest.raises(EvoaeError, match="did not make"):
        est.fit(np.random.default_rng(0).random((40, 4)))
    assert _snapshot(run) == before


def test_the_estimator_refuses_overflowing_columns_in_one_line() -> None:
    from evoae import EvolvedAutoencoder

    X = np.random.default_rng(0).random((40, 3))
    X[:20, 0], X[20:, 0] = -1e308, 1e308
    with pytest.raises(EvoaeError, match="too large to scale") as info:
        EvolvedAutoencoder(
            code_size=1, strategy="microbial", population=2, generations=0, epochs=1
        ).fit(X)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ read-only inspection


def _leave_a_wal(run: Path) -> None:
    """Leave committed pages in ``journal.sqlite-wal``, as a killed search does."""
    code = (
        "import os, signal, sqlite3\n"
        f"db = sqlite3.connect({str(run / rf.JOURNAL)!r}, isolation_level=None)\n"
        "db.execute('PRAGMA wal_autocheckpoint=0')\n"
        "db.execute(\"INSERT OR REPLACE INTO meta VALUES ('probe', '1')\")\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=False)
    assert (run / (rf.JOURNAL + "-wal")).stat().st_size > 0


@pytest.mark.parametrize("wal", [False, True], ids=["checkpointed", "pages-in-wal"])
def test_runs_show_list_and_report_leave_every_byte_and_mtime(
    run: Path, tmp_path: Path, wal: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    if wal:
        _leave_a_wal(run)
    before = _snapshot(run)
    assert main(["runs", "show", str(run)]) == 0
    assert main(["runs", "show", str(run), "--json", "--front"]) == 0
    assert main(["runs", "show", str(run), "--csv"]) == 0
    assert main(["runs", "list", str(run.parent)]) == 0
    assert main(["runs", "list", str(run), "--json"]) == 0
    assert main(["report", str(run), "--out", str(tmp_path / "elsewhere.html"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "damaged" not in out
    assert _snapshot(run) == before
    with Journal(run / rf.JOURNAL, readonly=True) as j:  # the WAL's row is read
        assert j.get_meta("probe") == (1 if wal else None)
    assert _snapshot(run) == before


def test_a_refused_resume_leaves_the_journal_and_its_wal_alone(tmp_path: Path) -> None:
    """A tpe checkpoint claiming more trials than the journal holds is refused, and the
    refusal writes nothing (it used to truncate the search, and to rewrite the meta)."""
    out = tmp_path / "tpe"
    search(
        "digits",
        out=out,
        seed=0,
        strategy="tpe",
        evaluations=4,
        batch=2,
        **{k: v for k, v in TINY.items() if k not in ("population", "generations", "strategy")},
    )
    ckpt = json.loads((out / rf.CHECKPOINT).read_text())
    ckpt["strategy"]["trials"] = ckpt["strategy"]["trials"] * 5  # 20 trials, 4 rows
    (out / rf.CHECKPOINT).write_text(json.dumps(ckpt))
    guard.record(out / rf.CHECKPOINT)  # as evoae's: the counters refuse it
    _leave_a_wal(out)
    before = _snapshot(out)
    with pytest.raises(EvoaeError, match="corrupted") as info:
        search(out=out, resume=True)
    assert "20 evaluations" in str(info.value)
    assert _snapshot(out) == before


# ------------------------------------------------------------------ wrong successes


def test_export_pick_and_report_refuse_changed_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "d.csv"
    np.savetxt(data, rng.random((120, 6)), delimiter=",", fmt="%.6f")
    run = search(str(data), out=tmp_path / "run", seed=0, **TINY).run_dir
    np.savetxt(data, rng.random((120, 6)), delimiter=",", fmt="%.6f")  # other data
    before = _snapshot(run)
    _refused(["export", str(run), "--pick", "1"], capsys, "SHA-256 differs")
    _refused(["report", str(run), "--out", str(tmp_path / "r.html")], capsys, "SHA-256")
    assert _snapshot(run) == before and not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(
    "field, value", [("data_range", 1e-308), ("data_min", -1e305), ("data_range", 0.0)]
)
def test_load_model_refuses_a_scaling_that_saturates_every_input(
    run: Path, field: str, value: float
) -> None:
    from evoae.families.io import load_model

    meta = json.loads((run / "model" / "model.json").read_text())
    meta["preprocess"][field] = value
    (run / "model" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(EvoaeError) as info:
        load_model(run / "model")
    assert "\n" not in str(info.value)


def test_a_killed_write_leaves_a_file_whose_content_is_recorded(
    run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new digest is recorded before the rename: a kill in between leaves the old
    file, still recorded, and a resume may replace it."""
    target = run / rf.CHECKPOINT
    old = target.read_bytes()

    def killed(src: Any, dst: Any) -> None:
        raise KeyboardInterrupt  # stands for the kill between the two

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b'{"new": 1}')
    monkeypatch.undo()
    assert target.read_bytes() == old and is_recorded(run, target)
    atomic_write_bytes(target, b'{"new": 1}')
    assert is_recorded(run, target)


def test_resume_removes_only_evoaes_temporary_files(run: Path) -> None:
    (run / ".checkpoint.json.123.tmp").write_text("x")
    (run / ".thesis.123.tmp").write_text("mine")
    removed = rf.remove_stale_temps(run)
    assert [p.name for p in removed] == [".checkpoint.json.123.tmp"]
    assert (run / ".thesis.123.tmp").read_text() == "mine"


def _mount_tmpfs(path: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(path)], capture_output=True
    )
    return done.returncode == 0


def test_a_run_on_a_read_only_medium_is_inspected_reported_and_exported_elsewhere(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real read-only mount (root only; skipped elsewhere), the WAL still pending."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        archived = disk / "run"
        shutil.copytree(run, archived)
        _leave_a_wal(archived)
        ro = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True)
        if ro.returncode != 0:
            pytest.skip("cannot remount the tmpfs read-only")
        before = _snapshot(archived)
        assert main(["runs", "show", str(archived)]) == 0
        assert main(["runs", "list", str(disk)]) == 0
        assert "damaged" not in capsys.readouterr().out
        assert main(["report", str(archived), "-o", str(tmp_path / "r.html"), "-q"]) == 0
        assert main(["export", str(archived), "--out", str(tmp_path / "exp"), "-q"]) == 0
        assert (tmp_path / "exp" / "export.json").is_file()
        capsys.readouterr()
        assert main(["report", str(archived)]) == 2  # into the run: one line, no traceback
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Read-only" in err, err
        assert _snapshot(archived) == before
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.slow
def test_a_grid_search_with_parallel_fits_sharing_a_run_dir_fails_no_fit(tmp_path: Path) -> None:
    """GridSearchCV(n_jobs=2) with one run_dir used to fail 3 of 4 fits on the run lock
    and pick an arbitrary best; now every fit succeeds in a run folder of its own."""
    import warnings

    from sklearn.exceptions import FitFailedWarning
    from sklearn.model_selection import GridSearchCV

    from evoae import EvolvedAutoencoder

    X = np.random.default_rng(0).random((80, 5))
    est = EvolvedAutoencoder(
        code_size=2,
        strategy="microbial",
        population=2,
        generations=0,
        epochs=1,
        final_epochs=1,
        min_steps=0,
        final_min_steps=0,
        random_state=0,
        n_jobs=1,
        run_dir=tmp_path / "fits",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", FitFailedWarning)
        grid = GridSearchCV(est, {"code_size": [1, 2]}, cv=2, n_jobs=2).fit(X)
    assert np.all(np.isfinite(grid.cv_results_["mean_test_score"]))
    assert grid.best_estimator_.run_dir_ is not None and rf.is_run(grid.best_estimator_.run_dir_)
