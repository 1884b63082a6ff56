"""Threads and cores: evoae's automatic choice against the manual settings a user could pick.

Each workload runs as the CLI a user would type, in a fresh process, under three settings:

* ``torch default``: one candidate at a time with torch's default intra-op threads (what
  evoae 0.1 did: ``--executor inline --threads CORES``);
* ``OMP_NUM_THREADS=1``: the same with one thread, the best manual setting users found;
* ``auto``: today's default (no flag): a process pool when the strategy asks for several
  candidates at once, else one candidate at a time with one thread.

and under two loads: a quiet machine, and one competing busy process started by this
benchmark (a NumPy matrix-multiply loop with one thread). Figures are wall seconds and the
same-run ratio to the best manual setting; the journal of each run is compared with the
``auto`` run of the same workload (same seed: same rows, up to float summation order when
thread counts differ). Workloads:

* ``quickstart``: ``evoae search`` (digits, code size 4, the published GA, 120 evaluations);
* ``quickstart-aging``: the same with ``--strategy aging`` (its default batch of 2: auto
  trains the two children of a batch on a process pool of 2, the manual settings one
  after the other; the same journal);
* ``seed``: the published protocol on 16x16 MNIST (K = 1, 120 evaluations, retrain 20);
* ``concurrent``: the seed protocol with K concurrent tournaments (both cores busy), over
  several seeds, against K = 1's best.

    python benchmarks/cores.py                                # everything (about 25 min)
    python benchmarks/cores.py --workloads quickstart --loads quiet
    python benchmarks/cores.py --smoke    # seconds: checks it still runs
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: ../shared/data relative to the repository root (never an absolute path).
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
#: ``--smoke``: the quick start on a quiet machine (no competitor: the test suite is load
#: enough), one manual setting against auto, a handful of candidates, so a test runs it in
#: seconds (the figures mean nothing).
SMOKE = {"workloads": "quickstart", "loads": "quiet", "settings": "OMP_NUM_THREADS=1,auto"}
SMOKE_FLAGS = ["--population", "4", "--generations", "2", "--epochs", "1", "--final-epochs", "1"]
#: ``--smoke`` for the aging workloads: the same few candidates in aging's terms.
SMOKE_AGING = ["--population", "4", "--sample", "2", "--evaluations", "6", "--epochs", "1"]
SMOKE_AGING += ["--final-epochs", "1"]


def busy(parent: int) -> None:
    """A competing process: a one-thread NumPy loop, until the benchmark is gone (a
    benchmark stopped by a signal must not leave it running)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    import numpy as np

    a = np.random.default_rng(0).random((400, 400))
    while os.getppid() == parent:
        a = a @ a
        a /= np.abs(a).max()


def run_cli(args: list[str], env_extra: dict[str, str], out: Path) -> tuple[float, dict]:
    env = {**os.environ, **env_extra}
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "evoae.cli", "search", *args, "--out", str(out), "-q"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - t0
    return seconds, json.loads((out / "summary.json").read_text())


def settings(cores: int) -> dict[str, tuple[list[str], dict[str, str]]]:
    return {
        "torch default": (["--executor", "inline", "--threads", str(cores)], {}),
        "OMP_NUM_THREADS=1": (["--executor", "inline", "--threads", "1"], {"OMP_NUM_THREADS": "1"}),
        "auto": ([], {}),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=str(SHARED))
    p.add_argument("--workloads", default="quickstart,quickstart-aging,seed,concurrent")
    p.add_argument("--loads", default="quiet,busy")
    p.add_argument("--generations", type=int, default=100, help="tournaments of seed workloads")
    p.add_argument("--concurrent", type=int, default=2, help="K of the concurrent workload")
    p.add_argument("--seeds", type=int, default=4, help="seeds of the concurrent workload")
    p.add_argument(
        "--final-epochs", type=int, default=20, help="retraining of seed workloads (published: 20)"
    )
    p.add_argument(
        "--settings",
        default="torch default,OMP_NUM_THREADS=1,auto",
        help="which settings to run (comma-separated labels); ratios are to the best "
        "manual setting among them",
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes: check that it runs")
    args = p.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
    cores = len(os.sched_getaffinity(0))
    mnist = ["--dataset", "mnist", "--data-dir", args.data_dir]
    mnist += ["--final-epochs", str(args.final_epochs)]
    workloads = {
        "quickstart": ["--strategy", "microbial"],  # the quick start as measured (issue 11)
        "quickstart-aging": ["--strategy", "aging"],
        "seed": [*mnist, "--strategy", "microbial", "--generations", str(args.generations)],
    }
    tmp = Path(tempfile.mkdtemp(prefix="evoae-cores-", dir="." if args.smoke else None))
    print(f"cores: {cores}; runs in {tmp}")
    results: list[dict] = []
    for load in args.loads.split(","):
        competitor = None
        if load == "busy":
            competitor = multiprocessing.get_context("spawn").Process(
                target=busy, args=(os.getpid(),), daemon=True
            )
            competitor.start()
            time.sleep(1.0)
        try:
            for name in args.workloads.split(","):
                if name == "concurrent":
                    results += concurrent(args, mnist, tmp / load, load)
                    continue
                times = {}
                chosen = args.settings.split(",")
                for label, (flags, env) in settings(cores).items():
                    if label not in chosen:
                        continue
                    out = tmp / load / name / label.replace(" ", "_").replace("=", "")
                    aging = "aging" in workloads[name]
                    extra = (SMOKE_AGING if aging else SMOKE_FLAGS) if args.smoke else []
                    sec, summary = run_cli([*workloads[name], *flags, *extra], env, out)
                    times[label] = (sec, summary["best_fitness"], summary.get("executor"))
                best_manual = min(t for label, (t, _, _) in times.items() if label != "auto")
                for label, (sec, fit, ex) in times.items():
                    row = dict(
                        load=load,
                        workload=name,
                        setting=label,
                        seconds=round(sec, 1),
                        ratio_to_best_manual=round(sec / best_manual, 3),
                        best=fit,
                        executor=ex,
                    )
                    results.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            if competitor is not None:
                competitor.terminate()
    (tmp / "results.json").write_text(json.dumps(results, indent=1))
    print(f"results: {tmp / 'results.json'}")


def concurrent(args: argparse.Namespace, mnist: list[str], base: Path, load: str) -> list[dict]:
    """K concurrent tournaments (auto: a process pool) against K = 1, over several seeds."""
    rows = []
    by_k: dict[int, list[tuple[float, float]]] = {}
    for k in (1, args.concurrent):
        for seed in range(args.seeds):
            flags = [*mnist, "--strategy", "microbial", "--generations", str(args.generations)]
            flags += ["--seed", str(seed)]
            flags += ["--concurrent", str(k)]
            out = base / f"concurrent-k{k}-seed{seed}"
            sec, summary = run_cli(flags, {}, out)
            by_k.setdefault(k, []).append((sec, summary["best_fitness"]))
            row = dict(
                load=load,
                workload="concurrent",
                k=k,
                seed=seed,
                seconds=round(sec, 1),
                best=summary["best_fitness"],
                executor=summary.get("executor"),
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    for k, runs in by_k.items():
        row = dict(
            load=load,
            workload="concurrent",
            k=k,
            summary=True,
            median_seconds=round(statistics.median(s for s, _ in runs), 1),
            max_seconds=round(max(s for s, _ in runs), 1),
            median_best=statistics.median(f for _, f in runs),
            best=min(f for _, f in runs),
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    main()
