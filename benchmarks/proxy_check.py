"""How well do short trainings rank candidates? Spearman correlation with a long training.

Samples ``--candidates`` genomes from the space (seed preset by default; ``--max-ratio 2``
for the wider one), trains each on the published 16x16 MNIST split (code size 4) and
scores it after each budget of ``--budgets`` epochs (default 1, 2, 20). Training
continues from the previous budget's weights and optimizer state
(:func:`evoae.training.rungs.train_rung`), which gives exactly the score of a fresh
training of that many epochs, so the whole check costs max(budgets) epochs per
candidate. Prints the Spearman rank correlation of every short budget with the longest
one, and of the top-quartile overlap. Runs candidates in a process pool (``--workers``).

    python benchmarks/proxy_check.py --candidates 40 --budgets 1 2 20
    python benchmarks/proxy_check.py --candidates 40 --budgets 1 2 8   # time-bound
    python benchmarks/proxy_check.py --smoke     # seconds: checks it still runs
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
_DATA: dict[str, Any] = {}
#: ``--smoke``: three candidates on digits at 1 and 2 epochs, so a test runs it in
#: seconds (the figures mean nothing).
SMOKE = {"dataset": "digits", "candidates": 3, "budgets": [1, 2], "workers": 1}


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(len(x))
    for v in np.unique(x):  # average ranks of ties
        m = x == v
        r[m] = r[m].mean()
    return r


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def _init(dataset: str, data_dir: str) -> None:
    import torch

    torch.set_num_threads(1)
    from evoae.settings import SearchSettings

    splits = SearchSettings.of(dataset=dataset, data_dir=data_dir).load_splits()
    _DATA["train"] = torch.as_tensor(splits.train.x.reshape(len(splits.train), -1))
    _DATA["val"] = torch.as_tensor(splits.val.x.reshape(len(splits.val), -1))


def _train(job: tuple[int, dict[str, Any], list[int]]) -> list[float]:
    from evoae.training.rungs import train_rung

    i, spec, budgets = job
    scores = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, prev = Path(tmp) / "c", None
        for e in budgets:
            r, _ = train_rung(
                spec, _DATA["train"], _DATA["val"], epochs=e, seed=1000 + i, resume=prev, save=ckpt
            )
            scores.append(r.fitness)
            if r.status != "ok":
                scores += [float("inf")] * (len(budgets) - len(scores))
                break
            prev = ckpt
    return scores


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist", "digits"])
    p.add_argument("--data-dir", default=str(SHARED))
    p.add_argument("--candidates", type=int, default=40)
    p.add_argument("--budgets", type=int, nargs="+", default=[1, 2, 20])
    p.add_argument("--max-ratio", type=float, default=1.0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="out/proxy_check.json")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: check that it runs")
    args = p.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
    from evoae.families.dense.space import DenseSpace

    budgets = sorted(args.budgets)
    input_dim = 64 if args.dataset == "digits" else 256
    space = DenseSpace(input_dim, 4, max_ratio=args.max_ratio)
    rng = np.random.default_rng(args.seed)
    specs = [space.decode(space.sample(rng)) for _ in range(args.candidates)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(
        args.workers, initializer=_init, initargs=(args.dataset, args.data_dir)
    ) as pool:
        scores = np.array(list(pool.map(_train, [(i, s, budgets) for i, s in enumerate(specs)])))
    ok = np.all(np.isfinite(scores), axis=1)
    s = scores[ok]
    print(
        f"{args.dataset}: {ok.sum()} of {len(specs)} candidates trained at {budgets} epochs "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    long = s[:, -1]
    q = max(1, len(long) // 4)
    top_long = set(np.argsort(long)[:q])
    for k, e in enumerate(budgets[:-1]):
        top = set(np.argsort(s[:, k])[:q])
        print(
            f"  {e:3d} epochs vs {budgets[-1]}: Spearman {spearman(s[:, k], long):.3f}, "
            f"top-quartile overlap {len(top & top_long)}/{q}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"budgets": budgets, "scores": scores.tolist()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
