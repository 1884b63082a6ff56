"""``evoae export``: write a run's best model as ONNX, TorchScript or safetensors."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from evoae.cli import positive_int
from evoae.export import FORMATS, OPSET, PARTS, export_run
from evoae.finish import front_member, retrain_row


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export a run's best model (ONNX, TorchScript, safetensors)",
        description="Export the best model of a run: its encoder (a VAE's mean head), decoder, "
        "whole autoencoder and, for VAEs, the sampler (decoder fed with N(0,1) noise). "
        "The batch dimension is dynamic; export.json lists input and output shapes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run", metavar="RUN", help="run folder (or a model folder)")
    p.add_argument("--format", dest="fmt", choices=FORMATS, required=True, help="file format")
    p.add_argument(
        "--part",
        choices=[*PARTS, "all"],
        default="all",
        help="what to export; all = every part the model has",
    )
    p.add_argument("--out", default=None, help="destination folder [default: RUN/export]")
    p.add_argument("--opset", type=positive_int, default=OPSET, help="ONNX opset version")
    pick = p.add_mutually_exclusive_group()
    pick.add_argument(
        "--pick",
        type=positive_int,
        metavar="N",
        default=None,
        help="export member N (1 = fewest parameters) of the run's Pareto front of "
        "(fitness, params), retrained like the best into RUN/front/N/model "
        "(evoae runs show RUN --front lists it)",
    )
    pick.add_argument(
        "--max-params",
        type=positive_int,
        metavar="P",
        default=None,
        help="export the fittest front member with at most P parameters (as --pick)",
    )
    p.add_argument("--quiet", action="store_true", help="print only the written paths")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    source, out = args.run, args.out
    if args.pick is not None or args.max_params is not None:
        n, row = front_member(args.run, pick=args.pick, max_params=args.max_params)
        dest = Path(args.run) / "front" / str(n)
        source = retrain_row(args.run, row, dest)
        out = out if out is not None else dest / "export"
        if not args.quiet:
            print(
                f"front member {n}: evaluation {row.id}, {row.params} parameters, "
                f"search fitness {row.fitness:.5f}; retrained into {source}"
            )
    written = export_run(source, fmt=args.fmt, part=args.part, out=out, opset=args.opset)
    if args.quiet:
        for e in written:
            print(e.path)
        return 0
    table = Table(title=f"evoae export ({args.fmt})")
    for col in ("part", "file", "input", "output"):
        table.add_column(col)
    for e in written:
        table.add_row(
            e.part,
            str(e.path),
            f"{e.input_name} {_shape(e.input_shape)}",
            f"{e.output_name} {_shape(e.output_shape)}",
        )
    Console().print(table)
    return 0


def _shape(shape: list[int | None]) -> str:
    return "(" + ", ".join("batch" if d is None else str(d) for d in shape) + ")"
