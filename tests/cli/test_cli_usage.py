"""Command-line usage conventions: no abbreviated flags, a suggestion for a mistyped
flag, one-line errors naming the subcommand, quiet broken pipes, tables that fold long
paths, ``./runs`` as the command's default run root."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_SEARCH

from evoae.cli import EXIT_BROKEN_PIPE, build_parser, main


def _usage_error(capsys, argv: list[str]) -> str:
    """argparse's error for ``argv``: exit 2 and exactly one stderr line, returned."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out += _parsers(sub)
    return out


def test_no_parser_accepts_abbreviations():
    parsers = _parsers(build_parser())
    assert len(parsers) >= 8  # evoae, search, finish, export, sample, report, runs list/show
    assert all(p.allow_abbrev is False for p in parsers), [p.prog for p in parsers]


@pytest.mark.parametrize(
    ("argv", "prog", "fragment"),
    [
        (["search", "--strat", "aging"], "evoae search", "did you mean --strategy?"),
        (["search", "--popualtion", "4"], "evoae search", "did you mean --population?"),
        (["search", "--code_size", "4"], "evoae search", "did you mean --code-size?"),
        (["search", "--gen", "2"], "evoae search", "unrecognized arguments: --gen 2"),
        (["runs", "show", "RUN", "--jsn"], "evoae runs show", "did you mean --json?"),
        (["export", "RUN", "--formt", "onnx"], "evoae export", "did you mean --format?"),
        (["serch"], "evoae", "did you mean search?"),
        (["search", "--strategy", "agin"], "evoae search", "did you mean aging?"),
    ],
)
def test_prefixes_and_typos_are_refused_with_a_suggestion(capsys, argv, prog, fragment):
    line = _usage_error(capsys, argv)
    assert line.startswith(f"{prog}: error: "), line
    assert fragment in line, line


def test_no_suggestion_when_nothing_is_close(capsys):
    line = _usage_error(capsys, ["search", "--bogus", "3"])
    assert line == "evoae search: error: unrecognized arguments: --bogus 3 (see --help)"


def test_per_strategy_help_still_works(capsys):
    with pytest.raises(SystemExit) as info:
        main(["search", "--strategy", "aging", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "strategy aging (--strategy aging)" in out and "--config FILE" in out
    assert "strategy microbial (--strategy microbial)" not in out


def _closed_pipe_run(*args: str) -> subprocess.CompletedProcess[str]:
    """``evoae ARGS`` writing into a pipe whose reader is already gone (as after
    ``| head -1`` has read its line): every write fails with EPIPE."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "evoae.cli", *args],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    finally:
        os.close(write)


@pytest.mark.parametrize(
    "args",
    [
        ("runs", "show", "{run}", "--json"),
        ("runs", "show", "{run}"),
        ("runs", "list", "{folder}", "--json"),
        ("search", "--help"),
    ],
)
def test_a_closed_pipe_ends_quietly(hostile_run, args):
    run, _ = hostile_run
    argv = [a.format(run=run, folder=run.parent) for a in args]
    done = _closed_pipe_run(*argv)
    assert done.stderr == "", done.stderr  # no BrokenPipeError traceback, no "Exception ignored"
    # argparse's help printer ignores a failed write itself and exits 0.
    assert done.returncode == (0 if "--help" in args else EXIT_BROKEN_PIPE)


def test_head_of_runs_show_json_is_quiet(hostile_run):
    run, _ = hostile_run
    cmd = f"{sys.executable} -m evoae.cli runs show {run} --json | head -1"
    done = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0
    assert done.stdout == "{\n" and done.stderr == "", done.stderr


def _cells(text: str, column: int) -> str:
    """The text of one column of a rich table, its folded lines joined."""
    cells = [
        line.split("│")[column].strip() for line in text.splitlines() if line.count("│") > column
    ]
    return "".join(cells)


def test_export_table_folds_long_paths(hostile_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    run, _ = hostile_run
    out = tmp_path / ("a-long-folder-name-" * 4) / ("and-another-long-one-" * 3)
    assert main(["export", str(run), "--format", "safetensors", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert max(len(line) for line in printed.splitlines()) <= 80
    assert "…" not in printed
    assert re.search(re.escape(f"{out}/") + r"\w+\.safetensors", _cells(printed, 2))


def test_runs_list_folds_long_run_names(hostile_run, tmp_path, capsys, monkeypatch):
    import shutil

    monkeypatch.setenv("COLUMNS", "80")
    run, _ = hostile_run
    name = "a-run-with-a-very-long-name-" * 6
    shutil.copytree(run, tmp_path / name)
    assert main(["runs", "list", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "…" not in printed
    assert name in _cells(printed, 1)


def test_the_command_puts_runs_under_dot_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("EVOAE_RUNS", raising=False)
    monkeypatch.chdir(tmp_path)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY_SEARCH.items()]
    assert main(["search", *flags, "--code-size", "2", "-q"]) == 0
    printed = capsys.readouterr().out.strip()
    assert Path(printed) == Path("runs") / "digits-dense-code2-seed0"
    assert (tmp_path / printed / "journal.sqlite").is_file()
    assert re.fullmatch(r"runs/digits-dense-code2-seed0", printed)


def test_a_broken_pipe_while_stopping_is_still_the_stop(monkeypatch, capsys) -> None:
    # A SIGTERM whose clean-up breaks a worker's pipe (a local Ray shutting down) exits
    # as terminated with its one line, not as a quiet closed stdout.
    import evoae.cli as cli

    def stop_then_break(argv):
        try:
            raise cli.Terminated()
        finally:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_main", stop_then_break)
    assert cli.main(["runs", "list"]) == cli.EXIT_TERMINATED
    assert capsys.readouterr().err.startswith("evoae: terminated;")
