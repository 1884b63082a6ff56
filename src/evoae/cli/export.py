"""``evoae export``: write a run's best model as ONNX, TorchScript or safetensors."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from safetensors import SafetensorError

from evoae.cli import add_command, positive_int
from evoae.errors import EvoaeError
from evoae.export import DEFAULT_FORMAT, EXPORT_DIR, FORMATS, OPSET, OPSET_RANGE, PARTS, export_run
from evoae.finish import front_member, retrain_row
from evoae.runs import folder as rf
from evoae.runs.guard import check_inside, claim
from evoae.runs.lock import RunLock


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "export",
        description="Export the best model of a run: its encoder (a VAE's mean and log_var), "
        "decoder (a VAE's sampler when fed N(0,1) noise) and whole autoencoder. The batch "
        "dimension is dynamic; export.json lists input and output shapes and how raw data "
        "is preprocessed into the inputs.",
    )
    p.add_argument("run", metavar="RUN", help="run folder (or a model folder)")
    p.add_argument(
        "--format",
        dest="fmt",
        choices=FORMATS,
        default=DEFAULT_FORMAT,
        help=f"file format [default: {DEFAULT_FORMAT}]",
    )
    p.add_argument(
        "--part",
        choices=[*PARTS, "all"],
        default="all",
        help="what to export; all = every part the model has [default: all]",
    )
    p.add_argument("--out", "-o", default=None, help="destination folder [default: RUN/export]")
    p.add_argument(
        "--opset",
        type=positive_int,
        default=OPSET,
        help=f"ONNX opset version, {OPSET_RANGE[0]} to {OPSET_RANGE[1]} [default: {OPSET}]",
    )
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
    p.add_argument("--quiet", "-q", action="store_true", help="print only the written paths")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    lo, hi = OPSET_RANGE
    if not lo <= args.opset <= hi:
        raise EvoaeError(f"--opset {args.opset} is not supported: choose {lo} to {hi}")
    if args.out is not None:
        rf.check_path(args.out, "--out")
    rf.check_path(args.run, "RUN")
    inside = args.out is None and rf.is_run(args.run)
    if not inside and args.pick is None and args.max_params is None:
        return _export(args, args.run, args.out, inside=False)
    if not rf.is_run(args.run):
        raise EvoaeError(
            f"{args.run} is not an evoae run folder: --pick and --max-params "
            "choose from a run's journal"
        )
    # Writing into the run (its export/ or front/): one writer at a time, as a search.
    with RunLock(args.run):
        try:
            return _export_in_run(args)
        except OSError as e:  # a read-only medium, a full disk
            raise EvoaeError(
                f"cannot write into {args.run} ({e.strerror or e}): export elsewhere with --out"
            ) from None


def _export_in_run(args: argparse.Namespace) -> int:
    source, out = args.run, args.out
    if args.pick is not None or args.max_params is not None:
        n, row = front_member(args.run, pick=args.pick, max_params=args.max_params)
        dest = Path(args.run) / rf.FRONT_DIR / str(n)
        # A linked front/ (or front/N, model/) is refused before anything is trained.
        for name in ("model.json", "model.safetensors"):
            claim(dest / rf.MODEL_DIR / name)  # a user's file there is refused up front
        if out is None:
            check_inside(args.run, dest / EXPORT_DIR / "export.json")
            # A changed part is refused before the model is retrained or rewritten.
            for part in ("export.json", "encoder", "decoder", "autoencoder"):
                for path in (dest / EXPORT_DIR).glob(part if "." in part else f"{part}.*"):
                    claim(path)
        source = retrain_row(args.run, row, dest)
        rf.add_to_manifest(args.run, rf.FRONT_DIR)  # evoae's: --overwrite may remove it
        out = out if out is not None else dest / EXPORT_DIR
        if not args.quiet:
            print(
                f"front member {n}: evaluation {row.id}, {row.params} parameters, "
                f"search fitness {row.fitness:.5f}; retrained into {source}"
            )
    return _export(args, source, out, inside=args.out is None and source == args.run)


def _export(args: argparse.Namespace, source: str | Path, out: str | None, *, inside: bool) -> int:
    try:
        written = export_run(source, fmt=args.fmt, part=args.part, out=out, opset=args.opset)
    except (OSError, SafetensorError) as e:  # safetensors reports I/O errors as its own
        raise EvoaeError(
            f"cannot write the export ({getattr(e, 'strerror', None) or e}): choose another --out"
        ) from None
    if inside:  # RUN/export is evoae's: --overwrite may remove it
        rf.add_to_manifest(args.run, EXPORT_DIR)
    if args.quiet:
        for e in written:
            print(e.path)
        return 0
    table = Table(title=f"evoae export ({args.fmt})")
    for col in ("part", "file", "input", "output"):
        table.add_column(col, overflow="fold")  # long paths wrap, never cut
    for e in written:
        table.add_row(
            e.part,
            str(e.path),
            f"{e.input_name} {_shape(e.input_shape)}",
            ", ".join(f"{name} {_shape(shape)}" for name, shape in e.outputs),
        )
    Console().print(table)
    return 0


def _shape(shape: list[int | None]) -> str:
    return "(" + ", ".join("batch" if d is None else str(d) for d in shape) + ")"
