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
