"""``evoae search``: evolve an autoencoder and retrain the best."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from evoae.cli import nonneg_int, positive_int, probability
from evoae.errors import EvoaeError
from evoae.report.progress import ProgressReporter
from evoae.search import SearchResult, search


def register(sub: Any) -> None:
    p = sub.add_parser(
        "search",
        help="evolve an autoencoder",
        description="Evolve an autoencoder architecture for a dataset, train the candidates, "
        "retrain the best and write journal, model and plots to a run folder.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = p.add_argument_group("data")
    d.add_argument(
        "--dataset",
        default=None,
        help="digits (bundled, default), mnist, fashion-mnist, or a .npy/.npz/.csv path",
    )
    d.add_argument(
        "--data-dir",
        default=None,
        help="folder holding mnist/ and fashion-mnist/ IDX files "
        "(default $EVOAE_DATA_DIR or ~/.cache/evoae/data)",
    )
    d.add_argument(
        "--download",
        action="store_true",
        default=None,
        help="fetch missing MNIST / Fashion-MNIST files into --data-dir (MD5-checked)",
    )
    d.add_argument(
        "--image-size",
        type=positive_int,
        default=None,
        help="resize images to SIZE x SIZE (default 16 for MNIST-like data, else native)",
    )
    d.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        help="use only the first N rows of the training pool",
    )
    d.add_argument(
        "--split",
        choices=["auto", "seed", "random"],
        default=None,
        help="seed: the published 10,000/5,000 split; random: seeded 70/15/15; "
        "auto: seed for MNIST-like data [default: auto]",
    )
    m = p.add_argument_group("model and space")
    m.add_argument("--model", default=None, help="model family [default: dense]")
    m.add_argument(
        "--preset", default=None, help="seed (the published space) or extended [default: seed]"
    )
    m.add_argument(
        "--code-size",
        "--latent-dim",
        dest="code_size",
        type=positive_int,
        default=None,
        help="width of the code (latent) layer [default: 4]",
    )
    m.add_argument(
        "--max-depth",
        type=nonneg_int,
        default=None,
        help="number of hidden genes [default: 3 for seed, 4 for extended]",
    )
    m.add_argument(
        "--activations",
        type=_names,
        default=None,
        help="comma-separated activation choices, e.g. relu,tanh,linear [default: the preset's]",
    )
    m.add_argument(
        "--optimizers",
        type=_names,
        default=None,
        help="comma-separated optimizer choices among sgd,adam,adamw [default: the preset's]",
    )
    g = p.add_argument_group("genetic algorithm")
    g.add_argument(
        "--population", type=positive_int, default=None, help="population size [default: 20]"
    )
    g.add_argument(
        "--generations", type=nonneg_int, default=None, help="tournaments to run [default: 100]"
    )
    g.add_argument("--deme", type=positive_int, default=None, help="deme size [default: 5]")
    g.add_argument(
        "--recombination",
        type=probability,
        default=None,
        help="probability of copying each winner gene [default: 0.5]",
    )
    g.add_argument(
        "--mutation",
        type=probability,
        default=None,
        help="per-gene mutation probability [default: 1/genes]",
    )
    g.add_argument(
        "--concurrent",
        type=positive_int,
        default=None,
        help="tournaments run together per batch (1 = published) [default: 1]",
    )
    g.add_argument(
        "--reevaluate",
        action="store_true",
        default=None,
        help="retrain both parents in every tournament, as the published code did",
    )
    t = p.add_argument_group("training")
    t.add_argument(
        "--epochs", type=positive_int, default=None, help="epochs per candidate [default: 2]"
    )
    t.add_argument(
        "--final-epochs",
        type=nonneg_int,
        default=None,
        help="epochs to retrain the best [default: 20]",
    )
    t.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default=None,
        help="where to train [default: cpu]",
    )
    t.add_argument(
        "--executor",
        default=None,
        help="how to evaluate candidates: inline (one at a time), population (a batch of dense "
        "candidates as one stacked computation; use with --concurrent), process (local "
        "process pool), ray (Ray tasks) [default: inline]",
    )
    t.add_argument(
        "--workers", type=positive_int, default=None, help="workers for parallel executors"
    )
    t.add_argument("--ray-address", default=None, help="join this Ray cluster (executor ray)")
    r = p.add_argument_group("run")
    r.add_argument("--seed", type=int, default=None, help="random seed [default: 0]")
    r.add_argument("--out", default=None, help="run folder [default: a new folder under runs/]")
    r.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    r.add_argument(
        "--resume",
        metavar="RUN",
        default=None,
        help="continue the run in this folder (only --generations, --final-epochs and "
        "execution options may change)",
    )
    r.add_argument("--quiet", action="store_true", help="no progress bar or summary table")
    p.set_defaults(func=run)


_SETTINGS = (
    "data_dir",
    "image_size",
    "limit",
    "split",
    "model",
    "preset",
    "code_size",
    "max_depth",
    "population",
    "generations",
    "deme",
    "recombination",
    "mutation",
    "concurrent",
    "reevaluate",
    "epochs",
    "final_epochs",
    "seed",
    "device",
    "executor",
    "workers",
    "ray_address",
    "download",
)


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one name")
    return names


def run(args: argparse.Namespace) -> int:
    given = {k: getattr(args, k) for k in _SETTINGS if getattr(args, k) is not None}
    options = {k: getattr(args, k) for k in ("activations", "optimizers") if getattr(args, k)}
    if options:
        given["space_options"] = options
    if args.resume and args.overwrite:
        raise EvoaeError("--resume continues a run and --overwrite replaces one: pass only one")
    if args.resume and args.out and Path(args.out).resolve() != Path(args.resume).resolve():
        raise EvoaeError(
            f"--resume continues the run in {args.resume} itself: drop --out {args.out}"
        )
    reporters = [] if args.quiet else [ProgressReporter()]
    if args.resume:
        result = search(args.dataset, out=args.resume, resume=True, reporters=reporters, **given)
    else:
        result = search(
            args.dataset or "digits",
            out=args.out,
            overwrite=args.overwrite,
            reporters=reporters,
            **given,
        )
    if not args.quiet:
        print_summary(result)
    else:
        print(result.run_dir)
    return 0


def print_summary(result: SearchResult) -> None:
    s = result.settings
    table = Table(title="evoae search", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    arch = describe_architecture(result.best_spec)
    rows = [
        ("run folder", str(result.run_dir)),
        ("dataset", f"{s.dataset} (code size {s.code_size})"),
        ("evaluations / trainings", f"{result.n_evaluations} / {result.n_trainings}"),
        (f"best search fitness ({s.epochs} epochs)", _f(result.best_fitness)),
        (f"retrained val loss ({s.final_epochs} epochs)", _f(result.final.get("val_loss"))),
        ("retrained test loss", _f(result.final.get("test_loss"))),
        ("best architecture", arch or "-"),
        ("parameters", str(result.final.get("params"))),
        ("wall time", f"{result.seconds:.1f} s"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)


def describe_architecture(spec: dict[str, Any]) -> str:
    """One line for a spec: dense widths, or conv blocks as filters/kernel/stride."""
    if "hidden" in spec:
        widths = [spec["input_dim"], *(w for w, _ in spec["hidden"]), spec["code_size"]]
        return " - ".join(str(w) for w in widths)
    if "blocks" in spec:
        blocks = " ".join(
            f"{f}k{k}s{st}{'+bn' if bn else ''}" for f, k, st, _, bn in spec["blocks"]
        )
        dense = f" dense {spec['dense']}" if spec.get("dense") else ""
        kind = "VAE" if spec.get("variational") else "AE"
        return f"conv {blocks}{dense} -> {spec['code_size']} ({kind})"
    return spec.get("family", "-")


def _f(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.5f}"
