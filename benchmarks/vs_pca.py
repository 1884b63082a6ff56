"""evoae against PCA and a hand-written autoencoder: held-out MSE in the user's units.

For scikit-learn's bundled data sets (wine, diabetes, breast cancer, iris, digits) and
16x16 MNIST / Fashion-MNIST slices (the first 3,000 and 10,000 training images, pixels
/255): split the rows 75/25 (seeded), fit on the training rows and measure the mean
squared error per value on the held-out rows, **in the data's own units** (no scaling of
the measured error; what a user comparing with ``PCA`` would compute):

* ``PCA``: ``sklearn.decomposition.PCA(k)`` on the raw training rows;
* ``evoae``: :class:`evoae.EvolvedAutoencoder` with its defaults (``scale=None``: it
  minimises error in the user's units); the model it returned is ``linear`` (PCA, the
  fallback or a linear search result) or ``nonlinear``; its fit's CPU time (this process
  and its waited-for worker processes) and wall time;
* ``hand``: a hand-written d-h-k-h-d autoencoder with h = 2d (ReLU hidden layers,
  linear code and output: 64-128-k-128-64 on digits, the issue's network, scaled with the
  input: 256-512-k-512-256 on the images, 4-8-k-8-4 on iris) trained with Adam (lr 1e-3, batch 64,
  all training rows, seed 0, one thread) on inputs scaled as evoae's default scales them
  (per-feature shift, one common factor: its loss is the raw MSE times a constant). One
  training, measured twice: after the same CPU time as evoae's fit and after the same
  wall time. A reference: what a few lines of PyTorch give at the same cost.
* ``evoae ahead of hand net``: evoae's held-out MSE below the hand net's **at the same
  CPU time**. On a shared, loaded machine the wall time of a fit counts the other jobs
  too (it was 2-8x the CPU time while these figures were taken), so the same-wall figure
  gives the hand net whatever the load happened to be; it is reported beside.

Ratios are to PCA's held-out MSE (below 1: better than PCA).

    python benchmarks/vs_pca.py                        # everything; prints a markdown table
    python benchmarks/vs_pca.py --quick                # scikit-learn's sets only
    python benchmarks/vs_pca.py --only digits --codes 4
    python benchmarks/vs_pca.py --smoke                # seconds: iris, code 2, tiny budget
    python benchmarks/vs_pca.py --scale minmax         # the estimator weighing features by range

One run per row (seed 0, or ``--seed``: the split and the fits), one torch thread.
``--smoke`` checks the plumbing only (the estimator gets a tiny budget); its figures mean
nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import torch
from sklearn import datasets
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split
from torch import nn

import evoae
from evoae.data import load_dataset
from evoae.families import describe

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT.parent / "shared" / "data"
TABULAR = ("wine", "diabetes", "breast_cancer", "iris", "digits")
IMAGES = ("mnist", "fashion-mnist")
#: The estimator's budget under ``--smoke`` (seconds, not minutes).
SMOKE = dict(population=2, generations=1, epochs=1, min_steps=0, final_epochs=5, final_min_steps=0)


def _tabular(name: str) -> np.ndarray:
    loader = getattr(datasets, f"load_{name}")
    return np.asarray(loader().data, dtype=np.float64)


def _images(name: str, rows: int) -> np.ndarray:
    ds = load_dataset(name, data_dir=DATA_DIR, image_size=(16, 16), limit=rows)
    return np.asarray(ds.x, dtype=np.float64).reshape(len(ds.x), -1)


def sources(quick: bool, rows: list[int]) -> dict[str, Callable[[], np.ndarray]]:
    """name -> a function giving the data's rows."""
    out: dict[str, Callable[[], np.ndarray]] = {n: (lambda n=n: _tabular(n)) for n in TABULAR}
    if not quick:
        for name in IMAGES:
            for r in rows:
                out[f"{name}-{r}"] = lambda name=name, r=r: _images(name, r)
    return out


def cpu_seconds() -> float:
    """CPU seconds of this process and its waited-for children (worker processes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def hand_autoencoder(
    train: np.ndarray, test: np.ndarray, k: int, wall: float, cpu: float
) -> dict[str, dict[str, float]]:
    """The d-h-k-h-d ReLU autoencoder trained with Adam, one thread, until it has had
    ``wall`` seconds of wall time and ``cpu`` seconds of CPU time; its held-out MSE after
    the epoch in which each ran out (``{"wall": {...}, "cpu": {...}}``)."""
    lo = train.min(axis=0)
    widest = float(np.ptp(train, axis=0).max()) or 1.0  # one factor: loss = raw MSE / widest^2
    tr = torch.as_tensor((train - lo) / widest, dtype=torch.float32)
    te = torch.as_tensor((test - lo) / widest, dtype=torch.float32)
    d = tr.shape[1]
    h = 2 * d  # the 64-128-k on digits, its widths scaled with the input
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(d, h), nn.ReLU(), nn.Linear(h, k),
        nn.Linear(k, h), nn.ReLU(), nn.Linear(h, d),
    )  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    limits = {"wall": wall, "cpu": cpu}
    clocks = {"wall": time.perf_counter, "cpu": time.process_time}
    starts = {name: clock() for name, clock in clocks.items()}
    out: dict[str, dict[str, float]] = {}
    epochs = 0
    while len(out) < len(limits):
        for idx in torch.randperm(len(tr), generator=gen).split(64):
            batch = tr[idx]
            loss = torch.mean((net(batch) - batch) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
        epochs += 1
        for name, clock in clocks.items():
            if name not in out and clock() - starts[name] >= limits[name]:
                with torch.no_grad():
                    mse = float(torch.mean((net(te) - te) ** 2)) * widest**2
                out[name] = {"mse": mse, "epochs": epochs}
    return out


def compare(x: np.ndarray, k: int, seed: int = 0, **params: Any) -> dict[str, Any]:
    """PCA, evoae and the hand-written network fit on 75% of ``x``, measured on 25%."""
    tr, te = train_test_split(x, test_size=0.25, random_state=seed)
    pca = PCA(n_components=k, svd_solver="full").fit(tr)
    pca_mse = float(np.mean((te - pca.inverse_transform(pca.transform(te))) ** 2))
    t0, c0 = time.perf_counter(), cpu_seconds()
    ae = evoae.EvolvedAutoencoder(code_size=k, random_state=seed, **params).fit(tr)
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    ae_mse = float(np.mean((te - ae.inverse_transform(ae.transform(te))) ** 2))
    hand = hand_autoencoder(tr, te, k, seconds, cpu)
    linear = bool(ae.pca_refit_ or ae.fallback_)
    kept = ae.final_.get("candidates") or []
    return {
        "rows": len(x),
        "features": x.shape[1],
        "pca": pca_mse,
        "evoae": ae_mse,
        "ratio": ae_mse / pca_mse,
        "kind": "linear" if linear else "nonlinear",
        "seconds": seconds,
        "cpu": cpu,
        "hand_cpu": hand["cpu"]["mse"] / pca_mse,
        "hand_cpu_epochs": hand["cpu"]["epochs"],
        "hand_wall": hand["wall"]["mse"] / pca_mse,
        "hand_wall_epochs": hand["wall"]["epochs"],
        # The verdict uses CPU time: on a loaded, shared machine wall time measures the
        # other jobs as much as the fit.
        "ahead": ae_mse < hand["cpu"]["mse"],
        "finalists": len(kept),
        "final_epochs": ae.final_.get("epochs"),
        "final_stop": ae.final_.get("stop"),
        "fallback": ae.fallback_ or "",
        "architecture": describe(ae.best_spec_),
    }


def table(rows: list[tuple[str, int, dict[str, Any]]]) -> str:
    lines = [
        "| data | rows x features | code | PCA MSE | evoae MSE | ratio | model | fit CPU s "
        "| fit wall s | hand ratio, same CPU (epochs) | hand ratio, same wall (epochs) "
        "| evoae ahead of hand net | returned model |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, k, r in rows:
        model = "PCA fallback" if r["fallback"] else r["architecture"]
        lines.append(
            f"| {name} | {r['rows']} x {r['features']} | {k} | {r['pca']:.4g} | "
            f"{r['evoae']:.4g} | {r['ratio']:.3f} | {r['kind']} | {r['cpu']:.1f} | "
            f"{r['seconds']:.1f} | {r['hand_cpu']:.3f} ({r['hand_cpu_epochs']}) | "
            f"{r['hand_wall']:.3f} ({r['hand_wall_epochs']}) | "
            f"{'yes' if r['ahead'] else 'no'} | `{model}` |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[tuple[str, int, dict[str, Any]]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="scikit-learn's sets only")
    p.add_argument("--smoke", action="store_true", help="iris, code 2, tiny budget: seconds")
    p.add_argument("--rows", default="3000,10000", help="comma-separated MNIST slice sizes")
    p.add_argument("--codes", default="2,4", help="comma-separated code sizes")
    p.add_argument(
        "--scale",
        default="none",
        choices=("none", "standard", "minmax"),
        help="the estimator's scale (none: its default, the user's units)",
    )
    p.add_argument("--seed", type=int, default=0, help="the split's and the fits' seed")
    p.add_argument("--only", default=None, help="comma-separated data set names")
    p.add_argument("--out", default=None, help="also write the table here after every row")
    p.add_argument("--order", default=None, help="comma-separated names: run these first")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    todo = sources(args.quick or args.smoke, [int(r) for r in args.rows.split(",")])
    codes = [int(c) for c in args.codes.split(",")]
    params: dict[str, Any] = {"scale": None if args.scale == "none" else args.scale}
    if args.smoke:
        todo, codes, params = {"iris": todo["iris"]}, [2], {**params, **SMOKE}
    if args.only:
        names = args.only.split(",")
        unknown = [n for n in names if n not in todo]
        if unknown:
            p.error(f"unknown data set(s) {', '.join(unknown)}: choose from {', '.join(todo)}")
        todo = {n: todo[n] for n in names}
    if args.order:
        first = [n for n in args.order.split(",") if n in todo]
        todo = {n: todo[n] for n in first + [n for n in todo if n not in first]}
    results: list[tuple[str, int, dict[str, Any]]] = []
    t0 = time.perf_counter()
    for name, load in todo.items():
        x = load()
        for k in codes:
            if k >= x.shape[1]:
                continue
            r = compare(x, k, seed=args.seed, **params)
            results.append((name, k, r))
            print(
                f"{name:20s} k={k} pca={r['pca']:.4g} evoae={r['evoae']:.4g} "
                f"ratio={r['ratio']:.3f} {r['kind']} cpu={r['cpu']:.1f}s wall={r['seconds']:.1f}s "
                f"hand(cpu)={r['hand_cpu']:.3f} ({r['hand_cpu_epochs']} ep) "
                f"hand(wall)={r['hand_wall']:.3f} ({r['hand_wall_epochs']} ep) "
                f"ahead={'yes' if r['ahead'] else 'no'} finalists={r['finalists']} "
                f"final={r['final_epochs']} {r['final_stop']} {r['fallback']}",
                flush=True,
            )
            if args.out:  # rows so far, so a long run leaves its figures behind
                Path(args.out).write_text(table(results) + "\n")
    print(table(results))
    print(f"total {time.perf_counter() - t0:.0f} s")
    print(
        f"Python {platform.python_version()}, torch {torch.__version__}, scikit-learn "
        f"{sklearn.__version__}, {sys.platform}; one torch thread, seed {args.seed}, "
        f"scale {args.scale}" + (" (smoke: tiny budget, figures meaningless)" if args.smoke else "")
    )
    return results


if __name__ == "__main__":
    main()
