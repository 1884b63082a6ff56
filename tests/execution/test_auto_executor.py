"""The ``auto`` executor: every core only for batches of candidates."""

from __future__ import annotations

import json

import numpy as np
from conftest import TINY_SEARCH

import evoae
from evoae.execution import make_evaluator
from evoae.training.threads import available_cores


def test_auto_executor_uses_every_core_only_for_batches(tmp_path):
    import numpy as np

    x = np.random.default_rng(0).random((50, 8)).astype(np.float32)
    one = make_evaluator("auto", x, x, parallelism=1)
    assert one.choice.startswith("inline: 1 candidate at a time x 1 thread")
    many = make_evaluator("auto", x, x, parallelism=4, workers=2)
    try:
        expected = "process pool: 2 workers" if available_cores() > 1 or True else "inline"
        assert many.choice.startswith(expected)
    finally:
        many.close()
    # Workers asked for: a search this small would train inline (MIN_POOL_STEPS).
    r = evoae.search("digits", out=tmp_path / "a", concurrent=2, workers=2, **TINY_SEARCH)
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["executor"] == r.executor and r.executor.startswith("process pool")


def test_aging_asks_two_children_at_once_by_default_and_auto_trains_them_on_a_pool(tmp_path):
    """Aging evolution's default batch of 2 is its parallelism, so ``auto`` trains a
    batch on a process pool of 2; the journal is the one an inline run writes (seeds
    never depend on the worker or the completion order)."""
    from evoae.evolution import make_strategy
    from evoae.families.dense.space import DenseSpace
    from evoae.runs.journal import Journal

    space = DenseSpace(64, 4)
    assert make_strategy("aging", space).parallelism == 2
    assert make_strategy("aging", space, {"batch": 1}).parallelism == 1
    assert make_strategy("nsga2", space, {"batch": 3}).parallelism == 3
    # The published GA overlaps up to 4 consecutive tournaments (same rows as one at a time).
    assert make_strategy("microbial", space).parallelism == 4
    assert make_strategy("microbial", space, {"overlap": 1}).parallelism == 1
    aging = dict(strategy="aging", evaluations=8, population=4, sample=2, seed=2)
    small = {
        k: v for k, v in TINY_SEARCH.items() if k not in ("population", "generations", "strategy")
    }
    small["workers"] = 2  # a search this small would train inline (MIN_POOL_STEPS)
    pool = evoae.search("digits", out=tmp_path / "auto", limit=300, **aging, **small)
    inline = evoae.search(
        "digits", out=tmp_path / "inline", limit=300, executor="inline", **aging, **small
    )
    assert inline.executor.startswith("inline")
    if available_cores() > 1:
        assert pool.executor.startswith("process pool: 2 workers")
    rows = [
        [(r.genome, r.fitness, r.seed) for r in Journal(d / "journal.sqlite", readonly=True).rows()]
        for d in (tmp_path / "auto", tmp_path / "inline")
    ]
    assert rows[0] == rows[1] and len(rows[0]) == 8


def test_a_stored_aging_run_without_a_batch_reads_as_the_sequential_algorithm():
    """Runs stored before the default became 2 lack the option (defaults were not
    stored) and resume with 1; new runs store their 2."""
    from evoae.settings import SearchSettings

    new = SearchSettings.of(strategy="aging").to_dict()
    assert new["strategy"]["options"]["batch"] == 2
    assert SearchSettings.from_dict(new).strategy.options["batch"] == 2
    new["strategy"]["options"] = {}
    assert SearchSettings.from_dict(new).strategy.options["batch"] == 1
    # The microbial GA's overlap: decided by the strategy for new runs (4, stored as
    # such by a run), 1 for runs stored without it.
    from evoae.evolution import make_strategy
    from evoae.families.dense.space import DenseSpace

    new = SearchSettings.of(strategy="microbial").to_dict()
    assert new["strategy"]["options"] == {"overlap": None}
    assert make_strategy("microbial", DenseSpace(64, 4)).options_dict()["overlap"] == 4
    new["strategy"]["options"] = {}
    assert SearchSettings.from_dict(new).strategy.options["overlap"] == 1


def test_auto_trains_a_small_search_in_this_process(tmp_path):
    """A search too small to pay for starting workers (fewer than MIN_POOL_STEPS steps)
    trains inline under ``auto`` and says why; asking for workers still gets them."""
    from evoae.execution import MIN_POOL_STEPS

    x = np.random.default_rng(0).random((40, 6), dtype=np.float32)
    small = make_evaluator("auto", x, x, parallelism=4, steps=MIN_POOL_STEPS - 1)
    assert small.choice.startswith("inline")
    assert "too few to pay for starting workers" in small.choice
    if available_cores() > 1:
        big = make_evaluator("auto", x, x, parallelism=4, steps=MIN_POOL_STEPS)
        asked = make_evaluator("auto", x, x, parallelism=4, steps=10, workers=2)
        try:
            assert big.choice.startswith("process pool") and asked.choice.startswith("process pool")
        finally:
            big.close()
            asked.close()
    run = evoae.search("digits", out=tmp_path / "r", limit=300, **TINY_SEARCH)
    assert "too few to pay for starting workers" in run.executor
