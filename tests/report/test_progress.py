"""Honest progress: plain lines when stderr is not a terminal, counters that continue
on resume."""

from __future__ import annotations

import re

from conftest import TINY_SEARCH

import evoae
from evoae.report.progress import ProgressReporter


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


def _plain_text(console_output: str) -> str:
    """The last frame of a rich live display, control codes removed."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", console_output).split("\r")[-1]


def test_final_training_bar_counts_epochs_with_an_eta_on_a_terminal():
    import io

    from rich.console import Console

    now = [100.0]
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=140, color_system=None)
    reporter = ProgressReporter(console, clock=lambda: now[0])
    reporter.start(4, 0, {}, unit="tournaments", evaluations=0)
    reporter.generation(4, 0.05)
    reporter.final_start(10)
    for epoch in range(1, 5):
        now[0] += 3.0  # three seconds an epoch: 6 epochs left are 18 seconds
        reporter.final_epoch(epoch, 0.1 / epoch)
    reporter.end()
    lines = _plain_text(buf.getvalue()).splitlines()
    final = next(ln for ln in lines if ln.startswith("final training (epochs)"))
    assert "4/10" in final and "train loss 0.025" in final
    assert "eta 0:00:18" in final, final
    assert "evaluations -" not in final
    search = next(ln for ln in lines if ln.startswith("tournaments"))
    assert "evaluations 0" in search and "best 0.05" in search and "eta" not in search


def test_plain_final_training_lines_carry_an_eta():
    import io

    now = [0.0]
    stream = io.StringIO()
    reporter = ProgressReporter(interval=0.0, stream=stream, clock=lambda: now[0])
    reporter.start(1, 0, {})
    reporter.final_start(5)
    for epoch in range(1, 6):
        now[0] += 2.0
        reporter.final_epoch(epoch, 0.5)
    lines = stream.getvalue().splitlines()
    assert lines[-4] == "evoae: final training: epoch 2/5, loss 0.5, eta 6 s [4 s]"
    assert lines[-1] == "evoae: final training: epoch 5/5, loss 0.5 [10 s]"
