"""Fused optimizers against PyTorch's for-loop ones: time per training step, in one run.

On the first ``--rows`` images of 16x16 MNIST (validation: the next ``--rows // 2``), one
torch thread, each model is trained one epoch with :func:`evoae.training.trainer.fit`
twice from the same initial weights and batch order: with the optimizer evoae builds
(``make_optimizer``: PyTorch's fused SGD / Adam / AdamW kernels) and with the for-loop
implementation it used before (``fused=False``, the reference measured in the same run).
Models: the dense 256-128-64-4 autoencoder (ReLU, linear code, sigmoid output) with each
optimizer, and a CNN-VAE (16 and 32 filters, 3x3 stride 2, batch norm, latent 4) with
Adam, at batch 32 and 256. Prints milliseconds per step (best of ``--repeats``), the
speed-up, and the relative difference of the validation loss after the epoch.

    .venv/bin/python benchmarks/optimizers.py
    .venv/bin/python benchmarks/optimizers.py --smoke    # seconds: checks it still runs
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from evoae.data import load_dataset
from evoae.families import build_model
from evoae.objectives.reconstruction import evaluate
from evoae.training.optim import make_optimizer
from evoae.training.trainer import fit

#: ../shared/data relative to the repository root (never an absolute path).
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
#: The smoke run reads MNIST too (tests/test_benchmarks_smoke.py skips without it).
NEEDS_SHARED_DATA = True
#: ``--smoke``: a few hundred images, batch 32 only, so a test runs it in seconds.
SMOKE = {"rows": 256, "repeats": 1, "batches": [32]}

DENSE = {
    "family": "dense",
    "input_dim": 256,
    "code_size": 4,
    "hidden": [[128, "relu"], [64, "relu"]],
    "code_activation": "linear",
    "output_activation": "sigmoid",
}
CONV = {
    "family": "conv-vae",
    "input_shape": [1, 16, 16],
    "code_size": 4,
    "blocks": [[16, 3, 2, "relu", True], [32, 3, 2, "relu", True]],
    "dense": 0,
    "variational": True,
    "beta": 1.0,
    "recon_loss": "bce",
}
#: (label, spec, learning rate): the dense model with each optimizer, the CNN with Adam.
MODELS = [
    ("dense 256-128-64-4 sgd", {**DENSE, "optimizer": "sgd"}, 0.01),
    ("dense 256-128-64-4 adam", {**DENSE, "optimizer": "adam"}, 0.001),
    ("dense 256-128-64-4 adamw", {**DENSE, "optimizer": "adamw"}, 0.001),
    ("conv-vae 16-32 adam", {**CONV, "optimizer": "adam"}, 0.001),
]


def one_epoch(
    spec: dict[str, Any], lr: float, batch: int, x: torch.Tensor, x_val: torch.Tensor, fused: bool
) -> tuple[float, float]:
    """(seconds of one epoch, validation loss after it) from the spec's seed-0 weights."""
    model = build_model({**spec, "lr": lr, "batch_size": batch}, seed=0)
    opt = make_optimizer(spec["optimizer"], model.parameters(), lr, fused=fused)
    t0 = time.perf_counter()
    fit(model, x, epochs=1, batch_size=batch, optimizer=spec["optimizer"], lr=lr, seed=0, opt=opt)
    seconds = time.perf_counter() - t0
    return seconds, evaluate(model, x_val)["loss"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=str(SHARED))
    ap.add_argument("--rows", type=int, default=10_000, help="training images")
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 256])
    ap.add_argument("--repeats", type=int, default=3, help="best of this many epochs")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: check that it runs")
    args = ap.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
    torch.set_num_threads(args.threads)
    n_val = args.rows // 2
    ds = load_dataset("mnist", data_dir=args.data_dir, image_size=(16, 16), limit=args.rows + n_val)
    flat = torch.as_tensor(ds.x).reshape(len(ds.x), -1)
    print(f"16x16 MNIST: train {args.rows}, val {n_val}; torch {torch.__version__}, "
          f"{args.threads} thread(s); best of {args.repeats} epochs")  # fmt: skip
    print(f"{'model':<26}{'batch':>6}{'loop ms/step':>14}{'fused ms/step':>15}{'speed-up':>10}"
          f"{'val loss rel. diff':>20}")  # fmt: skip
    rows = []
    for label, spec, lr in MODELS:
        data = flat if spec["family"] == "dense" else flat.reshape(-1, 1, 16, 16)
        x_train, x_val = data[: args.rows], data[args.rows :]
        for batch in args.batches:
            steps = math.ceil(args.rows / batch)
            best = {}
            loss = {}
            for _ in range(args.repeats):
                for fused in (False, True):  # interleaved: load bursts hit both alike
                    sec, loss[fused] = one_epoch(spec, lr, batch, x_train, x_val, fused)
                    best[fused] = min(best.get(fused, math.inf), sec)
            diff = abs(loss[True] - loss[False]) / abs(loss[False])
            row = {
                "model": label,
                "batch": batch,
                "loop_ms_per_step": 1000 * best[False] / steps,
                "fused_ms_per_step": 1000 * best[True] / steps,
                "speedup": best[False] / best[True],
                "val_loss_relative_difference": diff,
            }
            rows.append(row)
            loop_ms, fused_ms = row["loop_ms_per_step"], row["fused_ms_per_step"]
            print(
                f"{label:<26}{batch:>6}{loop_ms:>14.3f}{fused_ms:>15.3f}"
                f"{row['speedup']:>9.2f}x{diff:>20.1e}"
            )
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
