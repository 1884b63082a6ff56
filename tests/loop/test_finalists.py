"""The final stage trains the search's best few architectures and keeps the one that
validates best (issue 19); the summary says which won and how each training ended."""

from __future__ import annotations

import json

import numpy as np
import pytest

import evoae
from evoae.cli.runs import finalists_text
from evoae.runs.schema import validate_summary

SMALL = dict(
    limit=300, strategy="microbial", population=4, generations=2, epochs=1, min_steps=0, seed=3
)


def test_the_best_of_three_finalists_on_validation_is_kept(tmp_path):
    r = evoae.search("digits", out=tmp_path / "r", final_epochs=3, **SMALL)
    cands = r.final["candidates"]
    assert len(cands) == 3
    assert len({c["evaluation"] for c in cands}) == 3
    assert len({c["architecture"] for c in cands}) == 3  # distinct architectures
    # The search's best first, then the next best other architectures.
    fits = [c["search_fitness"] for c in cands]
    assert fits == sorted(fits)
    kept = [c for c in cands if c["kept"]]
    assert len(kept) == 1
    ok = [c for c in cands if c["status"] == "ok"]
    assert kept[0]["val_loss"] == min(c["val_loss"] for c in ok)
    # The saved model is the kept finalist's training, and the result names its row.
    assert r.final["val_loss"] == pytest.approx(kept[0]["val_loss"], rel=1e-6)
    assert (
        json.loads((tmp_path / "r" / "best_genome.json").read_text())["evaluation"]
        == (kept[0]["evaluation"])
    )
    # Every finalist trains within the user's epoch count.
    assert all(c["epochs"] <= 3 for c in cands) and r.final["max_epochs"] == 3
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    validate_summary(summary, "summary")
    assert "finalists" in finalists_text(summary["final"]["candidates"])


def test_one_finalist_is_the_old_final_stage(tmp_path):
    r = evoae.search("digits", out=tmp_path / "one", final_epochs=2, final_candidates=1, **SMALL)
    assert len(r.final["candidates"]) == 1 and r.final["candidates"][0]["kept"]
    assert finalists_text(r.final["candidates"]) == ""


def test_finalists_share_a_time_budget(tmp_path):
    r = evoae.search("digits", out=tmp_path / "t", final_epochs=50, time_budget=0, **SMALL)
    # The budget is spent: every finalist stops after its first epoch.
    assert all(c["epochs"] == 1 and c["stop"] == "time budget" for c in r.final["candidates"])


def test_the_estimator_trains_on_85_percent_and_keeps_no_test_split():
    from evoae import EvolvedAutoencoder
    from evoae.data import Dataset
    from evoae.estimator import _split

    x = np.random.default_rng(0).random((200, 8)).astype(np.float32)
    splits = _split(Dataset(x, None, "<x>"), seed=5)
    assert (len(splits.train), len(splits.val), splits.test) == (170, 30, None)
    rows = np.concatenate([splits.train.x, splits.val.x])
    assert sorted(map(bytes, rows)) == sorted(map(bytes, x))  # every row, once
    ae = EvolvedAutoencoder(
        code_size=2,
        strategy="microbial",
        population=2,
        generations=1,
        epochs=1,
        final_epochs=1,
        random_state=0,
    ).fit(x)
    assert "test_loss" not in ae.final_ and ae.final_["candidates"]
