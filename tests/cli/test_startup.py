"""Start-up: ``evoae --help``, ``--version`` and ``runs list|show`` import nothing heavy.

Each command runs in a fresh interpreter that reports which heavy packages it imported;
no test times anything (``benchmarks/startup.py`` measures the CPU time).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import dense_spec

import evoae
from evoae.cli import COMMANDS, build_parser
from evoae.families import build_model, get_family
from evoae.families.registry import Lazy

HEAVY = ("torch", "sklearn", "scipy", "matplotlib", "numpy")
#: Runs ``evoae.cli.main`` on argv and writes its exit status, output and the heavy
#: packages it imported to the file named by EVOAE_STARTUP_REPORT.
PROBE = f"""
import contextlib, io, json, os, sys
from evoae.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main(sys.argv[1:])
    except SystemExit as e:
        code = e.code
heavy = [m for m in {HEAVY!r} if m in sys.modules]
with open(os.environ["EVOAE_STARTUP_REPORT"], "w") as f:
    json.dump({{"code": code, "out": out.getvalue(), "heavy": heavy}}, f)
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("startup") / "runs" / "r1"
    evoae.search(
        "digits",
        out=out,
        strategy="microbial",
        population=2,
        generations=2,
        epochs=1,
        final_epochs=1,
    )
    return out


def probe(tmp_path: Path, *argv: str) -> dict:
    report = tmp_path / "report.json"
    src = str(Path(evoae.__file__).resolve().parents[1])
    env = {**os.environ, "EVOAE_STARTUP_REPORT": str(report)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    subprocess.run([sys.executable, "-c", PROBE, *argv], env=env, check=True, timeout=120)
    return json.loads(report.read_text())


@pytest.mark.parametrize(
    "argv, allowed",
    [
        (["--help"], ()),
        (["--version"], ()),
        (["runs", "--help"], ()),
        (["dashboard", "--help"], ()),
        (["runs", "list", "{runs}"], ()),
        (["runs", "list", "{runs}", "--json"], ()),
        # show asks the strategy whether the run is multi-objective: the strategies need numpy
        (["runs", "show", "{run}"], ("numpy",)),
        (["runs", "show", "{run}", "--json"], ("numpy",)),
    ],
)
def test_light_commands_import_no_heavy_package(argv, allowed, run_dir, tmp_path):
    args = [a.format(run=run_dir, runs=run_dir.parent) for a in argv]
    got = probe(tmp_path, *args)
    assert got["code"] in (0, None)
    assert [m for m in got["heavy"] if m not in allowed] == []
    if "--version" in argv:
        assert got["out"].strip() == f"evoae {evoae.__version__}"
    if "--json" in argv:
        record = json.loads(got["out"])
        record = record[0] if isinstance(record, list) else record
        assert record["state"] == "finished"
        assert record["best_architecture"].startswith("64 > ")  # described without torch
    elif "list" in argv or "show" in argv:
        assert "r1" in got["out"] and "finished" in got["out"]


def test_a_search_still_imports_what_it_needs(tmp_path):
    got = probe(tmp_path, "search", "--help")
    assert got["code"] == 0 and "torch" in got["heavy"] and "--population" in got["out"]


def test_the_short_help_lists_the_same_commands_as_the_full_parser():
    assert build_parser("").format_help() == build_parser().format_help()
    sub = build_parser()._subparsers._group_actions[0]  # type: ignore[union-attr]
    assert list(sub.choices) == list(COMMANDS)


def test_lazy_public_names():
    from evoae.estimator import EvolvedAutoencoder
    from evoae.loop import search

    assert evoae.EvolvedAutoencoder is EvolvedAutoencoder and evoae.search is search
    assert set(evoae.__all__) <= set(dir(evoae))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        evoae.nope  # noqa: B018


def test_family_entries_resolve_and_pickle():
    from evoae.families.dense.model import DenseAutoencoder

    dense = get_family("dense")
    assert isinstance(dense.build, Lazy)
    spec = dense_spec(input_dim=8, code_size=2, hidden=[[6, "relu"]])
    assert isinstance(build_model(spec, seed=0), DenseAutoencoder)
    assert dense.describe(spec).startswith("8 > 6 relu > [2 ")
    assert pickle.loads(pickle.dumps(dense.stacker)) == dense.stacker
    with pytest.raises(AttributeError):
        Lazy("evoae.families.dense.model:NoSuchModule")()
