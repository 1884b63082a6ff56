"""Which strategy a search stores: aging by default; an explicit ``preset="seed"`` without
a strategy is the published protocol (the microbial GA); a named strategy always wins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

import evoae
from evoae.runs import folder as rf

COMMON = dict(
    limit=200, epochs=1, final_epochs=1, min_steps=0, final_min_steps=0, executor="inline"
)


def _stored(run: Path) -> str:
    return json.loads((run / rf.SETTINGS).read_text())["strategy"]["name"]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        (dict(evaluations=2, population=2, sample=2), "aging"),
        (dict(preset="seed", population=2, generations=1), "microbial"),
        (dict(preset="seed", strategy="random", evaluations=2), "random"),
    ],
)
def test_the_stored_strategy_follows_preset_and_strategy(tmp_path, kw, expected):
    r = evoae.search("digits", out=tmp_path / "r", **COMMON, **kw)
    assert _stored(r.run_dir) == expected


def test_the_cli_preset_seed_runs_the_microbial_ga(tmp_path):
    out = tmp_path / "r"
    p = run_cli(
        "search", "--preset", "seed", "--limit", "200", "--population", "2",
        "--generations", "1", "--epochs", "1", "--final-epochs", "1", "--min-steps", "0",
        "--final-min-steps", "0", "--executor", "inline", "--out", str(out),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert _stored(out) == "microbial"
