"""Learning curves in the journal: recorded per evaluation and for the final stage,
bounded, validated on read, absent (and never added by a reader) in older journals."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest
from conftest import TINY_SEARCH, one_line_error

from evoae.cli import main
from evoae.loop import search
from evoae.runs import folder as rf
from evoae.runs.curves import MAX_CURVE, downsample, make_curve
from evoae.runs.journal import Journal, Row
from evoae.runs.reader import read_run

EPOCHS = 3
FINAL = 4


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("curves") / "run"
    flat = {**TINY_SEARCH, "epochs": EPOCHS, "final_epochs": FINAL, "final_patience": 2}
    search("digits", out=out, seed=2, limit=300, executor="inline", **flat)
    return out


def test_every_trained_evaluation_has_one_point_per_epoch(run: Path) -> None:
    with Journal(run / rf.JOURNAL, readonly=True) as j:
        rows = list(j.rows())
        curves = j.curves("search")
        assert j.curves().keys() >= curves.keys()
    trained = [r for r in rows if not r.cached]
    assert trained and set(curves) == {r.id for r in trained}
    for r in trained:
        c = curves[r.id]
        assert [e for e, _, _ in c] == list(range(1, EPOCHS + 1))
        assert all(t is not None and math.isfinite(t) for _, t, _ in c)
        assert c[-1][1] == r.train_loss
        # The model's validation loss after every epoch; the last is the row's own.
        assert all(v is not None and math.isfinite(v) for _, _, v in c)
        assert c[-1][2] == r.val_loss


def test_the_final_stage_curve_is_the_retrained_candidates(run: Path) -> None:
    view = read_run(run)
    assert view.final_curve is not None
    evaluation, curve = view.final_curve
    best = json.loads((run / rf.BEST_GENOME).read_text())
    assert evaluation == best["evaluation"]
    final = view.summary["final"]  # type: ignore[index]
    # Epoch 0 (the initial weights) and every trained epoch, validation loss watched.
    assert [e for e, _, _ in curve] == list(range(final["epochs"] + 1))
    assert curve[0][1] is None and all(t is not None for _, t, _ in curve[1:])
    assert min(v for _, _, v in curve) == pytest.approx(final["val_loss"], rel=1e-6)
    with Journal(run / rf.JOURNAL, readonly=True) as j:
        assert view.curves == j.curves("search")


def test_runs_show_names_the_final_curve(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "show", str(run)]) == 0
    out = capsys.readouterr().out
    assert "final learning curve" in out and "points (epochs 0 to" in out
    assert main(["runs", "show", str(run), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    view = read_run(run)
    assert shown["top"] and all(
        r["curve"] == [list(p) for p in view.curves[r["id"]]] for r in shown["top"]
    )
    assert shown["final_curve"]["evaluation"] == view.final_curve[0]  # type: ignore[index]


def _copy(run: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(run, dest)
    return dest


def test_a_journal_without_the_table_reads_as_no_curves_and_stays_so(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _copy(run, tmp_path / "old")
    con = sqlite3.connect(old / rf.JOURNAL)
    con.execute("DROP TABLE curves")
    con.commit()
    con.close()
    before = (old / rf.JOURNAL).read_bytes()
    with Journal(old / rf.JOURNAL, readonly=True) as j:
        assert j.curves() == {} and j.curves("final") == {}
    view = read_run(old)
    assert view.curves == {} and view.final_curve is None and len(view.rows) > 0
    for args in (["runs", "show", str(old)], ["runs", "show", str(old), "--csv"]):
        assert main(args) == 0
    assert "final learning curve" not in capsys.readouterr().out
    assert (old / rf.JOURNAL).read_bytes() == before
    con = sqlite3.connect(f"{(old / rf.JOURNAL).as_uri()}?mode=ro", uri=True)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()
    assert "curves" not in tables


def test_resuming_an_old_journal_adds_curves_for_the_new_evaluations(tmp_path: Path) -> None:
    out = tmp_path / "r"
    flat = {**TINY_SEARCH, "epochs": 2, "generations": 2}
    search("digits", out=out, seed=4, limit=300, executor="inline", **flat)
    con = sqlite3.connect(out / rf.JOURNAL)
    con.execute("DROP TABLE curves")
    con.commit()
    con.close()
    with Journal(out / rf.JOURNAL, readonly=True) as j:
        n_old = len(j)
    search(out=out, resume=True, generations=4)
    with Journal(out / rf.JOURNAL, readonly=True) as j:
        curves = j.curves("search")
        new = [r for r in j.rows() if r.id >= n_old and not r.cached]
        assert len(j) > n_old
        assert set(curves) == {r.id for r in new}
        assert len(j.curves("final")) == 1


def _damage(run: Path, tmp_path: Path, sql: str, *params: object) -> Path:
    bad = _copy(run, tmp_path / "bad")
    con = sqlite3.connect(bad / rf.JOURNAL)
    con.execute(sql, params)
    con.commit()
    con.close()
    return bad


@pytest.mark.parametrize(
    ("sql", "params", "fragment"),
    [
        ("UPDATE curves SET train_loss = 'x' WHERE epoch = 1", (), "train_loss at epoch 1"),
        ("UPDATE curves SET val_loss = 1e999 WHERE epoch = 1", (), "val_loss at epoch 1"),
        ("UPDATE curves SET epoch = -epoch - 1 WHERE evaluation = 0", (), "epoch -"),
        ("INSERT INTO curves VALUES (99999, 'search', 1, 0.1, 0.1)", (), "evaluation 99999"),
        ("INSERT INTO curves VALUES (-1, 'final', 1, 0.1, 0.1)", (), "final curve for 2"),
    ],
)
def test_damaged_curves_are_one_line_errors(
    run: Path,
    tmp_path: Path,
    sql: str,
    params: tuple,
    fragment: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = _damage(run, tmp_path, sql, *params)
    one_line_error(lambda: read_run(bad), "damaged", fragment)
    assert main(["runs", "show", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("evoae: error: ") and fragment in err[0]


def test_an_unknown_stage_is_damage_to_a_reader_of_every_stage(run: Path, tmp_path: Path) -> None:
    bad = _damage(run, tmp_path, "INSERT INTO curves VALUES (0, 'other', 1, 0.1, 0.1)")
    assert read_run(bad).curves  # the stages it reads are intact
    with Journal(bad / rf.JOURNAL, readonly=True) as j:
        one_line_error(j.curves, "damaged", "stage 'other'")


def test_too_many_points_for_one_evaluation_is_damage(run: Path, tmp_path: Path) -> None:
    bad = _copy(run, tmp_path / "long")
    con = sqlite3.connect(bad / rf.JOURNAL)
    con.executemany(
        "INSERT OR IGNORE INTO curves VALUES (0, 'search', ?, 0.1, NULL)",
        [(e,) for e in range(MAX_CURVE + 5)],
    )
    con.commit()
    con.close()
    one_line_error(lambda: read_run(bad), "damaged", f"more than {MAX_CURVE} points")


def test_curves_are_bounded_evenly_first_and_last_kept() -> None:
    losses = [1.0 / (e + 1) for e in range(2500)]
    curve = make_curve(losses, val={2500: 0.5})
    assert len(curve) == MAX_CURVE
    assert curve[0] == (1, 1.0, None) and curve[-1] == (2500, losses[-1], 0.5)
    gaps = {b[0] - a[0] for a, b in zip(curve, curve[1:], strict=False)}
    assert gaps <= {2, 3}
    assert make_curve([1.0, math.nan, math.inf]) == [
        (1, 1.0, None),
        (2, None, None),
        (3, None, None),
    ]
    assert downsample([(1, 0.1, None)] * 3, limit=1) == [(1, 0.1, None)]


def _row(i: int, curve: list) -> Row:
    return Row(i, 0, {}, {"family": "dense"}, 0.1, 0.1, 0.1, 1, 0.0, 0, "ok", False, curve=curve)


def test_a_row_and_its_curve_commit_together(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    with Journal(tmp_path / "r" / rf.JOURNAL, create=True) as j:
        j.append(_row(0, [(1, 0.2, None), (2, 0.1, 0.1)]))
        with pytest.raises(ValueError):
            j.append(_row(1, [(1, 0.2, None), (-3, 0.1, 0.1)]))  # a bad point: nothing kept
        assert len(j) == 1 and j.curves() == {0: [(1, 0.2, None), (2, 0.1, 0.1)]}
        long = [(e, 0.1, None) for e in range(1, 3001)]
        j.set_final_curve(0, long)
        j.set_final_curve(0, long)  # replaced, not added to
        final = j.curves("final")[0]
        assert len(final) == MAX_CURVE and final[0][0] == 1 and final[-1][0] == 3000
        with pytest.raises(ValueError, match="stage"):
            j.curves("rung")


def test_cached_rows_have_no_curve_and_comparable_ignores_curves(run: Path) -> None:
    with Journal(run / rf.JOURNAL, readonly=True) as j:
        curves = j.curves("search")
        rows = list(j.rows())
    assert all(r.id not in curves for r in rows if r.cached)
    assert "curve" not in rows[0].comparable()


def test_a_pbt_final_stage_records_the_kept_copy_per_interval(tmp_path: Path) -> None:
    out = tmp_path / "pbt"
    flat = {**TINY_SEARCH, "final_epochs": 4, "final_pbt": 2, "final_pbt_ready": 2}
    search("digits", out=out, seed=5, limit=300, executor="inline", **flat)
    view = read_run(out)
    assert view.final_curve is not None
    _, curve = view.final_curve
    assert [e for e, _, _ in curve] == [2, 4]
    assert all(t is not None and v is not None for _, t, v in curve)
    assert curve[-1][2] == pytest.approx(view.summary["final"]["val_loss"], rel=1e-5)  # type: ignore[index]
