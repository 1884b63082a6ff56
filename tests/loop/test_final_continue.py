"""The final stage continues the finalists from the states the search saved (issue 19):
the search keeps the best few architectures' states, the final stage trains them further
with its schedule, falls back to training from scratch when a state is unusable (and
says so), and deletes the states once it is done."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import run_cli
from safetensors.numpy import load_file

import evoae
from evoae.runs.journal import Journal
from evoae.runs.schema import validate_summary

SMALL = dict(
    limit=300, strategy="microbial", population=4, generations=2, epochs=1, min_steps=0, seed=3
)
SMALL_CLI = [
    "--limit",
    "300",
    "--strategy",
    "microbial",
    "-n",
    "4",
    "-g",
    "2",
    "-E",
    "1",
    "--min-steps",
    "0",
]


def _fitnesses(run) -> list[float]:
    with Journal(run / "journal.sqlite", readonly=True) as j:
        return [r.fitness for r in j.rows()]


def _summary(run) -> dict:
    return json.loads((run / "summary.json").read_text())


def test_finalists_continue_their_search_states_then_the_states_go(tmp_path):
    r = evoae.search("digits", out=tmp_path / "r", final_epochs=3, **SMALL)
    cands = r.final["candidates"]
    assert len(cands) == 3
    for c in cands:
        assert c["start"] == "continued" and c["continued_from"] == c["evaluation"]
        assert c["epochs_before"] == 1 and 1 <= c["epochs"] <= 3
        # The saved weights count for the plateau: continuing never ends worse than the
        # search's own training of the candidate.
        assert c["val_loss"] <= c["search_fitness"] * (1 + 1e-5)
    assert r.final["max_epochs"] == 3
    assert not (tmp_path / "r" / "states").exists()  # deleted once the final stage is done
    validate_summary(_summary(tmp_path / "r"), "summary")


def test_continuing_is_reproducible_and_saving_changes_no_search_row(tmp_path):
    a = evoae.search("digits", out=tmp_path / "a", final_epochs=2, **SMALL)
    b = evoae.search("digits", out=tmp_path / "b", final_epochs=2, **SMALL)
    assert _fitnesses(tmp_path / "a") == _fitnesses(tmp_path / "b")
    with Journal(tmp_path / "a" / "journal.sqlite", readonly=True) as j:
        assert not any("epochs" in r.terms for r in j.rows())  # rows as unsaved ones
    assert a.final["val_loss"] == pytest.approx(b.final["val_loss"], rel=1e-6)
    wa = load_file(str(tmp_path / "a" / "model" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "model" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(np.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    # Off (as stored runs made before the setting read): from scratch, no state saved,
    # and the search itself is the same (saving a state changes no training).
    off = evoae.search(
        "digits", out=tmp_path / "off", final_epochs=2, final_continue=False, **SMALL
    )
    assert _fitnesses(tmp_path / "off") == pytest.approx(_fitnesses(tmp_path / "a"), rel=1e-6)
    assert all(c["start"] == "scratch" for c in off.final["candidates"])
    assert all("start_note" not in c for c in off.final["candidates"])
    assert not (tmp_path / "off" / "states").exists()


def test_a_kill_in_the_final_stage_still_continues_and_a_bad_state_trains_from_scratch(
    tmp_path,
):
    whole = tmp_path / "whole"
    assert run_cli("search", *SMALL_CLI, "--final-epochs", "2", "-o", str(whole)).returncode == 0
    run = tmp_path / "r"
    # Killed after the final stage trained, before the summary is written.
    killed = run_cli(
        "search", *SMALL_CLI, "--final-epochs", "2", "-o", str(run),
        kill="before_rename:summary.json:1",
    )  # fmt: skip
    assert killed.returncode == -9 and not (run / "summary.json").exists()
    kept = sorted(p.name for p in (run / "states").iterdir())
    assert kept and len(kept) <= 2 * 3  # only the finalists' states outlive the search
    bad = tmp_path / "bad"
    shutil.copytree(run, bad)

    assert run_cli("finish", str(run)).returncode == 0
    final, ref = _summary(run)["final"], _summary(whole)["final"]
    assert [c["start"] for c in final["candidates"]] == ["continued"] * 3
    assert final["val_loss"] == pytest.approx(ref["val_loss"], rel=1e-6)
    assert not (run / "states").exists()

    victim = final["candidates"][0]["continued_from"]
    (bad / "states" / f"{victim}.safetensors").write_bytes(b"\0" * 64)  # damaged
    # A user's file that looks like a state, at an id this run never handed out, stays.
    foreign = bad / "states" / "999.json"
    foreign.write_text('{"epochs": 3, "optimizer_scalars": {}}')
    assert run_cli("finish", str(bad)).returncode == 0
    assert foreign.read_text() == '{"epochs": 3, "optimizer_scalars": {}}'
    foreign.unlink()
    cands = _summary(bad)["final"]["candidates"]
    first = cands[0]
    assert first["start"] == "scratch" and "unusable" in first["start_note"]
    assert all(c["start"] == "continued" for c in cands[1:])
    # The others are deleted; the damaged file is no longer evoae's by its content: kept.
    assert [p.name for p in (bad / "states").iterdir()] == [f"{victim}.safetensors"]
