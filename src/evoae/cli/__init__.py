"""The ``evoae`` command line. Each subcommand lives in its own module with a ``register``.

User mistakes (:class:`~evoae.errors.EvoaeError`) print one line on stderr and exit 2,
like argparse's own usage errors; no traceback is shown for them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from evoae.errors import EvoaeError

#: Modules under evoae.cli that add a subcommand through ``register(subparsers)``.
COMMANDS = ["search", "export", "sample", "report", "runs"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``prog: error: ...``) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="evoae",
        description="Design autoencoders by neuroevolution.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"evoae.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EvoaeError as e:
        print(f"evoae: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "evoae: interrupted; finished evaluations are in the journal (resume with --resume)",
            file=sys.stderr,
        )
        return 130


def _int_at_least(low: int, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    return _int_at_least(1, text)


def nonneg_int(text: str) -> int:
    """argparse type: an integer of at least 0."""
    return _int_at_least(0, text)


def probability(text: str) -> float:
    """argparse type: a float in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


if __name__ == "__main__":
    sys.exit(main())
