"""Weight inheritance in the search loop: determinism, kill and resume, lost parent states."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest
from conftest import run_cli

from evoae.errors import EvoaeError
from evoae.evolution import make_strategy
from evoae.families.dense.space import DenseSpace
from evoae.loop import search
from evoae.runs import folder as rf
from evoae.runs.journal import Journal

SMALL = dict(limit=300, epochs=1, final_epochs=1, min_steps=0, final_min_steps=0, executor="inline")
AGING = ["--strategy", "aging", "--evaluations", "10", "--batch", "2", "--population", "4"]
ARGS = [
    "--dataset", "digits", "--limit", "300", "--epochs", "1", "--final-epochs", "1",
    "--min-steps", "0", "--final-min-steps", "0", "--executor", "inline", "--seed", "3",
    *AGING, "--sample", "2", "--inherit",
]  # fmt: skip


def _rows(run: Path) -> list[dict]:
    with Journal(run / rf.JOURNAL, readonly=True) as j:
        return [r.comparable() for r in j.rows()]


@pytest.mark.parametrize(
    "strategy, options",
    [
        ("aging", dict(evaluations=10, population=4, sample=2, batch=2, morph=False)),
        ("microbial", dict(population=4, generations=6, concurrent=2)),
    ],
)
def test_same_seed_same_inherited_journal_and_no_states_left(tmp_path, strategy, options):
    runs = [
        search("digits", out=tmp_path / str(i), strategy=strategy, inherit=True, **options, **SMALL)
        for i in range(2)
    ]
    rows = _rows(runs[0].run_dir)
    assert rows == _rows(runs[1].run_dir)
    inherited = [r for r in rows if "inherited_from" in r["terms"]]
    assert inherited, "offspring should inherit from their parents"
    assert all(r["terms"]["inherited_from"] < r["id"] for r in inherited)
    assert not (runs[0].run_dir / rf.STATES_DIR).exists(), "states are removed at the end"
    # Without inheritance nothing is saved or recorded, as before.
    plain = search("digits", out=tmp_path / "plain", strategy=strategy, **options, **SMALL)
    assert not any("inherited_from" in r["terms"] for r in _rows(plain.run_dir))


def test_inherit_refuses_reevaluate():
    with pytest.raises(EvoaeError, match="inherit and reevaluate"):
        make_strategy("microbial", DenseSpace(64, 4), {"inherit": True, "reevaluate": True})


def test_inherit_refuses_asha(tmp_path):
    with pytest.raises(EvoaeError, match="--inherit cannot be combined with --fidelity asha"):
        search("digits", out=tmp_path / "run", strategy="aging", inherit=True, fidelity="asha")
    assert not (tmp_path / "run" / "journal.sqlite").exists()


def test_sigkill_then_resume_gives_the_uninterrupted_inherited_journal(tmp_path):
    aging = dict(strategy="aging", evaluations=10, batch=2, population=4, sample=2, seed=3)
    ref = _rows(search("digits", out=tmp_path / "ref", inherit=True, **aging, **SMALL).run_dir)
    assert len(ref) == 10 and any("inherited_from" in r["terms"] for r in ref)
    run = tmp_path / "run"
    code, err = _cli(*ARGS, "--out", str(run), kill="appended:7")  # mid-batch, states saved
    assert code == -signal.SIGKILL, err
    assert 0 < len(_rows(run)) < 10
    # Only the population's states (and the batch in flight) are kept on disk.
    assert len(list((run / rf.STATES_DIR).glob("*.safetensors"))) <= 4 + 2
    lost = tmp_path / "lost"
    shutil.copytree(run, lost)
    search(out=run, resume=True)
    assert _rows(run) == ref
    # A parent whose state is gone or damaged: its children train from their own
    # initialisation, the same way every time.
    # (Only journaled parents' states: a state of the batch in flight is saved again by
    # the resume, and a file there that is not a state evoae wrote is never replaced.)
    told = json.loads((lost / rf.CHECKPOINT).read_text())["next_id"]
    for p in (lost / rf.STATES_DIR).glob("*.safetensors"):
        if int(p.stem) < told:
            p.write_bytes(b"damaged")
    again = tmp_path / "again"
    shutil.copytree(lost, again)
    for folder in (lost, again):
        search(out=folder, resume=True)
    assert _rows(lost) == _rows(again)
    assert len(_rows(lost)) == 10 and _rows(lost) != ref


def _cli(*args: str, kill: str) -> tuple[int, str]:
    proc = run_cli("search", *args, kill=kill)
    return proc.returncode, proc.stderr


def test_morph_is_aging_default_and_implies_inheritance():
    """New aging runs morph (and so inherit); --no-morph is the per-gene mutation from
    scratch; a space without morphisms (conv) does not inherit through morph."""
    from evoae.families.conv.space import ConvSpace

    assert make_strategy("aging", DenseSpace(64, 4), {}).inherits
    assert not make_strategy("aging", DenseSpace(64, 4), {"morph": False}).inherits
    assert make_strategy("aging", DenseSpace(64, 4), {"morph": False, "inherit": True}).inherits
    conv = ConvSpace((1, 16, 16), 4)
    assert not make_strategy("aging", conv, {}).inherits


def test_asha_turns_the_default_morph_off(tmp_path):
    r = search(
        "digits", out=tmp_path / "run", strategy="aging", fidelity="asha", evaluations=4,
        population=2, sample=1, **SMALL,
    )  # fmt: skip
    assert r.settings.strategy.options["morph"] is False


def test_sigkill_then_resume_gives_the_uninterrupted_morph_journal(tmp_path):
    """Morph mode: every offspring differs from its parent in one respect (the hidden
    layers or one training setting), and a killed run resumes to the same journal."""
    aging = dict(strategy="aging", evaluations=10, batch=2, population=4, sample=2, seed=3)
    ref = _rows(
        search("digits", out=tmp_path / "ref", inherit=True, morph=True, **aging, **SMALL).run_dir
    )
    by_id = {r["id"]: r for r in ref}
    children = [r for r in ref if "inherited_from" in r["terms"]]
    assert len(ref) == 10 and len(children) >= 4
    for r in children:
        parent = by_id[int(r["terms"]["inherited_from"])]["spec"]
        changed = [
            k for k in ("hidden", "optimizer", "lr", "batch_size") if r["spec"][k] != parent[k]
        ]
        assert len(changed) == 1 or changed == ["optimizer", "lr"], (parent, r["spec"])
    run = tmp_path / "run"
    code, err = _cli(*ARGS, "--morph", "--out", str(run), kill="appended:7")
    assert code == -signal.SIGKILL, err
    assert 0 < len(_rows(run)) < 10
    search(out=run, resume=True)
    assert _rows(run) == ref
