"""PCA-residual candidates: does the model evoae hands back beat PCA and a hand design?

Two measurements, each with same-run references:

* **digits** (scikit-learn's 8x8 digits, ``X / 16``, split 75/25 with seed 0): the
  held-out MSE of ``EvolvedAutoencoder(code_size=k)`` with its defaults, of PCA fitted
  on the same training rows, and of the hand-written 64-128-k-128-64 ReLU autoencoder
  (Adam, batch 64, linear code and output) trained for the estimator's fit time.
* **mnist** (16x16 MNIST, the published split, ``--mnist-limit`` training rows): a short
  ``evoae.search`` (the settings ``evoae search --dataset mnist`` takes); the retrained
  best's validation MSE against PCA's (``final["pca_ratio"]``) and the hand design
  trained for the search's wall time on the same split.

    python benchmarks/residual.py              # digits k=4,2 and a short MNIST search
    python benchmarks/residual.py --smoke      # seconds: tiny budgets (the test runs it)
    python benchmarks/residual.py --no-residual  # the same without PCA-residual candidates

Ratios below 1 beat PCA. One torch thread; figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split
from torch import nn

import evoae
from evoae import estimator as est
from evoae.families import describe

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT.parent / "shared" / "data"


def hand_net(d: int, k: int, seed: int = 0) -> nn.Module:
    """The hand design: d-128-k-128-d, ReLU hidden layers, linear code and output."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(d, 128), nn.ReLU(), nn.Linear(128, k),
        nn.Linear(k, 128), nn.ReLU(), nn.Linear(128, d),
    )  # fmt: skip


def train_hand(tr: np.ndarray, seconds: float, k: int, seed: int = 0) -> tuple[nn.Module, int]:
    """Train :func:`hand_net` with Adam (lr 1e-3, batch 64) for about ``seconds``
    (whole epochs, at least one); returns the net and the epochs trained."""
    x = torch.as_tensor(tr, dtype=torch.float32)
    net = hand_net(x.shape[1], k, seed)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    t0, epochs = time.perf_counter(), 0
    while epochs == 0 or time.perf_counter() - t0 < seconds:
        for idx in torch.randperm(len(x), generator=g).split(64):
            loss = nn.functional.mse_loss(net(x[idx]), x[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        epochs += 1
    return net.eval(), epochs


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (worker pools): less sensitive
    than wall time to other work on a shared machine."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def hand_mse(net: nn.Module, te: np.ndarray) -> float:
    with torch.no_grad():
        return mse(te, net(torch.as_tensor(te, dtype=torch.float32)).numpy())


def digits(k: int, smoke: bool, residual: bool, seed: int = 0) -> dict[str, Any]:
    """Estimator defaults (or a tiny budget with ``smoke``) on digits / 16, code ``k``."""
    x = load_digits().data / 16.0
    if smoke:
        x = x[:400]
    tr, te = train_test_split(x, test_size=0.25, random_state=0)
    pca = PCA(n_components=k, svd_solver="full").fit(tr)
    pca_mse = mse(te, pca.inverse_transform(pca.transform(te)))
    budget = dict(population=4, generations=2, final_epochs=3, final_min_steps=0) if smoke else {}
    ae = evoae.EvolvedAutoencoder(code_size=k, random_state=seed, **budget)
    t0, c0 = time.perf_counter(), cpu_seconds()
    with _residual(residual):
        ae.fit(tr)
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    ae_mse = mse(te, ae.inverse_transform(ae.transform(te)))
    net, epochs = train_hand(tr, seconds, k)
    return {
        "pca": pca_mse,
        "evoae": ae_mse,
        "ratio": ae_mse / pca_mse,
        "hand": hand_mse(net, te) / pca_mse,
        "hand_epochs": epochs,
        "seconds": seconds,
        "cpu": cpu,
        "final": f"{ae.final_['epochs']} epochs, best {ae.final_['best_epoch']}",
        "model": "PCA fallback" if ae.fallback_ else describe(ae.best_spec_),
    }


def mnist(
    k: int, smoke: bool, residual: bool, limit: int, budget: str, seed: int = 0
) -> dict[str, Any]:
    """A short search on 16x16 MNIST; the retrained best against PCA and the hand design."""
    pop, gens, final = (4, 2, 3) if smoke else (int(v) for v in budget.split(","))
    settings = dict(
        dataset="mnist", data_dir=str(DATA_DIR), image_size=16, limit=limit, code_size=k,
        strategy="microbial", population=pop, generations=gens, final_epochs=final, seed=seed,
        threads=1,
    )  # fmt: skip
    if not residual:
        settings["residual"] = False
    if smoke:
        settings["final_min_steps"] = 0
    with tempfile.TemporaryDirectory(prefix="evoae-residual-") as tmp:
        t0, c0 = time.perf_counter(), cpu_seconds()
        res = evoae.search(out=Path(tmp) / "run", **settings)
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        splits = res.settings.load_splits()
    tr = np.asarray(splits.train.x, np.float32).reshape(len(splits.train.x), -1)
    va = np.asarray(splits.val.x, np.float32).reshape(len(splits.val.x), -1)
    net, epochs = train_hand(tr, seconds, k)
    f = res.final
    cli = (
        f"evoae search --dataset mnist --data-dir {DATA_DIR} --image-size 16 --limit {limit} "
        f"-k {k} --strategy microbial --population {pop} --generations {gens} "
        f"--final-epochs {final} --seed {seed}" + ("" if residual else " --no-residual")
    )
    return {
        "pca": f["pca_val_loss"],
        "evoae": f["val_loss"],
        "ratio": f["pca_ratio"],
        "hand": hand_mse(net, va) / f["pca_val_loss"],
        "hand_epochs": epochs,
        "seconds": seconds,
        "cpu": cpu,
        "final": f"{f['epochs']} epochs, best {f['best_epoch']}",
        "model": "PCA fallback" if f.get("fallback") else describe(res.best_spec),
        "command": cli,
    }


class _residual:
    """With ``residual`` False, the estimator's searches run with ``residual=False`` (the
    space before PCA-residual candidates); the estimator has no parameter for it."""

    def __init__(self, residual: bool) -> None:
        self.residual, self.search = residual, est.search

    def __enter__(self) -> None:
        if not self.residual:
            est.search = lambda *a, **kw: self.search(*a, residual=False, **kw)  # type: ignore[assignment]

    def __exit__(self, *exc: object) -> None:
        est.search = self.search  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny budgets: seconds, not minutes")
    p.add_argument("--no-residual", action="store_true", help="turn PCA-residual candidates off")
    p.add_argument("--codes", default="4,2", help="digits code sizes, comma-separated ('': none)")
    p.add_argument("--skip-mnist", action="store_true")
    p.add_argument("--seed", type=int, default=0, help="the estimator's and search's seed")
    p.add_argument("--mnist-limit", type=int, default=3000, help="MNIST training rows")
    p.add_argument("--mnist-budget", default="8,12,100", help="population,generations,final epochs")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    residual = not args.no_residual
    limit = 600 if args.smoke else args.mnist_limit
    print(f"residual candidates: {'on' if residual else 'off'}")
    for k in (int(c) for c in args.codes.split(",") if c):
        r = digits(k, args.smoke, residual, args.seed)
        print(
            f"digits k={k}: PCA {r['pca']:.5f}  evoae {r['evoae']:.5f}  ratio {r['ratio']:.3f}  "
            f"hand {r['hand']:.3f} ({r['hand_epochs']} epochs)  fit {r['seconds']:.1f} s "
            f"({r['cpu']:.1f} s CPU)  final training {r['final']}  "
            f"model {r['model']}",
            flush=True,
        )
    if not args.skip_mnist and (DATA_DIR / "mnist").is_dir():
        r = mnist(4, args.smoke, residual, limit, args.mnist_budget, args.seed)
        print(
            f"mnist 16x16 k=4 ({limit} rows): PCA {r['pca']:.5f}  evoae {r['evoae']:.5f}  "
            f"ratio {r['ratio']:.3f}  hand {r['hand']:.3f} ({r['hand_epochs']} epochs)  "
            f"search {r['seconds']:.1f} s ({r['cpu']:.1f} s CPU)  final training {r['final']}  "
            f"model {r['model']}\n"
            f"  = {r['command']}",
            flush=True,
        )
    print(
        f"Python {platform.python_version()}, torch {torch.__version__}, {sys.platform}; "
        f"one torch thread, seed {args.seed}; ratios are MSE / PCA's MSE on the same held-out rows"
    )


if __name__ == "__main__":
    main()
