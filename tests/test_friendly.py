"""Fast and friendly by default: threads, budgets, honest progress, CLI conventions."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import TINY_SEARCH

import evoae
from evoae.cli import build_parser, main
from evoae.execution import make_evaluator
from evoae.report.progress import ProgressReporter
from evoae.runs.journal import Journal
from evoae.runs.killpoints import ENV
from evoae.training.threads import available_cores, torch_threads

TINY = ["--population", "4", "--generations", "4", "--epochs", "1", "--final-epochs", "1"]


def _help(*command: str) -> str:
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    return sub[command[0]].format_help() if command else parser.format_help()


@pytest.mark.parametrize("command", ["search", "export", "sample", "report", "finish"])
def test_help_shows_each_default_once_and_never_none(command):
    text = _help(command)
    assert "(default: None)" not in text and "[default: None]" not in text
    for line in re.findall(r"\[default: [^\]]*\]", text.replace("\n", " ")):
        assert "None" not in line
    if command == "search":
        flat = " ".join(text.split())
        assert flat.count("population size") == 1 and "[default: 20]" in flat
        for choices in ("{dense,conv-vae,conv-ae}", "{seed,extended}", "{auto,inline,"):
            assert choices in flat


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"evoae {evoae.__version__}"


def test_short_flags(tmp_path, capsys):
    out = tmp_path / "s"
    assert (
        main(
            [
                "search",
                "-n",
                "4",
                "-g",
                "2",
                "-E",
                "1",
                "--final-epochs",
                "1",
                "-k",
                "3",
                "-o",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.strip() == str(out)
    stored = json.loads((out / "settings.json").read_text())
    assert stored["space"]["code_size"] == 3
    assert stored["strategy"]["options"]["population"] == 4


def test_plain_progress_lines_when_stderr_is_not_a_terminal(tmp_path, capsys):
    import io

    stream = io.StringIO()
    reporter = ProgressReporter(interval=0.0, stream=stream)
    evoae.search("digits", out=tmp_path / "p", reporters=[reporter], **TINY_SEARCH)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("evoae: search started")
    assert any(
        re.match(r"evoae: \d+/4 tournaments, \d+ evaluations, best [\d.]+", ln) for ln in lines
    )
    assert any("final training of the best for 1 epoch " in ln for ln in lines)
    assert lines[-1].startswith("evoae: final training: epoch 1/1")
    # Resumed with a bigger budget: counters continue, they do not restart at zero.
    stream2 = io.StringIO()
    resumed = ProgressReporter(interval=0.0, stream=stream2)
    evoae.search(out=tmp_path / "p", resume=True, generations=6, reporters=[resumed])
    first = stream2.getvalue().splitlines()
    assert first[0].startswith("evoae: search resumed")
    assert any(ln.startswith("evoae: 5/6 tournaments, 9 evaluations") for ln in first)


def test_time_budget_ends_with_a_saved_model_and_says_so(tmp_path, capsys):
    out = tmp_path / "t"
    code = main(
        [
            "search",
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


def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    out = tmp_path / "term"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "evoae.cli",
            "search",
            "-n",
            "4",
            "-g",
            "100000",
            "-E",
            "1",
            "--out",
            str(out),
            "-q",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 600  # generous: a loaded machine imports torch slowly
    while time.monotonic() < deadline and not (out / "checkpoint.json").exists():
        time.sleep(0.2)
    assert (out / "checkpoint.json").exists(), "the search never reached its first checkpoint"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 143
    assert err.strip().startswith("evoae: terminated; finished evaluations are in the journal")
    assert "Traceback" not in err
    assert main(["finish", str(out), "-q"]) == 0


def test_default_run_folder_is_named_and_rooted_by_evoae_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOAE_RUNS", str(tmp_path / "root"))
    first = evoae.search("digits", code_size=3, seed=5, **TINY_SEARCH)
    second = evoae.search("digits", code_size=3, seed=5, **TINY_SEARCH)
    assert first.run_dir == tmp_path / "root" / "digits-dense-code3-seed5"
    assert second.run_dir == tmp_path / "root" / "digits-dense-code3-seed5-2"


def test_auto_executor_uses_every_core_only_for_batches(tmp_path):
    import numpy as np

    x = np.random.default_rng(0).random((50, 8)).astype(np.float32)
    one = make_evaluator("auto", x, x, parallelism=1)
    assert one.choice.startswith("inline: 1 candidate at a time x 1 thread")
    many = make_evaluator("auto", x, x, parallelism=4, workers=2)
    try:
        expected = "process pool: 2 workers" if available_cores() > 1 or True else "inline"
        assert many.choice.startswith(expected)
    finally:
        many.close()
    r = evoae.search("digits", out=tmp_path / "a", concurrent=2, **TINY_SEARCH)
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["executor"] == r.executor and r.executor.startswith("process pool")


def test_torch_threads_are_restored():
    before = torch.get_num_threads()
    with torch_threads(3):
        assert torch.get_num_threads() == 3
    assert torch.get_num_threads() == before
    assert available_cores() >= 1


def test_summary_units_and_plural(tmp_path, capsys):
    assert main(["search", *TINY, "-o", str(tmp_path / "u")]) == 0
    printed = capsys.readouterr().out
    assert "(1 epoch)" in printed and "(1 epochs)" not in printed
    assert "MSE" in printed and " > [4 " in printed
