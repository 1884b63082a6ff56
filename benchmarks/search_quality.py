"""Search strategies raced at equal training compute on the published protocol.

16x16 MNIST (or Fashion-MNIST with ``--dataset fashion-mnist``), the seed split (10,000
train / 5,000 validation images), code size 4, every candidate trained ``--epochs``
epochs with the same trainer and seeding rule. Each strategy gets ``--evaluations``
candidates (the seed preset's 120 = 20 initial + 100 tournaments of the microbial GA)
and ``--seeds`` seeds; searches run in a process pool (``--workers``, one torch thread
each). Compute spent is counted in training images processed (phenotype-cache hits are
free; an ASHA promotion costs only its extra epochs), so the best-so-far curves compare
strategies at equal compute. The ``asha-*`` entries spend the same epochs as their
strategy alone; their search fitness is the best at the top rung (4 epochs, not
``--epochs``), so compare them by the retrained columns.

Prints, per strategy: median / min / max of the best validation MSE (the search's
fitness), the retrained best's validation and test MSE (``--final-epochs``), the compute
at which 0.0286 (the published GA's best) was first reached, and wall time; writes
``OUT/results.json`` and ``OUT/search_quality_<dataset>.png`` (best-so-far vs images).

    python benchmarks/search_quality.py                       # full: 5 seeds, 120 evaluations
    python benchmarks/search_quality.py --seeds 2 --evaluations 60   # reduced
    python benchmarks/search_quality.py --smoke      # seconds: checks it still runs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PUBLISHED = 0.0286
#: ``--smoke``: a plain, an ASHA and a morph strategy on digits, four one-epoch candidates each,
#: so a test runs the race and its report in seconds (the figures mean nothing).
SMOKE = {
    "dataset": ["digits"],
    "strategies": ["microbial", "asha-random", "aging-morph"],
    "seeds": 1,
    "evaluations": 4,
    "population": 2,
    "epochs": 1,
    "final_epochs": 1,
    "workers": 1,
}
#: Strategy label -> (registered strategy, extra settings); budgets are filled in per run.
STRATEGIES: dict[str, tuple[str, dict[str, Any]]] = {
    "microbial": ("microbial", {}),
    "aging": ("aging", {}),
    "random": ("random", {}),
    "tpe": ("tpe", {}),
    # tpe is multivariate TPE (Optuna 5's default); tpe-uni the independent TPE of Optuna 4.
    "tpe-uni": ("tpe", {"multivariate": False}),
    "aging-wide": ("aging", {"space_options": {"max_ratio": 2.0}}),
    # Offspring are their parents changed by one network morphism, starting from the
    # parents' trained weights (evoae.families.dense.morph).
    "aging-morph": ("aging", {"inherit": True, "morph": True}),
    "tpe-wide": ("tpe", {"space_options": {"max_ratio": 2.0}}),
    # ASHA around a strategy (rungs of 1, 3 and 4 epochs, the best third promoted), with
    # the budget of the same strategy alone: evaluations x epochs, in epochs.
    "asha-random": ("random", {"fidelity": "asha"}),
    "asha-tpe": ("tpe", {"fidelity": "asha"}),
    "asha-aging": ("aging", {"fidelity": "asha"}),
}


def _budget(strategy: str, evaluations: int, population: int) -> dict[str, Any]:
    """Equal candidate counts: the GA's initial population counts as evaluations."""
    if strategy == "microbial":
        return {"population": population, "generations": evaluations - population}
    if strategy == "aging":
        sample = max(1, population // 4)
        return {"evaluations": evaluations, "population": population, "sample": sample}
    return {"evaluations": evaluations}


def one_search(job: dict[str, Any]) -> dict[str, Any]:
    """Run one search in this process; returns its figures and best-so-far curve."""
    import torch

    torch.set_num_threads(1)
    import evoae
    from evoae.evolution.asha import rung_epochs
    from evoae.runs.journal import Journal

    strategy, extra = STRATEGIES[job["label"]]
    t0 = time.perf_counter()
    result = evoae.search(
        job["dataset"],
        data_dir=job["data_dir"],
        code_size=4,
        epochs=job["epochs"],
        final_epochs=job["final_epochs"],
        strategy=strategy,
        seed=job["seed"],
        limit=job.get("limit"),
        out=job["out"],
        overwrite=True,
        **_budget(strategy, job["evaluations"], job["population"]),
        **extra,
    )
    wall = time.perf_counter() - t0
    n_train = job["n_train"]
    f = result.settings.fidelity
    rungs = rung_epochs(f.min_epochs, f.eta, f.max_epochs)
    images, best, curve = 0, math.inf, []
    with Journal(Path(job["out"]) / "journal.sqlite", readonly=True) as j:
        for row in j.rows():
            if row.cached:
                pass
            elif "rung" in row.terms:  # a promotion costs only its extra epochs
                k = int(row.terms["rung"])
                images += (rungs[k] - (rungs[k - 1] if k else 0)) * n_train
            else:
                images += job["epochs"] * n_train
            best = min(best, row.fitness)
            curve.append((images, best))
    reached = next((im for im, b in curve if b <= PUBLISHED), None)
    return {
        **job,
        "best": result.best_fitness,
        "final_val": result.final["val_loss"],
        "final_test": result.final.get("test_loss"),
        "trainings": result.n_trainings,
        "images": images,
        "reached_published_at": reached,
        "seconds": wall,
        "best_spec": result.best_spec,
        "curve": curve,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--dataset",
        nargs="+",
        default=["mnist"],
        choices=["mnist", "fashion-mnist", "digits"],
        help="digits (8x8, 1,257 training images) is a quick sanity race, not the protocol",
    )
    p.add_argument("--data-dir", default=str(SHARED))
    p.add_argument("--strategies", nargs="+", default=["microbial", "aging", "random", "tpe"])
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 per strategy")
    p.add_argument("--evaluations", type=int, default=120)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument(
        "--population", type=int, default=20, help="microbial and aging population (S = P/4)"
    )
    p.add_argument("--final-epochs", type=int, default=20)
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="first N images (seed split: a third, at most 5,000, for validation); default 15,000",
    )
    p.add_argument("--workers", type=int, default=2, help="searches run at once")
    p.add_argument("--out", default="out/search_quality")
    p.add_argument(
        "--combine",
        nargs="+",
        metavar="RESULTS",
        help="no search: report the results.json files of earlier runs together (same budget)",
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes: check that it runs")
    args = p.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
    if args.combine:
        return combine(args)
    unknown = [s for s in args.strategies if s not in STRATEGIES]
    if unknown:
        print(f"unknown strategy {unknown[0]}: choose from {', '.join(STRATEGIES)}")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from evoae.settings import SearchSettings

    n_train = {
        ds: len(
            SearchSettings.of(dataset=ds, data_dir=args.data_dir, limit=args.limit)
            .load_splits()
            .train
        )
        for ds in args.dataset
    }
    jobs = [
        {
            "label": label,
            "dataset": ds,
            "data_dir": args.data_dir,
            "seed": seed,
            "evaluations": args.evaluations,
            "population": args.population,
            "epochs": args.epochs,
            "final_epochs": args.final_epochs,
            "n_train": n_train[ds],
            "limit": args.limit,
            "out": str(out / "runs" / f"{ds}-{label}-seed{seed}"),
        }
        for ds in args.dataset
        for seed in range(args.seeds)
        for label in args.strategies
    ]
    print(
        f"{len(jobs)} searches, {args.workers} at a time; {os.cpu_count()} cores; "
        f"budget {args.evaluations} candidates x {args.epochs} epochs x training images {n_train}",
        flush=True,
    )
    t0 = time.perf_counter()
    results = []
    with ProcessPoolExecutor(args.workers) as pool:
        for r in pool.map(one_search, jobs):
            results.append(r)
            # Written after every search, so a stopped race keeps what it finished.
            (out / "results.json").write_text(json.dumps(results, indent=1))
            print(
                f"  {r['dataset']:13s} {r['label']:11s} seed {r['seed']}: best {r['best']:.4f}"
                f"  retrained val {r['final_val']:.4f}  ({r['seconds']:.0f} s)",
                flush=True,
            )
    print(f"total wall time {time.perf_counter() - t0:.0f} s")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    for ds in args.dataset:
        report(ds, [r for r in results if r["dataset"] == ds], args, out, n_train[ds])
    return 0


def combine(args: argparse.Namespace) -> int:
    """Report earlier races' ``results.json`` files as one (they must share the budget)."""
    results: list[dict[str, Any]] = []
    for f in args.combine:
        results += json.loads(Path(f).read_text())
    budgets = {(r["evaluations"], r["epochs"], r["n_train"], r["dataset"]) for r in results}
    for ds in sorted({b[3] for b in budgets}):
        mine = {b for b in budgets if b[3] == ds}
        if len(mine) > 1:
            print(f"{ds}: the results were raced at different budgets {sorted(mine)}")
            return 2
    args.strategies = list(dict.fromkeys(r["label"] for r in results))
    args.evaluations, args.epochs = results[0]["evaluations"], results[0]["epochs"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for ds in dict.fromkeys(r["dataset"] for r in results):
        mine = [r for r in results if r["dataset"] == ds]
        report(ds, mine, args, out, mine[0]["n_train"])
    return 0


def report(
    ds: str, results: list[dict[str, Any]], args: argparse.Namespace, out: Path, n_train: int
) -> None:
    budget = args.evaluations * args.epochs * n_train
    print(f"\n{ds}: best validation MSE after {args.evaluations} candidates x {args.epochs} epochs")
    if any(label.startswith("asha") for label in args.strategies):
        print("(asha-*: the same epochs; best at the top rung's 4 epochs: compare retrained)")
    head = (
        f"{'strategy':11s} {'median':>7s} {'min':>7s} {'max':>7s} | {'retrained val':>13s}"
        f" {'test':>7s} | reached {PUBLISHED} at (share of budget) | wall s"
    )
    print(head)
    for label in args.strategies:
        rs = [r for r in results if r["label"] == label]
        if not rs:
            continue
        best = np.array([r["best"] for r in rs])
        val = np.median([r["final_val"] for r in rs])
        test = np.median([r["final_test"] for r in rs])
        reached = [r["reached_published_at"] for r in rs]
        shares = ", ".join("-" if x is None else f"{x / budget:.2f}" for x in reached)
        wall = np.median([r["seconds"] for r in rs])
        print(
            f"{label:11s} {np.median(best):7.4f} {best.min():7.4f} {best.max():7.4f} |"
            f" {val:13.4f} {test:7.4f} | {shares} | {wall:.0f}"
        )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, label in enumerate(args.strategies):
        for j, r in enumerate(r for r in results if r["label"] == label):
            xs = [c[0] / 1e6 for c in r["curve"]]
            ys = [c[1] for c in r["curve"]]
            ax.step(
                xs,
                ys,
                where="post",
                color=colors[k % len(colors)],
                alpha=0.8,
                label=label if j == 0 else None,
            )
    if ds != "digits":
        ax.axhline(PUBLISHED, color="gray", ls="--", lw=1, label=f"published GA best {PUBLISHED}")
    ax.set_xlabel("training images processed (millions)")
    ax.set_ylabel("best validation MSE so far")
    if ds != "digits":
        ax.set_ylim(0.025, 0.045)
    ax.set_title(f"{ds} 16x16, code 4: best-so-far at equal compute")
    ax.legend()
    fig.tight_layout()
    path = out / f"search_quality_{ds}.png"
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


if __name__ == "__main__":
    sys.exit(main())
