"""The ``auto`` executor: every core only for batches of candidates."""

from __future__ import annotations

import json

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
    r = evoae.search("digits", out=tmp_path / "a", concurrent=2, **TINY_SEARCH)
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["executor"] == r.executor and r.executor.startswith("process pool")
