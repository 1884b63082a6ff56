"""Every benchmark runs: ``benchmarks/NAME.py --smoke`` in a fresh process, in seconds.

A benchmark nothing runs rots (an import or API change breaks it unnoticed), so each
file in benchmarks/ must take ``--smoke`` (tiny data, one epoch, few candidates) and
exit 0 with it; a new benchmark without the flag fails here. The runs go two at a time
(the machine has two cores) in the test's temporary folder, so what a benchmark writes
relative to its working directory lands there. A benchmark that sets
``NEEDS_SHARED_DATA = True`` reads MNIST from ../shared/data in its smoke run too: it is
skipped when that folder is absent, and fails under ``CI=true``.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import SHARED_DATA_DIR

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem[0] != "_")
#: Seconds one smoke run may take on an overloaded shared machine: a guard against hangs
#: (on two quiet cores each takes seconds).
TIMEOUT = 900


def needs_shared_data(name: str) -> bool:
    """The benchmark's module-level ``NEEDS_SHARED_DATA`` (read, not imported)."""
    tree = ast.parse((ROOT / "benchmarks" / f"{name}.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(getattr(t, "id", None) == "NEEDS_SHARED_DATA" for t in targets):
                return bool(ast.literal_eval(node.value))
    return False


def run_smoke(name: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    env["MPLBACKEND"] = "Agg"
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--smoke"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


@pytest.fixture(scope="module")
def smoke_runs(request, tmp_path_factory) -> dict[str, Future[subprocess.CompletedProcess[str]]]:
    """The selected benchmarks' smoke runs, started two at a time."""
    chosen = [
        item.callspec.params["name"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    ]
    have_data = all((SHARED_DATA_DIR / d).is_dir() for d in ("mnist", "fashion-mnist"))
    pool = ThreadPoolExecutor(2)
    runs = {
        name: pool.submit(run_smoke, name, tmp_path_factory.mktemp(name))
        for name in chosen
        if have_data or not needs_shared_data(name)
    }
    yield runs
    pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_smoke(name, smoke_runs, request):
    if name not in smoke_runs:
        request.getfixturevalue("shared_data_dir")  # skips, or fails under CI=true
    done = smoke_runs[name].result()
    tail = (done.stdout[-2000:] + "\n" + done.stderr[-4000:]).strip()
    assert done.returncode == 0, f"benchmarks/{name}.py --smoke exited {done.returncode}:\n{tail}"
    assert done.stdout.strip(), f"benchmarks/{name}.py --smoke printed no figures"
