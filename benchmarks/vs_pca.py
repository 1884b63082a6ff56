"""evoae against PCA at the same code size: held-out reconstruction MSE and fit time.

For scikit-learn's bundled data sets (wine, diabetes, breast cancer, iris, digits) and
16x16 MNIST / Fashion-MNIST slices: split the rows 75/25 (seeded), min-max scale with
the training rows' range, fit PCA and :class:`evoae.EvolvedAutoencoder` (its defaults)
on the training rows and measure both on the held-out rows. Errors are mean squared
errors per value in min-max units; ratio = evoae / PCA (below 1: evoae is better).

    python benchmarks/vs_pca.py                 # everything; prints a markdown table
    python benchmarks/vs_pca.py --quick         # tabular sets only
    python benchmarks/vs_pca.py --smoke         # seconds: checks it still runs

One run per row (seed 0), one torch thread.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import torch
from sklearn import datasets
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split

import evoae
from evoae.data import load_dataset
from evoae.families import describe

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT.parent / "shared" / "data"
#: The smoke run reads MNIST too (tests/test_benchmarks_smoke.py skips without it).
NEEDS_SHARED_DATA = True
#: ``--smoke``: one tabular set and a small MNIST slice, each fitted with a tiny search,
#: so a test runs it in seconds (the figures mean nothing).
SMOKE = {"only": "iris,mnist 16x16", "rows": 300}
SMOKE_FIT = {
    "population": 2,
    "generations": 1,
    "epochs": 1,
    "min_steps": 0,
    "final_epochs": 1,
    "final_min_steps": 0,
}


def _tabular(name: str) -> np.ndarray:
    loader = getattr(datasets, f"load_{name}")
    return np.asarray(loader().data, dtype=np.float64)


def _images(name: str, rows: int) -> np.ndarray:
    ds = load_dataset(name, data_dir=DATA_DIR, image_size=(16, 16), limit=rows)
    return np.asarray(ds.x, dtype=np.float64).reshape(len(ds.x), -1)


def sources(quick: bool, rows: int) -> dict[str, Any]:
    """name -> a function giving the data's rows."""
    out: dict[str, Any] = {n: (lambda n=n: _tabular(n)) for n in TABULAR}
    if not quick:
        out["digits"] = lambda: _tabular("digits")
        out["mnist 16x16"] = lambda: _images("mnist", rows)
        out["fashion-mnist 16x16"] = lambda: _images("fashion-mnist", rows)
    return out


TABULAR = ("wine", "diabetes", "breast_cancer", "iris")


def compare(x: np.ndarray, k: int, seed: int = 0, **fit: Any) -> dict[str, float]:
    """PCA and evoae (its defaults, or ``fit``) fitted on 75% of ``x``, measured on the
    other 25% (min-max units)."""
    tr, te = train_test_split(x, test_size=0.25, random_state=seed)
    lo = tr.min(axis=0)
    span = tr.max(axis=0) - lo
    span = np.where(span > 0, span, 1.0)
    tr_s, te_s = (tr - lo) / span, (te - lo) / span
    pca = PCA(n_components=k, svd_solver="full").fit(tr_s)
    pca_mse = float(np.mean((te_s - pca.inverse_transform(pca.transform(te_s))) ** 2))
    t0 = time.perf_counter()
    ae = evoae.EvolvedAutoencoder(code_size=k, random_state=seed, **fit).fit(tr)
    seconds = time.perf_counter() - t0
    recon = (ae.inverse_transform(ae.transform(te)) - lo) / span
    ae_mse = float(np.mean((te_s - recon) ** 2))
    return {
        "rows": len(x),
        "features": x.shape[1],
        "pca": pca_mse,
        "evoae": ae_mse,
        "ratio": ae_mse / pca_mse,
        "seconds": seconds,
        "fallback": ae.fallback_ or "",
        "architecture": describe(ae.best_spec_),
    }


def table(rows: list[tuple[str, int, dict[str, float]]]) -> str:
    lines = [
        "| data | rows x features | code | PCA MSE | evoae MSE | ratio | fit s | returned model |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, k, r in rows:
        model = "PCA fallback" if r["fallback"] else r["architecture"]
        lines.append(
            f"| {name} | {r['rows']} x {r['features']} | {k} | {r['pca']:.5f} | "
            f"{r['evoae']:.5f} | {r['ratio']:.3f} | {r['seconds']:.1f} | `{model}` |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tabular sets only; write nothing")
    p.add_argument("--rows", type=int, default=3000, help="rows of each MNIST slice")
    p.add_argument("--only", default=None, help="comma-separated data set names")
    p.add_argument("--out", default=None, help="also write the table here after every row")
    p.add_argument("--order", default=None, help="comma-separated names: run these first")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: check that it runs")
    args = p.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
    torch.set_num_threads(1)
    results: list[tuple[str, int, dict[str, float]]] = []
    t0 = time.perf_counter()
    todo = sources(args.quick, args.rows)
    if args.order:
        first = [n for n in args.order.split(",") if n in todo]
        todo = {n: todo[n] for n in first + [n for n in todo if n not in first]}
    for name, load in todo.items():
        if args.only and name not in args.only.split(","):
            continue
        x = load()
        for k in (2, 4):
            if k >= x.shape[1]:
                continue
            r = compare(x, k, **(SMOKE_FIT if args.smoke else {}))
            results.append((name, k, r))
            print(
                f"{name:20s} k={k} pca={r['pca']:.5f} evoae={r['evoae']:.5f} "
                f"ratio={r['ratio']:.3f} fit={r['seconds']:.1f}s {r['fallback']}",
                flush=True,
            )
            if args.out:  # rows so far, so a long run leaves its figures behind
                Path(args.out).write_text(table(results) + "\n")
    text = table(results)
    print(text)
    print(f"total {time.perf_counter() - t0:.0f} s")
    print(
        f"Python {platform.python_version()}, torch {torch.__version__}, scikit-learn "
        f"{sklearn.__version__}, {sys.platform}; one torch thread, seed 0, MNIST slices of "
        f"{args.rows} rows at 16x16 (figures: docs/benchmarks.md)"
    )


if __name__ == "__main__":
    main()
