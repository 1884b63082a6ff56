"""The dense training kernel against autograd: step time, GFLOP/s and GEMM share.

In one process, on rows of 16x16 MNIST (digits with ``--smoke``), for one dense
autoencoder (default the issue's typical 256-128-64-4, ReLU, sigmoid output, Adam) at
each batch size this measures

1. a ``torch.mm`` peak: the best GFLOP/s of a 1024 x 1024 float32 product, now;
2. the time of one training step (mean over an epoch's worth of steps, median of
   ``--reps`` interleaved repetitions) of
   (a) ``autograd``: ``trainer="autograd"``, PyTorch's for-loop Adam (evoae's reference),
   (b) ``autograd+fused``: the same with ``torch.optim.Adam(fused=True)``,
   (c) ``kernel``: :mod:`evoae.families.dense.kernel` (``trainer="kernel"``);
3. the time of the step's GEMMs alone (the same ``addmm`` / ``mm`` calls into the same
   buffers, nothing else), hence each step's GEMM share and achieved GFLOP/s against the
   peak.

FLOPs count two per multiply-add: forward ``B * sum(in * out)``, backward twice that
less the first layer's input gradient. Times are CPU seconds of the process (a busy
machine's wait for a core is left out; contention for caches is not) and every ratio is
measured in the same run; ``--threads`` sets torch's threads (default 1, as every evoae
worker).

    .venv/bin/python benchmarks/kernel.py --data-dir ../shared/data
    .venv/bin/python benchmarks/kernel.py --smoke
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from evoae.families import build_model
from evoae.families.dense.kernel import DenseKernel, dense_kernel
from evoae.settings import SearchSettings
from evoae.training.optim import ADAM_EPS, make_optimizer
from evoae.training.trainer import batch_order, epoch_runner, initial_state

#: ../shared/data relative to the repository root (never an absolute path).
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def mm_peak(size: int = 1024, reps: int = 5) -> float:
    """Best float32 GFLOP/s of a square ``torch.mm`` now."""
    a, b = torch.rand(size, size), torch.rand(size, size)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)
    best = min(_timed(lambda: torch.mm(a, b, out=out)) for _ in range(reps))
    return 2 * size**3 / best / 1e9


def _timed(fn: Callable[[], object]) -> float:
    """CPU seconds of this process (not wall: on a shared machine the wait for a core
    is not the step's cost; with one torch thread both agree on a quiet machine)."""
    t = time.process_time()
    fn()
    return time.process_time() - t


def step_flops(widths: list[int], batch: int, residual: bool = False) -> int:
    """FLOPs of one training step's GEMMs (see the module); a PCA-residual model's
    linear path adds two products forward and three backward of ``input x code``."""
    pairs = list(zip(widths[:-1], widths[1:], strict=True))
    fwd = sum(2 * batch * i * o for i, o in pairs)
    path = 5 * 2 * batch * widths[0] * min(widths) if residual else 0
    return 3 * fwd - 2 * batch * pairs[0][0] * pairs[0][1] + path


def gemms_only(kernel: DenseKernel, steps: int) -> Callable[[], None]:
    """The step's GEMMs on the kernel's own buffers and weights, ``steps`` times."""
    xb, z, a, ga, gz, lin_out, _, _ = kernel._plan(kernel.batch)
    layers, path = kernel.layers, kernel.linear

    @torch.no_grad()
    def run() -> None:
        for _ in range(steps):
            prev = xb
            for i, (lin, _) in enumerate(layers):
                torch.addmm(lin.bias, prev, lin.weight.t(), out=z[i])
                prev = a[i]
            if path is not None:
                code = a[path.code]
                torch.addmm(path.enc_bias, xb, path.enc_weight.t(), out=lin_out[0])
                torch.addmm(path.dec_bias, code, path.dec_weight.t(), out=lin_out[1])
                torch.mm(gz[-1].t(), code, out=path.dec_weight.grad)
                torch.mm(gz[-1], path.dec_weight, out=lin_out[2])
                torch.mm(gz[path.code].t(), xb, out=path.enc_weight.grad)
            for i in range(len(layers) - 1, -1, -1):
                lin = layers[i][0]
                torch.mm(gz[i].t(), a[i - 1] if i else xb, out=lin.weight.grad)
                if i:
                    torch.mm(gz[i], lin.weight, out=ga[i - 1])

    return run


def epoch_of(
    name: str, spec: dict, optimizer: str, batch: int, x: torch.Tensor, perm: torch.Tensor
) -> Callable[[], object]:
    """One training epoch of a fresh model by trainer ``name`` (see the module)."""
    model = build_model(spec, 0, init=initial_state(spec, x))
    if name == "autograd+fused" and optimizer != "sgd":
        cls = torch.optim.Adam if optimizer == "adam" else torch.optim.AdamW
        opt = cls(model.parameters(), lr=1e-3, eps=ADAM_EPS, fused=True)
    else:
        opt = make_optimizer(optimizer, model.parameters(), 1e-3)
    run = epoch_runner(model, opt, batch, "kernel" if name == "kernel" else "autograd")
    return lambda: run(x, perm)


def load_rows(args: argparse.Namespace) -> torch.Tensor:
    if args.smoke:
        splits = SearchSettings.of(dataset="digits").load_splits()
    else:
        splits = SearchSettings.of(dataset="mnist", data_dir=args.data_dir).load_splits()
    x = torch.as_tensor(splits.train.x, dtype=torch.float32)
    return x.reshape(x.shape[0], -1)[: args.rows].contiguous()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-dir", default=str(SHARED))
    p.add_argument("--hidden", default="128,64", help="hidden widths (the code is --code-size)")
    p.add_argument("--activation", default="relu")
    p.add_argument("--optimizer", default="adam", choices=("adam", "adamw", "sgd"))
    p.add_argument("--code-size", type=int, default=4)
    p.add_argument("--batch", type=int, nargs="+", default=[32, 256])
    p.add_argument("--rows", type=int, default=4096, help="rows per timed epoch")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--residual",
        action="store_true",
        help='a PCA-residual model ("init": "pca-residual": linear code and output, the '
        "linear path beside the branches; the default for new runs)",
    )
    p.add_argument("--smoke", action="store_true", help="digits, a tiny model, one rep")
    args = p.parse_args()
    if args.smoke:
        args.hidden, args.rows, args.reps, args.batch = "16", 256, 1, [32]
    elif not (Path(args.data_dir) / "mnist").is_dir():
        p.error(f"MNIST not found under {args.data_dir}: pass --data-dir or --smoke")
    torch.set_num_threads(args.threads)
    x = load_rows(args)
    d = x.shape[1]
    hidden = [int(w) for w in args.hidden.split(",") if w]
    widths = [d, *hidden, args.code_size, *reversed(hidden), d]
    spec = {
        "family": "dense",
        "input_dim": d,
        "code_size": args.code_size,
        "hidden": [[w, args.activation] for w in hidden],
        "code_activation": args.activation,
        "output_activation": "sigmoid",
        "optimizer": args.optimizer,
        "lr": 1e-3,
        "batch_size": 32,
    }
    if args.residual:
        spec |= {"init": "pca-residual", "code_activation": "linear"}
        spec["output_activation"] = "linear"
    peak = mm_peak()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); rows {tuple(x.shape)};"
        f" model {'-'.join(map(str, widths))} {args.activation} {args.optimizer}"
        f"{' pca-residual' if args.residual else ''};"
        f" torch.mm peak {peak:.1f} GFLOP/s"
    )
    print(
        f"{'batch':>5} {'trainer':>15} {'ms/step':>8} {'x autograd':>10} {'GFLOP/s':>8}"
        f" {'of peak':>7} {'GEMM share':>10}"
    )
    for batch in args.batch:
        steps = -(-x.shape[0] // batch)
        flops = step_flops(widths, batch, args.residual) * x.shape[0] / (steps * batch)
        perm = batch_order(x.shape[0], 1, 0)[0]

        model = build_model(spec, 0, init=initial_state(spec, x))
        kernel = dense_kernel(
            model, make_optimizer(args.optimizer, model.parameters(), 1e-3), batch
        )
        assert kernel is not None
        kernel.epoch(x, perm)  # allocates its buffers
        names = ["autograd", "autograd+fused", "kernel", "GEMMs only"]
        runs = {n: epoch_of(n, spec, args.optimizer, batch, x, perm) for n in names[:3]} | {
            names[3]: gemms_only(kernel, steps)
        }
        times: dict[str, list[float]] = {n: [] for n in names}
        for run in runs.values():
            run()  # warm-up: allocator, thread pool
        for _ in range(args.reps):  # interleaved: a load change hits every variant
            for n, run in runs.items():
                times[n].append(_timed(run) / steps)
        step = {n: statistics.median(t) for n, t in times.items()}
        for n in names:
            gflops = flops / step[n] / 1e9
            share = step["GEMMs only"] / step[n]
            speed = step["autograd"] / step[n]
            print(
                f"{batch:>5} {n:>15} {step[n] * 1e3:>8.3f} {speed:>9.2f}x {gflops:>8.2f}"
                f" {gflops / peak:>6.1%} {share:>10.1%}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
