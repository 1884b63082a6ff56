"""Command-line conventions: help that shows each default once, --version, short flags,
SIGTERM handled like Ctrl-C, units and plurals in the summary."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import TINY_CLI

import evoae
from evoae.cli import build_parser, main

TINY = TINY_CLI


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
        # Each strategy lists its own options once, with its own defaults.
        microbial = flat.split("strategy microbial (--strategy microbial)")[1]
        microbial = microbial.split("strategy random (")[0]
        assert microbial.count("population size") == 1
        assert "population size [default: 20]" in microbial
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
                "--strategy",
                "microbial",
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


def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    out = tmp_path / "term"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "evoae.cli",
            "search",
            "--strategy",
            "microbial",
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


def test_summary_units_and_plural(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one line per row: the checks read whole phrases
    assert main(["search", *TINY, "-o", str(tmp_path / "u")]) == 0
    printed = capsys.readouterr().out
    assert "(search, 1 epoch)" in printed and "1 epochs" not in printed
    assert "MSE" in printed and " > [4 " in printed
