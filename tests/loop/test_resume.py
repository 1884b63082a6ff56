"""Crash-safe runs: SIGKILL a real search at chosen points, resume, compare with an unbroken run.

The kills use the deterministic hooks of :mod:`evoae.runs.killpoints`
(``EVOAE_TEST_KILL_AT=NAME:N``): mid-training (the N-th module forward call), right
after a journal commit (between evaluations), between the fsync and the rename of a
checkpoint, and while the final model is written. One run folder survives all four kills
in a row; after each kill every journal row must equal the reference run's row with the
same id (nothing finished is lost, nothing is written wrong), and the finished run must
equal the reference: same journal rows, same best genome, same final figures.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

from conftest import start_cli

from evoae.loop import search
from evoae.runs import folder as rf
from evoae.runs.journal import Journal

# concurrent=2 makes batches of two, so a kill can land between two rows of one batch.
# The inline executor trains in the search process itself, where the forward-call kill
# point counts (the default `auto` executor would train batches in worker processes).
ARGS = [
    "--strategy", "microbial",
    "--dataset", "digits", "--limit", "300", "--population", "6", "--generations", "8",
    "--concurrent", "2", "--epochs", "1", "--final-epochs", "1", "--final-min-steps", "0",
    "--min-steps", "0", "--seed", "5", "--executor", "inline",
]  # fmt: skip
N_EVALUATIONS = 6 + 8

#: (kill point, what it simulates). Counts restart in every resumed process.
KILLS = [
    ("forward:400", "during training of an early candidate"),
    ("appended:3", "between two evaluations, after a commit"),
    ("before_rename:checkpoint.json:2", "while writing a checkpoint"),
    ("before_rename:model.safetensors:1", "while writing the final model"),
]


def _wait(proc: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def _rows(run: Path) -> list[dict[str, Any]]:
    """Every row as compared, with its learning curve (and the final stage's, last)."""
    with Journal(run / rf.JOURNAL) as j:
        curves = j.curves("search")
        rows = [{**r.comparable(), "curve": curves.get(r.id, [])} for r in j.rows()]
        return rows + ([{"final": j.curves("final")}] if (run / rf.SUMMARY).exists() else [])


def _summary(run: Path) -> dict[str, Any]:
    s = json.loads((run / rf.SUMMARY).read_text())
    final = {k: v for k, v in s["final"].items() if k != "seconds"}
    keep = ("best_genome", "best_spec", "best_fitness", "n_evaluations", "n_trainings", "history")
    return {**{k: s[k] for k in keep}, "final": final}


def test_sigkill_at_four_points_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    ref_proc = _evoae(*ARGS, "--out", str(reference))  # runs alongside the killed ones
    run = tmp_path / "run"
    snapshots = []
    for i, (point, what) in enumerate(KILLS):
        args = [*ARGS, "--out", str(run)] if i == 0 else ["--resume", str(run)]
        code, err = _wait(_evoae(*args, kill=point))
        assert code == -signal.SIGKILL, f"{point} ({what}) not reached: {err}"
        snapshots.append((point, _rows(run)))
        if point.startswith("before_rename:checkpoint"):
            assert list(run.glob(".checkpoint.json.*.tmp")), "the kill should leave a temp file"
    assert not (run / rf.BEST_GENOME).exists()
    code, err = _wait(_evoae("--resume", str(run)))
    assert code == 0, err
    code, err = _wait(ref_proc)
    assert code == 0, err
    ref_rows = _rows(reference)
    assert len(ref_rows) == N_EVALUATIONS + 1 and ref_rows[-1]["final"]
    assert all(r["curve"] for r in ref_rows[:-1] if not r["cached"])
    for point, rows in snapshots:
        # Every committed row is exactly the reference's row: nothing half-written.
        assert rows == ref_rows[: len(rows)], f"journal differs after kill {point}"
    # Kills landed at different stages: mid-search, then with all rows in, in the end phase.
    counts = [len(rows) for _, rows in snapshots]
    assert counts == sorted(counts) and 0 < counts[0] < N_EVALUATIONS == counts[-1]
    assert _rows(run) == ref_rows
    assert (run / rf.BEST_GENOME).read_bytes() == (reference / rf.BEST_GENOME).read_bytes()
    assert _summary(run) == _summary(reference)
    assert not list(run.glob(".*.tmp")), "stale temporary files must be cleaned on resume"


def test_resume_with_a_larger_budget_equals_the_longer_run(tmp_path: Path) -> None:
    # final_continue off: a finished run keeps no states, so its extension's final stage
    # could not continue what the longer run's continues.
    kw: dict[str, Any] = dict(
        limit=300, strategy="microbial", population=4, epochs=1, final_epochs=1, seed=2,
        final_continue=False,
    )  # fmt: skip
    long = search("digits", out=tmp_path / "long", generations=4, **kw)
    short = tmp_path / "short"
    search("digits", out=short, generations=2, **kw)
    extended = search("digits", out=short, resume=True, generations=4)
    assert _rows(short) == _rows(long.run_dir)
    assert extended.best_genome == long.best_genome
    assert extended.history == long.history
    assert extended.n_trainings == long.n_trainings
    # The extended budget is stored: a later resume may not shrink it back.
    assert json.loads((short / rf.SETTINGS).read_text())["strategy"]["options"]["generations"] == 4


def _evoae(*args: str, kill: str | None = None):
    return start_cli("search", *args, kill=kill)
