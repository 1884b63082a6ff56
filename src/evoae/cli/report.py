"""``evoae report``: write a run's self-contained HTML report."""

from __future__ import annotations

import argparse
from typing import Any

from evoae.cli import add_command
from evoae.report.html import write_report


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "report",
        description="Write one self-contained HTML page about a run (figures embedded, no "
        "network needed): settings, best candidates, fitness over evaluations, "
        "reconstructions, the best architecture, VAE plots and a comparison with PCA.",
    )
    p.add_argument("run", metavar="RUN", help="run folder")
    p.add_argument(
        "--out", "-o", default=None, help="HTML file to write [default: RUN/report.html]"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="print only the written path")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from evoae.runs import folder as rf
    from evoae.runs.lock import RunLock

    if args.out is None and rf.is_run(args.run):
        # Into the run (report.html and the manifest): one writer at a time, as a search.
        with RunLock(args.run):
            print(write_report(args.run, args.out))
        return 0
    print(write_report(args.run, args.out))
    return 0
