"""How a search ends early: a time budget still saves a model and says so; ``evoae finish``
ends a killed run with what its journal holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import TINY_CLI

import evoae
from evoae.cli import main
from evoae.runs.journal import Journal
from evoae.runs.killpoints import ENV

TINY = TINY_CLI


def test_time_budget_ends_with_a_saved_model_and_says_so(tmp_path, capsys):
    out = tmp_path / "t"
    code = main(
        [
            "search",
            "--strategy",
            "microbial",
            "-n",
            "4",
            "-g",
            "1000",
            "-E",
            "1",
            "--final-epochs",
            "1",
            "--time-budget",
            "0",
            "-o",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0 and "time budget" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] == "time budget" and summary["n_evaluations"] == 4
    assert evoae.load_model(out / "model") is not None


def test_finish_ends_a_killed_run_with_what_it_has(tmp_path, capsys):
    out = tmp_path / "k"
    env = {**os.environ, ENV: "appended:6"}
    proc = subprocess.run(
        [sys.executable, "-m", "evoae.cli", "search", *TINY, "--out", str(out), "-q"],
        env=env,
        capture_output=True,
    )
    assert proc.returncode == -9
    assert not (out / "model").exists()
    assert main(["finish", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "finish" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] == "finished early" and summary["n_evaluations"] >= 4
    with Journal(out / "journal.sqlite", readonly=True) as j:
        # The returned model is one of the journal's candidates (the best, or the best
        # trained from scratch when the best is the PCA seed).
        assert summary["best_fitness"] in {r.fitness for r in j.rows()}
    assert evoae.load_model(out / "model") is not None
    # --finish without --resume is a one-line error.
    assert main(["search", "--finish", "-o", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
