"""A run folder's default name and root (``$EVOAE_RUNS``)."""

from __future__ import annotations

from conftest import TINY_SEARCH, one_line_error

import evoae


def test_default_run_folder_is_named_and_rooted_by_evoae_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOAE_RUNS", str(tmp_path / "root"))
    first = evoae.search("digits", code_size=3, seed=5, **TINY_SEARCH)
    second = evoae.search("digits", code_size=3, seed=5, **TINY_SEARCH)
    assert first.run_dir == tmp_path / "root" / "digits-dense-code3-seed5"
    assert second.run_dir == tmp_path / "root" / "digits-dense-code3-seed5-2"


def test_the_api_without_evoae_runs_writes_to_a_temporary_folder(tmp_path, monkeypatch, capsys):
    import tempfile

    monkeypatch.delenv("EVOAE_RUNS", raising=False)
    work, temp = tmp_path / "work", tmp_path / "temp"
    work.mkdir()
    temp.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    result = evoae.search("digits", code_size=2, **TINY_SEARCH)  # verbose=0: silent
    assert result.run_dir.parent.parent == temp
    assert result.run_dir.name == "digits-dense-code2-seed0"
    assert (result.run_dir / "journal.sqlite").is_file()
    assert list(work.iterdir()) == []  # nothing in the working directory
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_verbose_prints_progress_lines_on_stderr(tmp_path, capsys):
    evoae.search("digits", out=tmp_path / "v", verbose=2, **TINY_SEARCH)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert lines[0].startswith("evoae: search started")
    assert any(ln.startswith("evoae: 4/4 tournaments") for ln in lines)
    assert lines[-1].startswith("evoae: final training: epoch 1/1")
    assert captured.out == ""


def test_verbose_must_be_a_count():
    for bad in (-1, "yes", 1.5, None):
        one_line_error(lambda b=bad: evoae.search("digits", verbose=b), "verbose must be")
