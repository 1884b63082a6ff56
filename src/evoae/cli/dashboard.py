"""``evoae dashboard``: open runs in optuna-dashboard (served on the loopback only)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from evoae.cli import add_command, nonneg_int

# Optuna and optuna-dashboard are imported by the handler: ``evoae --help`` stays light.


def _port(text: str) -> int:
    """argparse type: a TCP port, 0 to 65535 (0: a free one)."""
    value = nonneg_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be at most 65535, got {value}")
    return value


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "dashboard",
        description="Mirror each run's journal into an Optuna storage (RUN/optuna.sqlite3, "
        "or a cache folder when the run cannot be written: read-only, or a search still "
        "running) and serve optuna-dashboard on 127.0.0.1 with one study per run: one "
        "trial per evaluation, genes as parameters, fitness as value (and the parameter "
        "count for nsga2), learning curves as intermediate values. A running search's new "
        "evaluations appear as the page refreshes. Needs pip install 'evoae[dashboard]'.",
    )
    p.add_argument("runs", metavar="RUN", nargs="+", help="run folder(s)")
    p.add_argument(
        "--port", type=_port, default=8080, help="port (0 picks a free one) [default: 8080]"
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="loopback address to listen on (127.0.0.1 or ::1) [default: 127.0.0.1]",
    )
    p.add_argument(
        "--refresh",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="check the journals for new evaluations at most this often [default: 2]",
    )
    p.add_argument(
        "--mirror-only",
        action="store_true",
        help="build or refresh the mirrors, print their paths and exit (no server)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="print only the URL or the paths")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from evoae.errors import EvoaeError
    from evoae.report import dashboard, optuna_mirror
    from evoae.runs import folder as rf

    for r in args.runs:
        rf.check_path(r, "RUN")
    if not args.refresh > 0 or args.refresh > 86400:
        raise EvoaeError(f"--refresh must be between 0 and 86400 seconds, got {args.refresh}")
    if args.mirror_only:
        for r in args.runs:
            path, _, built = optuna_mirror.ensure_mirror(r)
            note = "" if args.quiet else ("  (rebuilt)" if built else "  (up to date)")
            print(f"{path}{note}")
        return 0
    dashboard.check_host(args.host)

    def announce(url: str) -> None:
        if args.quiet:
            print(url, flush=True)
        else:
            print(f"optuna-dashboard on {url}  (Ctrl-C to stop)", flush=True)

    try:
        dashboard.serve(
            args.runs, host=args.host, port=args.port, refresh=args.refresh, announce=announce
        )
    except KeyboardInterrupt as e:  # while the mirrors were built (each is written whole)
        from evoae.cli import EXIT_TERMINATED, Terminated

        print("evoae: dashboard stopped before it started", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(e, Terminated) else 130
    return 0
