"""Executor scaling: evaluations per second with 1 and 2 workers, and the overhead per task.

The reference, measured in the same run, is the in-process executor with one torch
thread (what each worker uses). Every executor trains the same batch of tasks after a
warm-up batch (pool spawn, Ray start and first imports are not counted); each figure is
the best of ``--repeats`` timings:

* throughput: ``--tasks`` real candidates (digits, 8 epochs); evaluations per second
  and the speed-up over the reference;
* overhead: the same number of near-empty tasks (64 rows, 1 epoch); the time per task
  above the reference's is what the executor itself costs (transport, scheduling).

    .venv/bin/python benchmarks/scaling.py --json /tmp/scaling.json
    .venv/bin/python benchmarks/scaling.py --smoke    # seconds: checks it still runs

On a cluster the same evaluator joins it with ``ray_address="auto"`` (see
docs/reliability.md); this script measures one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from evoae.finish import derive_seed
from evoae.settings import SearchSettings
from evoae.training import Evaluator, SequentialEvaluator, Task

#: ``--smoke``: two one-epoch tasks per executor of one worker, so a test runs it in
#: seconds (the figures mean nothing; the pool and Ray still start).
SMOKE = {"tasks": 2, "epochs": 1, "repeats": 1, "workers": [1]}

SPEC = {
    "family": "dense",
    "input_dim": 64,
    "code_size": 4,
    "hidden": [[64, "relu"], [32, "relu"]],
    "code_activation": "linear",
    "output_activation": "sigmoid",
    "optimizer": "adam",
    "lr": 0.001,
    "batch_size": 32,
}


def timed(ev: Evaluator, tasks: list[Task], repeats: int) -> float:
    """Best of ``repeats`` timings: other jobs on a shared machine only ever add time."""
    list(ev.evaluate(tasks[:2]))  # warm-up: workers started, data delivered
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        done = list(ev.evaluate(tasks))
        best = min(best, time.perf_counter() - t0)
        assert len(done) == len(tasks) and all(r.status == "ok" for _, r in done)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=24)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="pool sizes")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: check that it runs")
    args = ap.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
    torch.set_num_threads(1)
    splits = SearchSettings.of().load_splits()
    data = {
        "throughput": (splits.train.x, splits.val.x, args.epochs),
        "overhead": (splits.train.x[:64], splits.val.x[:64], 1),
    }
    import ray

    from evoae.execution.process import ProcessEvaluator
    from evoae.execution.ray import RayEvaluator

    # A fresh local instance: never join a cluster someone else started on this machine.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    makers: dict[str, Callable[[Any, Any], Evaluator]] = {
        "inline (1 thread, reference)": lambda a, b: SequentialEvaluator(a, b)
    }
    for kind, cls in (("process", ProcessEvaluator), ("ray", RayEvaluator)):
        for w in args.workers:
            name = f"{kind}, {w} worker{'s' if w > 1 else ''}"
            makers[name] = lambda a, b, cls=cls, w=w: cls(a, b, workers=w)
    figures: dict[str, dict[str, float]] = {}
    for name, make in makers.items():
        row = {}
        for kind, (x_train, x_val, epochs) in data.items():
            tasks = [Task(SPEC, derive_seed("scaling", i), epochs) for i in range(args.tasks)]
            ev = make(x_train, x_val)
            try:
                row[kind] = timed(ev, tasks, args.repeats)
            finally:
                ev.close()
        figures[name] = row
    ray.shutdown()
    ref = figures["inline (1 thread, reference)"]
    n = args.tasks
    print(f"{os.cpu_count()} CPUs; {n} tasks; load average {os.getloadavg()[0]:.1f}")
    print(f"{'executor':<30}{'eval/s':>8}{'speed-up':>10}{'overhead/task':>15}")
    out = {}
    for name, row in figures.items():
        rate = n / row["throughput"]
        speedup = ref["throughput"] / row["throughput"]
        overhead_ms = (row["overhead"] - ref["overhead"]) / n * 1000
        out[name] = {
            "evals_per_s": round(rate, 2),
            "speedup_vs_inline": round(speedup, 2),
            "overhead_ms_per_task": round(overhead_ms, 1),
            "tiny_task_ms": round(row["overhead"] / n * 1000, 1),
        }
        print(f"{name:<30}{rate:>8.2f}{speedup:>9.2f}x{overhead_ms:>12.1f} ms")
    if args.json:
        args.json.write_text(
            json.dumps({"cpus": os.cpu_count(), "tasks": n, "results": out}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
