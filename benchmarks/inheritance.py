"""Weight inheritance against training from scratch, at equal training compute.

The protocol of ``benchmarks/search_quality.py`` (whose search and report it reuses):
16x16 MNIST, the seed split, code size 4, every candidate trained ``--epochs`` epochs,
``--evaluations`` candidates per search, seeds 0..N-1. Each strategy runs twice per
seed: from scratch, and with ``inherit=True`` (an offspring starts from its parent's
trained weights, Net2Net-widened where a layer grew), so both spend the same training
images per candidate. Prints the search_quality table and, per strategy, the ratio of
the inherited median best validation MSE (and of the retrained best's) to the scratch
one: below 1 means inheritance helped. "best" is the search's (the journal's) best; the
retrained best is retrained from scratch with the final schedule, as for any run, and
a run whose retrained model falls back to PCA is named.

    python benchmarks/inheritance.py --data-dir /work/shared/data               # 5 x 120
    nice -n 5 python benchmarks/inheritance.py --seeds 2 --evaluations 40 --workers 1
    python benchmarks/inheritance.py --smoke     # seconds: checks it still runs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search_quality as sq  # noqa: E402

#: Each base strategy and its inheriting twin (registered into search_quality's table).
PAIRS = {"aging": "aging+inherit", "microbial": "microbial+inherit"}
for _base, _twin in PAIRS.items():
    sq.STRATEGIES[_twin] = (_base, {"inherit": True})
#: ``--smoke``: one pair on digits, six one-epoch candidates per search, so a test runs
#: it in seconds (the figures mean nothing).
SMOKE = {
    "dataset": "digits",
    "strategies": ["aging"],
    "seeds": 1,
    "evaluations": 6,
    "population": 4,
    "epochs": 1,
    "final_epochs": 1,
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist", "digits"])
    p.add_argument("--data-dir", default=str(sq.SHARED))
    p.add_argument("--strategies", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    p.add_argument("--evaluations", type=int, default=120)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--population", type=int, default=20, help="population (aging: S = P/4)")
    p.add_argument("--final-epochs", type=int, default=20)
    p.add_argument("--workers", type=int, default=1, help="searches run at once")
    p.add_argument("--out", default="out/inheritance")
    p.add_argument("--from-results", action="store_true", help="only report OUT/results.json again")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: check that it runs")
    args = p.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from evoae.settings import SearchSettings

    n_train = len(
        SearchSettings.of(dataset=args.dataset, data_dir=args.data_dir).load_splits().train
    )
    labels = [label for base in args.strategies for label in (base, PAIRS[base])]
    jobs = [
        {
            "label": label,
            "dataset": args.dataset,
            "data_dir": args.data_dir,
            "seed": seed,
            "evaluations": args.evaluations,
            "population": args.population,
            "epochs": args.epochs,
            "final_epochs": args.final_epochs,
            "n_train": n_train,
            "out": str(out / "runs" / f"{args.dataset}-{label}-seed{seed}"),
        }
        for seed in range(args.seeds)
        for label in labels
    ]
    if args.from_results:
        results = json.loads((out / "results.json").read_text())
    else:
        print(f"{len(jobs)} searches, {args.workers} at a time", flush=True)
        t0 = time.perf_counter()
        results = []
        with ProcessPoolExecutor(args.workers) as pool:
            for r in pool.map(sq.one_search, jobs):
                results.append(r)
                print(
                    f"  {r['label']:17s} seed {r['seed']}: best {r['curve'][-1][1]:.4f}"
                    f"  retrained val {r['final_val']:.4f}  ({r['seconds']:.0f} s)",
                    flush=True,
                )
        print(f"total wall time {time.perf_counter() - t0:.0f} s")
        (out / "results.json").write_text(json.dumps(results, indent=1))
    for r in results:
        # The search's best is the journal's, also where the retrained model fell back to
        # PCA (the result's best is then the PCA seed's row).
        r["best"] = r["curve"][-1][1]
    fallbacks = [f"{r['label']} seed {r['seed']}" for r in results if r["best_spec"].get("init")]
    table = argparse.Namespace(**{**vars(args), "strategies": labels})
    sq.report(args.dataset, results, table, out, n_train)
    if fallbacks:
        print(f"retrained model fell back to PCA (or the PCA seed won): {', '.join(fallbacks)}")
    print("\ninherited / scratch (median over seeds; < 1: inheritance helped)")
    for base in args.strategies:
        ratio = {key: _median(results, PAIRS[base], key) / _median(results, base, key)
                 for key in ("best", "final_val")}  # fmt: skip
        print(f"{base:11s} best {ratio['best']:.3f}   retrained val {ratio['final_val']:.3f}")
    return 0


def _median(results: list[dict[str, Any]], label: str, key: str) -> float:
    return float(np.median([r[key] for r in results if r["label"] == label]))


if __name__ == "__main__":
    sys.exit(main())
