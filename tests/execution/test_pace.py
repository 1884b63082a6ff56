"""What keeps both cores busy and processes quick to start: a worker's light initializer,
optimizers without the compiler import, the final stage on the search's process pool,
and the journal read once per batch. No test times anything (benchmarks do)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import evoae
from evoae.execution.process import ProcessEvaluator
from evoae.finish import RowCache, final_states
from evoae.runs.journal import Journal

SRC = str(Path(evoae.__file__).resolve().parents[1])


def run_python(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object."""
    path = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": path},
        check=True,
        timeout=180,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_pool_initializer_module_imports_nothing_heavy():
    """A spawned worker unpickles its initializer before its data: that module and the
    executor package must not import torch (else the parent's write blocks meanwhile)."""
    got = run_python(
        "import json, sys\n"
        "import evoae.execution.spawn, evoae.execution\n"
        "heavy = [m for m in ('torch', 'numpy', 'sklearn') if m in sys.modules]\n"
        "print(json.dumps({'heavy': heavy}))\n"
    )
    assert got == {"heavy": []}


def test_defer_dynamo_keeps_optimizers_exact_without_importing_the_compiler():
    code = """
import json, sys
import torch
from evoae.training.optim import defer_dynamo, make_optimizer
from evoae.training import train_candidate
first = defer_dynamo()
torch.manual_seed(0)
model = torch.nn.Linear(4, 3)
opt = make_optimizer("adam", model.parameters(), 0.01)
model(torch.ones(2, 4)).sum().backward()
before = opt.state_dict()
opt.load_state_dict(before)
opt.zero_grad()
spec = {"family": "dense", "input_dim": 6, "code_size": 2, "hidden": [[5, "relu"]],
        "code_activation": "linear", "output_activation": "sigmoid", "optimizer": "adam",
        "lr": 1e-3, "batch_size": 8}
x = torch.rand(40, 6, generator=torch.Generator().manual_seed(1))
r, _ = train_candidate(spec, x, x[:16], epochs=2, seed=3, trainer="kernel")
print(json.dumps({"first": first, "again": defer_dynamo(), "fitness": r.fitness,
                  "dynamo": "torch._dynamo" in sys.modules,
                  "grad_none": model.weight.grad is None}))
"""
    got = run_python(code)
    assert got["first"] is True and got["dynamo"] is False and got["grad_none"] is True
    assert got["again"] is True  # idempotent: still not imported
    # The same training in this process (the compiler possibly imported) scores the same.
    import torch

    from evoae.training import train_candidate

    spec = {
        "family": "dense", "input_dim": 6, "code_size": 2, "hidden": [[5, "relu"]],
        "code_activation": "linear", "output_activation": "sigmoid", "optimizer": "adam",
        "lr": 1e-3, "batch_size": 8,
    }  # fmt: skip
    x = torch.rand(40, 6, generator=torch.Generator().manual_seed(1))
    r, _ = train_candidate(spec, x, x[:16], epochs=2, seed=3, trainer="kernel")
    assert r.fitness == pytest.approx(got["fitness"], rel=1e-5)


def test_defer_dynamo_is_a_no_op_once_the_compiler_is_imported():
    got = run_python(
        "import json, torch, torch._dynamo\n"
        "from evoae.training.optim import defer_dynamo\n"
        "print(json.dumps({'set': defer_dynamo()}))\n"
    )
    assert got == {"set": False}


def test_row_cache_gives_the_finalists_of_the_whole_journal(tmp_path):
    """The loop's incremental row cache sees rows added after it was made, and the
    finalists it gives are those of the journal read whole."""
    run = tmp_path / "r"
    evoae.search(
        "digits", out=run, strategy="microbial", population=6, generations=6, epochs=1,
        final_epochs=1, limit=300, seed=1,
    )  # fmt: skip
    journal = Journal(run / "journal.sqlite")
    try:
        rows = list(journal.rows())
        cache = RowCache(journal)
        assert len(list(cache.rows())) == len(rows)
        assert final_states(cache, 3) == final_states(journal, 3)
        assert len(list(cache.rows())) == len(rows)  # nothing new: nothing re-read
    finally:
        journal.close()


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.mark.parametrize("workers", [1, 2])
def test_the_final_stage_on_the_process_pool_keeps_the_same_models(tmp_path, monkeypatch, workers):
    """The finalists trained in the search's workers (one per worker, beside those
    trained here) equal those trained one after another in this process."""
    common = dict(
        strategy="microbial", population=6, generations=8, epochs=1, final_epochs=3,
        final_candidates=4, final_min_steps=0, limit=300, seed=4, overlap=1,
    )  # fmt: skip
    calls = []
    submit = ProcessEvaluator.submit_call

    def counted(self, fn, *args):
        calls.append(fn.__name__)
        return submit(self, fn, *args)

    monkeypatch.setattr(ProcessEvaluator, "submit_call", counted)
    pool = evoae.search(
        "digits", out=tmp_path / "pool", executor="process", workers=workers, **common
    )
    inline = evoae.search("digits", out=tmp_path / "inline", executor="inline", **common)
    a, b = _summary(tmp_path / "pool")["final"], _summary(tmp_path / "inline")["final"]
    assert len(a["candidates"]) == len(b["candidates"]) >= 2
    for x, y in zip(a["candidates"], b["candidates"], strict=True):
        assert x["evaluation"] == y["evaluation"] and x["start"] == y["start"]
        assert x["epochs"] == y["epochs"] and x["kept"] == y["kept"]
        assert x["val_loss"] == pytest.approx(y["val_loss"], rel=1e-5)
    assert pool.final["val_loss"] == pytest.approx(inline.final["val_loss"], rel=1e-5)
    # One finalist per worker; the rest (time shared among them) trained here.
    assert calls == ["_final_in_worker"] * min(workers, len(a["candidates"]) - 1)


def _sleep(train, val, objective, seconds: float) -> float:
    """A call that outlives the test unless its worker is ended."""
    import time

    time.sleep(seconds)
    return seconds


def test_closing_the_pool_ends_a_call_still_running():
    """An interrupted final stage closes the pool with a finalist still training in a
    worker: the worker is ended, not waited for."""
    import numpy as np

    x = np.random.default_rng(0).random((20, 4), dtype=np.float32)
    ev = ProcessEvaluator(x, x, workers=1)
    assert ev.call_workers() == 1 and ev.call_workers(ready_only=True) == 0  # none started
    try:
        future = ev.submit_call(_sleep, 600.0)
        assert ev.call_workers(ready_only=True) == 1
        procs = list(ev._pool._processes.values())
        assert procs and not future.done()
    finally:
        ev.close()
    assert all(not p.is_alive() for p in procs)
    assert future.done() and future.cancelled() or future.exception() is not None


PROBE_SCRIPT = """
import json
import numpy as np
from evoae.errors import EvoaeError
from evoae.execution import make_evaluator

x = np.zeros((20, 4), dtype=np.float32)
def probe():
    auto = make_evaluator("auto", x, x, parallelism=4, steps=10**6, workers=2)
    try:
        make_evaluator("process", x, x, workers=2).close()
        process = "ok"
    except EvoaeError as e:
        process = str(e)
    auto.close()
    print(json.dumps({"auto": auto.choice, "process": process}))
"""


@pytest.mark.parametrize("guarded", [False, True])
def test_a_script_without_a_main_guard_never_starts_workers(tmp_path, guarded):
    """Spawned workers re-import the main script: without a guard they would rerun it and
    die before reading their data, and the parent would wait forever. ``auto`` then
    trains inline and says why; ``process`` is a one-line error. No worker is started."""
    script = tmp_path / "user_script.py"
    body = PROBE_SCRIPT + ('if __name__ == "__main__":\n    probe()\n' if guarded else "probe()\n")
    script.write_text(body)
    path = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
    out = subprocess.run(
        [sys.executable, str(script)], env={**os.environ, "PYTHONPATH": path},
        capture_output=True, text=True, timeout=180, check=True,
    )  # fmt: skip
    got = json.loads(out.stdout.strip().splitlines()[-1])
    if guarded:
        assert got == {"auto": got["auto"], "process": "ok"}
        assert got["auto"].startswith("process pool")
    else:
        assert got["auto"].startswith("inline") and "guard" in got["auto"]
        assert got["process"].startswith("executor process cannot start its workers")
        assert "\n" not in got["process"] and "inline executor" in got["process"]
