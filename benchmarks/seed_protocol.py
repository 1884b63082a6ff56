"""The published protocol, reproduced and compared in one run.

16x16 MNIST (first 15,000 training images; 10,000 train / 5,000 validation), code size 4.
Prints, side by side: PCA with the same code size (the linear baseline), a fixed
hand-designed reference autoencoder (256-512-256-128-4, ReLU, linear code, sigmoid
output, Adam, 2 epochs, batch 32), and the GA's best validation MSE for each preset
asked for, with the number of trainings, wall time and the best retrained for
``--final-epochs`` epochs.

    python benchmarks/seed_protocol.py --preset seed extended
    python benchmarks/seed_protocol.py --smoke    # seconds: checks it still runs

``--trainer autograd kernel`` runs each preset once per trainer in this process and
prints the wall and CPU time ratio and whether the best genome is the same.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.decomposition import PCA

import evoae
from evoae.settings import SearchSettings
from evoae.training import train_candidate

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REFERENCE = {
    "family": "dense",
    "input_dim": 256,
    "code_size": 4,
    "hidden": [[512, "relu"], [256, "relu"], [128, "relu"]],
    "code_activation": "linear",
    "output_activation": "sigmoid",
    "optimizer": "adam",
    "lr": 1e-3,
    "batch_size": 32,
}
PUBLISHED = 0.0286
#: The smoke run reads MNIST too (tests/docs/test_benchmarks_smoke.py skips without it).
NEEDS_SHARED_DATA = True
#: ``--smoke``: a few candidates on a 600-image random split, one epoch each, so a test
#: runs every step in seconds (the figures mean nothing).
SMOKE = {"population": 2, "generations": 2, "final_epochs": 1, "out": "runs/smoke"}
SMOKE_DATA = {"split": "random", "limit": 600}
SMOKE_TRAINING = {"epochs": 1, "min_steps": 0, "final_min_steps": 0}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-dir", default=str(SHARED))
    p.add_argument("--preset", nargs="+", default=["seed"], choices=["seed", "extended"])
    p.add_argument("--code-size", type=int, default=4)
    p.add_argument("--generations", type=int, default=100)
    p.add_argument("--population", type=int, default=20)
    p.add_argument("--final-epochs", type=int, default=20)
    p.add_argument("--concurrent", type=int, default=1)
    p.add_argument("--executor", default="auto", help="as evoae search's (default: auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/bench-seed-protocol")
    p.add_argument(
        "--trainer", nargs="+", default=["kernel"], choices=["kernel", "autograd"],
        help="training step(s) to run each preset with (both: a same-run ratio)",
    )  # fmt: skip
    p.add_argument("--smoke", action="store_true", help="tiny sizes: check that it runs")
    args = p.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
    args.data = SMOKE_DATA if args.smoke else {}
    args.training = SMOKE_TRAINING if args.smoke else {}
    if not (Path(args.data_dir) / "mnist").is_dir():
        print(f"MNIST not found under {args.data_dir}: pass --data-dir", file=sys.stderr)
        return 2

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    settings = SearchSettings.of(
        dataset="mnist", data_dir=args.data_dir, code_size=args.code_size, **args.data
    )
    splits = settings.load_splits()
    xtr = splits.train.x.reshape(len(splits.train), -1)
    xva = splits.val.x.reshape(len(splits.val), -1)
    print(f"data: train {xtr.shape}, validation {xva.shape} (16x16, bilinear, no antialias)")

    pca = PCA(n_components=args.code_size, random_state=0).fit(xtr)
    pca_mse = float(np.mean((pca.inverse_transform(pca.transform(xva)) - xva) ** 2))
    print(f"PCA({args.code_size}) val MSE:                      {pca_mse:.4f}")

    spec = dict(REFERENCE, code_size=args.code_size)
    t0 = time.perf_counter()
    ref, _ = train_candidate(
        spec, torch.as_tensor(xtr), torch.as_tensor(xva), epochs=2, seed=args.seed
    )
    ref_s = time.perf_counter() - t0
    print(
        f"reference 256-512-256-128-{args.code_size} (2 epochs) val MSE: {ref.fitness:.4f}"
        f"  ({ref_s:.1f} s, {ref.params} params)"
    )

    for preset in args.preset:
        runs = {}
        for trainer in args.trainer:
            runs[trainer] = run_preset(args, preset, trainer, pca_mse, ref.fitness, ref_s)
        if len(runs) == 2:
            (r0, w0, c0), (r1, w1, c1) = runs["autograd"], runs["kernel"]
            same = r0.best_genome == r1.best_genome
            print(
                f"[{preset}] kernel vs autograd: wall {w0:.0f} s -> {w1:.0f} s ({w0 / w1:.2f}x),"
                f" CPU {c0:.0f} s -> {c1:.0f} s ({c0 / c1:.2f}x); same best genome: {same};"
                f" best fitness {r0.best_fitness:.6f} vs {r1.best_fitness:.6f}"
                f" (rel. diff {abs(r1.best_fitness / r0.best_fitness - 1):.1e})"
            )
    return 0


def run_preset(
    args: argparse.Namespace, preset: str, trainer: str, pca_mse: float, ref: float, ref_s: float
) -> tuple[Any, float, float]:
    """One full search (and final stage) of ``preset``; its result, wall and CPU seconds."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = evoae.search(
        "mnist",
        data_dir=args.data_dir,
        preset=preset,
        code_size=args.code_size,
        population=args.population,
        generations=args.generations,
        final_epochs=args.final_epochs,
        concurrent=args.concurrent,
        executor=args.executor,
        seed=args.seed,
        trainer=trainer,
        out=f"{args.out}-{preset}-{trainer}",
        overwrite=True,
        **args.data,
        **args.training,
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    best = result.best_spec
    arch = "-".join(str(w) for w, _ in best["hidden"])
    acts = [a for _, a in best["hidden"]]
    test_mse = result.final.get("test_loss", float("nan"))
    tag = f"{preset}, {trainer}"
    print(
        f"\n[{tag}] best GA val MSE (2 epochs):   {result.best_fitness:.4f}"
        f"   (published 0.0286 -> ratio {result.best_fitness / PUBLISHED:.3f};"
        f" vs PCA {result.best_fitness / pca_mse:.3f}; vs reference"
        f" {result.best_fitness / ref:.3f})"
    )
    print(f"[{tag}] evaluations / trainings:      {result.n_evaluations} / {result.n_trainings}")
    print(
        f"[{tag}] retrained best ({args.final_epochs} epochs): val MSE "
        f"{result.final['val_loss']:.4f}, test MSE {test_mse:.4f}"
    )
    print(
        f"[{tag}] best architecture: 256-{arch}-{args.code_size} "
        f"{acts} code {best['code_activation']} out {best['output_activation']}"
        f" {best['optimizer']} lr {best['lr']:.2g} batch {best['batch_size']}"
    )
    print(
        f"[{tag}] wall time: {wall:.0f} s (search {wall - result.final['seconds']:.0f} s,"
        f" final training {result.final['seconds']:.0f} s; CPU of this process {cpu:.0f} s;"
        f" {result.executor}); reference"
        f" training took {ref_s:.1f} s -> search = {wall / ref_s:.0f} reference trainings"
    )
    return result, wall, cpu


if __name__ == "__main__":
    sys.exit(main())
