"""Population-parallel training throughput against one-at-a-time training.

In one run on 16x16 MNIST (the seed protocol: 10,000 training and 5,000 validation
images, 2 epochs, batch 32) this measures

1. the machine's float32 matmul peak (best of several 2048 x 2048 products);
2. for populations of mixed seed-space candidates: candidates trained per second and
   achieved GFLOP/s for (a) one-at-a-time training (:class:`SequentialEvaluator`) and
   (b) the population trainer (:class:`PopulationEvaluator`), the speed-up (b)/(a) and
   (b)'s fraction of the matmul peak;
3. the same for populations of CNN-VAEs of one block structure with mixed activations,
   optimizers and learning rates (one structure bucket of the trainer);
4. optionally (``--search``) the full ``seed`` preset search with K concurrent
   tournaments on the population trainer against K = 1 on one-at-a-time training:
   wall time and best validation MSE of each.

Achieved GFLOP/s counts only the useful (unpadded) multiply-adds of training and of
scoring on the validation set, two FLOPs each: forward plus the two backward products
per layer and training row, one forward per validation row.

    .venv/bin/python benchmarks/throughput.py --data-dir ../shared/data
    .venv/bin/python benchmarks/throughput.py --smoke   # seconds: checks it still runs
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from evoae.data import load_dataset
from evoae.families.conv.space import CONV_ACTIVATIONS
from evoae.families.dense.space import dense_preset
from evoae.families.dense.stack import stack_flops
from evoae.loop import search
from evoae.training.evaluator import Evaluator, SequentialEvaluator, Task
from evoae.training.population import PopulationEvaluator

#: ../shared/data relative to the repository root (never an absolute path).
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
#: The smoke run reads MNIST too (tests/test_benchmarks_smoke.py skips without it).
NEEDS_SHARED_DATA = True
#: ``--smoke``: every part at tiny sizes, so a test runs it in seconds (figures mean nothing).
SMOKE = {
    "sizes": [2],
    "epochs": 1,
    "repeats": 1,
    "conv_sizes": [2],
    "search": True,
    "concurrent": 2,
    "train_rows": 300,
    "val_rows": 100,
    "peak_size": 256,
    "threads": 1,
}


def matmul_peak(size: int = 2048, reps: int = 5) -> float:
    """Best float32 GFLOP/s of a square matmul on this machine, now."""
    a = torch.rand(size, size)
    b = torch.rand(size, size)
    a @ b  # warm-up: thread pool, allocator
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best / 1e9


def useful_flops(spec: dict, n_train: int, n_val: int, epochs: int) -> float:
    """FLOPs of training ``spec`` (3 products per layer and row) and scoring it."""
    macs, _ = stack_flops([spec])
    return 2.0 * macs * (3 * n_train * epochs + n_val)


def timed(
    make: Callable[[], Evaluator], tasks: list[Task], repeats: int
) -> tuple[float, dict, Evaluator]:
    """Best wall time of ``repeats`` runs, each on a fresh evaluator (the machine is
    shared: bursts of load only ever slow a run down), with the last run's results."""
    best = float("inf")
    for _ in range(repeats):
        evaluator = make()
        t = time.perf_counter()
        results = dict(evaluator.evaluate(tasks))
        best = min(best, time.perf_counter() - t)
    return best, results, evaluator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=str(SHARED))
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 5, 20, 50])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--max-waste", type=float, default=0.6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2, help="best of this many timings")
    ap.add_argument("--conv-sizes", type=int, nargs="*", default=[5, 20])
    ap.add_argument("--search", action="store_true", help="also time the full seed search")
    ap.add_argument("--concurrent", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--train-rows", type=int, default=10_000, help="training images")
    ap.add_argument("--val-rows", type=int, default=5_000, help="validation images")
    ap.add_argument("--peak-size", type=int, default=2048, help="side of the peak's matmul")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: check that it runs")
    args = ap.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(args.seed)
    n_train, n_val = args.train_rows, args.val_rows
    ds = load_dataset("mnist", data_dir=args.data_dir, image_size=(16, 16), limit=n_train + n_val)
    x = ds.x.reshape(len(ds.x), -1)
    x_train, x_val = x[:n_train], x[n_train : n_train + n_val]
    peak = matmul_peak(args.peak_size)
    print(f"threads {torch.get_num_threads()}  float32 matmul peak {peak:.1f} GFLOP/s")
    space = dense_preset("seed", x.shape[1], 4)
    # Warm-up (thread pools, allocator, lazy initialisation) on a short slice, untimed.
    warm = [Task(space.decode(space.sample(np.random.default_rng(args.seed))), 0, 1)]
    for make in (SequentialEvaluator, PopulationEvaluator):
        dict(make(x_train[:512], x_val[:512]).evaluate(warm))
    out: dict = {"threads": torch.get_num_threads(), "peak_gflops": peak, "populations": []}
    header = (
        f"{'pop':>4} {'seq cand/s':>10} {'seq GF/s':>9} {'pop cand/s':>10} {'pop GF/s':>9} "
        f"{'speed-up':>8} {'of peak':>8} {'waste':>6} stacks"
    )
    print(header)
    for size in args.sizes:
        rng = np.random.default_rng(args.seed + size)
        tasks = [Task(space.decode(space.sample(rng)), 1000 + i, args.epochs) for i in range(size)]
        flops = sum(useful_flops(t.spec, len(x_train), len(x_val), t.epochs) for t in tasks)
        seq_s, seq_res, _ = timed(lambda: SequentialEvaluator(x_train, x_val), tasks, args.repeats)
        pop_s, pop_res, pop_ev = timed(
            lambda: PopulationEvaluator(x_train, x_val, max_waste=args.max_waste),
            tasks,
            args.repeats,
        )
        agree = max(
            abs(pop_res[i].fitness - seq_res[i].fitness)
            for i in range(size)
            if seq_res[i].status == "ok" and pop_res[i].status == "ok"
        )
        row = {
            "population": size,
            "sequential_s": seq_s,
            "population_s": pop_s,
            "sequential_cand_per_s": size / seq_s,
            "population_cand_per_s": size / pop_s,
            "sequential_gflops": flops / seq_s / 1e9,
            "population_gflops": flops / pop_s / 1e9,
            "speedup": seq_s / pop_s,
            "fraction_of_peak": flops / pop_s / 1e9 / peak,
            "padding_waste": pop_ev.stats.padding_waste,
            "stacks": pop_ev.stats.sizes,
            "max_fitness_difference": agree,
        }
        out["populations"].append(row)
        print(
            f"{size:>4} {row['sequential_cand_per_s']:>10.2f} {row['sequential_gflops']:>9.1f} "
            f"{row['population_cand_per_s']:>10.2f} {row['population_gflops']:>9.1f} "
            f"{row['speedup']:>7.2f}x {row['fraction_of_peak']:>7.1%} "
            f"{row['padding_waste']:>6.1%} {row['stacks']}  (|dfitness| <= {agree:.1e})"
        )
    if args.conv_sizes:
        out["conv"] = run_conv(args, x_train.reshape(-1, 1, 16, 16), x_val.reshape(-1, 1, 16, 16))
    if args.search:
        out["search"] = run_searches(args)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


def conv_population(size: int, seed: int) -> list[dict]:
    """CNN-VAEs of one block structure (two batch-normed stride-2 blocks of 16 and 32
    filters, code 4) with mixed activations, optimizers and learning rates: the members a
    structure bucket of the population trainer holds."""
    rng = np.random.default_rng(seed)
    specs = []
    for _ in range(size):
        act = [CONV_ACTIVATIONS[int(rng.integers(len(CONV_ACTIVATIONS)))] for _ in range(2)]
        opt = ("sgd", "adam", "adamw")[int(rng.integers(3))]
        specs.append(
            {
                "family": "conv-vae",
                "input_shape": [1, 16, 16],
                "code_size": 4,
                "blocks": [[16, 3, 2, act[0], True], [32, 3, 2, act[1], True]],
                "dense": 0,
                "variational": True,
                "optimizer": opt,
                "lr": float(np.exp(rng.uniform(np.log(1e-4), np.log(1e-2)))),
                "batch_size": 32,
                "beta": 1.0,
                "recon_loss": "bce",
            }
        )
    return specs


def run_conv(args: argparse.Namespace, x_train: torch.Tensor, x_val: torch.Tensor) -> list[dict]:
    """Candidates per second of one-at-a-time vs stacked training of same-structure CNNs."""
    rows = []
    print(f"{'CNN pop':>7} {'seq cand/s':>10} {'pop cand/s':>10} {'speed-up':>8}")
    for size in args.conv_sizes:
        tasks = [Task(s, 2000 + i, args.epochs) for i, s in enumerate(conv_population(size, size))]
        seq_s, seq_res, _ = timed(lambda: SequentialEvaluator(x_train, x_val), tasks, args.repeats)
        pop_s, pop_res, _ = timed(lambda: PopulationEvaluator(x_train, x_val), tasks, args.repeats)
        rel = max(
            abs(pop_res[i].fitness - seq_res[i].fitness) / abs(seq_res[i].fitness)
            for i in range(size)
            if seq_res[i].status == "ok" and pop_res[i].status == "ok"
        )
        row = {
            "population": size,
            "sequential_s": seq_s,
            "population_s": pop_s,
            "speedup": seq_s / pop_s,
            "max_relative_fitness_difference": rel,
        }
        rows.append(row)
        print(
            f"{size:>7} {size / seq_s:>10.2f} {size / pop_s:>10.2f} {seq_s / pop_s:>7.2f}x"
            f"  (relative |dfitness| <= {rel:.1e})"
        )
    return rows


def run_searches(args: argparse.Namespace) -> list[dict]:
    """The full seed search: K concurrent on the population trainer vs K = 1 inline."""
    rows = []
    # The smoke run: a few candidates on a slice (the protocol's split needs 15,000 images).
    small = dict(population=4, generations=2, epochs=1, final_epochs=1, split="random")
    small.update(min_steps=0, final_min_steps=0)
    budget = dict(small, limit=args.train_rows + args.val_rows) if args.smoke else {}
    for executor, k in (("population", args.concurrent), ("inline", 1)):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            res = search(
                "mnist",
                data_dir=args.data_dir,
                out=Path(tmp) / "run",
                executor=executor,
                strategy="microbial",
                concurrent=k,
                seed=args.seed,
                **budget,
            )
            seconds = time.perf_counter() - t
        row = {
            "executor": executor,
            "concurrent": k,
            "seconds": seconds,
            "best_fitness": res.best_fitness,
            "final_val_loss": res.final.get("val_loss"),
            "trainings": res.n_trainings,
        }
        rows.append(row)
        print(
            f"seed search {executor:>10} K={k:<3} {seconds:7.1f} s  best val MSE "
            f"{res.best_fitness:.5f}  final val MSE {row['final_val_loss']:.5f}  "
            f"({res.n_trainings} trainings)"
        )
    print(f"search speed-up {rows[1]['seconds'] / rows[0]['seconds']:.2f}x")
    return rows


if __name__ == "__main__":
    main()
