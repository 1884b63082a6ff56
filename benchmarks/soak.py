"""Soak: a long search whose resident memory must stay flat.

Runs one search of ``--evaluations`` evaluations (default 500) with tiny candidates and
samples the process's resident set size (VmRSS) after every evaluation. The reference,
measured in the same run, is the RSS once the search is warm (after ``--warmup``
evaluations: torch, its allocator and the first models are in); the figure is the end
RSS relative to it, and the growth per 100 evaluations over the second half (a least
squares slope). Flat means: end / warm <= 1.10 and a slope under 1 MiB per 100.

    .venv/bin/python benchmarks/soak.py --evaluations 500 --json /tmp/soak.json
    .venv/bin/python benchmarks/soak.py --smoke    # seconds: checks it still runs
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from evoae.loop import search
from evoae.report.progress import Reporter
from evoae.runs.journal import Row

TARGET_RATIO = 1.10
TARGET_SLOPE_MIB = 1.0
#: ``--smoke``: a handful of evaluations, so a test runs it in seconds; its verdict means
#: nothing at that size and does not set the exit status.
SMOKE = {"evaluations": 8, "population": 4, "warmup": 2, "limit": 200}


def rss_mib() -> float:
    """This process's resident set size in MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class RssSampler(Reporter):
    def __init__(self) -> None:
        self.samples: list[tuple[int, float]] = []

    def evaluated(self, row: Row) -> None:
        self.samples.append((row.id + 1, rss_mib()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evaluations", type=int, default=500)
    ap.add_argument("--population", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--limit", type=int, default=400)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: check that it runs")
    args = ap.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
    sampler = RssSampler()
    start = rss_mib()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = search(
            "digits",
            out=Path(tmp) / "soak",
            limit=args.limit,
            strategy="microbial",
            population=args.population,
            generations=args.evaluations - args.population,
            epochs=1,
            final_epochs=1,
            seed=0,
            reporters=[sampler],
        )
    seconds = time.perf_counter() - t0
    ids = np.array([n for n, _ in sampler.samples])
    rss = np.array([m for _, m in sampler.samples])
    warm = float(rss[ids >= args.warmup][0])
    end = float(rss[-1])
    half = ids >= ids.max() / 2
    slope = float(np.polyfit(ids[half], rss[half], 1)[0]) * 100
    figures = {
        "evaluations": result.n_evaluations,
        "trainings": result.n_trainings,
        "seconds": round(seconds, 1),
        "rss_before_search_mib": round(start, 1),
        f"rss_after_{args.warmup}_evaluations_mib": round(warm, 1),
        "rss_end_mib": round(end, 1),
        "rss_max_mib": round(float(rss.max()), 1),
        "end_over_warm": round(end / warm, 3),
        "slope_second_half_mib_per_100": round(slope, 3),
    }
    for k, v in figures.items():
        print(f"{k:>36}: {v}")
    flat = end / warm <= TARGET_RATIO and slope < TARGET_SLOPE_MIB
    print(f"{'flat':>36}: {flat} (targets: ratio <= {TARGET_RATIO}, slope < {TARGET_SLOPE_MIB})")
    if args.json:
        args.json.write_text(json.dumps({**figures, "flat": flat}, indent=2))
    return 0 if flat or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())
