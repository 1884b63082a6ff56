"""The ``evoae`` command line. Each subcommand lives in its own module with a ``register``.

User mistakes (:class:`~evoae.errors.EvoaeError`) print one line on stderr and exit 2,
like argparse's own usage errors; no traceback is shown for them.

Only the chosen subcommand's module is imported, so ``evoae --help``, ``--version`` and
``runs list`` (whose module imports the rest in its handlers) start in a fraction of a
second, without torch.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, NoReturn

from evoae.errors import EvoaeError

#: Subcommand -> (the module under evoae.cli whose ``register(subparsers)`` adds it, its
#: line in ``evoae --help``). The top-level help lists them without importing the modules.
COMMANDS = {
    "search": ("search", "evolve an autoencoder"),
    "finish": ("search", "end an interrupted run with what it has"),
    "export": ("export", "export a run's best model (ONNX, TorchScript, safetensors)"),
    "sample": ("sample", "draw images from a VAE's prior"),
    "report": ("report", "write a run's HTML report"),
    "runs": ("runs", "list runs or show one"),
}
#: Exit status after SIGTERM (128 + 15), as shells report it.
EXIT_TERMINATED = 143


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``prog: error: ...``) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``evoae`` parser, every subcommand in full; with ``only`` (a command name, or
    ``""`` for none), just that command's module is imported and the others are listed by
    name and help line."""
    parser = _Parser(
        prog="evoae",
        description="Design autoencoders by neuroevolution.",
    )
    parser.add_argument("--version", "-V", action="version", version=f"evoae {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = COMMANDS.get(only, ("",))[0] if only is not None else None
    for module in dict.fromkeys(m for m, _ in COMMANDS.values()):
        if chosen is None or module == chosen:
            importlib.import_module(f"evoae.cli.{module}").register(sub)
        else:
            for name, (owner, line) in COMMANDS.items():
                if owner == module:
                    sub.add_parser(name, help=line)
    return parser


def add_command(sub: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """Add subcommand ``name`` with its help line from :data:`COMMANDS`."""
    return sub.add_parser(name, help=COMMANDS[name][1], **kwargs)


def _command(argv: Sequence[str]) -> str:
    """The subcommand named on the command line ("" when none): the first word that is
    not an option, as the top-level parser takes no option with a value."""
    return next((a for a in argv if not a.startswith("-")), "")


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the same cleanup, the same message."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def _version() -> str:
    from evoae import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command(argv))
    args, extra = parser.parse_known_args(argv)
    if extra:  # named by the command they were given to, as its other usage errors are
        words = [getattr(args, k, None) for k in ("command", "runs_command")]
        prog = " ".join(["evoae", *(w for w in words if w)])
        _Parser(prog=prog).error(f"unrecognized arguments: {' '.join(extra)}")
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args) or 0)
    except EvoaeError as e:
        # A path that is not valid UTF-8 (surrogate escapes) is shown escaped, never a crash.
        line = f"evoae: error: {e}".encode("utf-8", "backslashreplace").decode("utf-8")
        print(line, file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        what = "terminated" if isinstance(e, Terminated) else "interrupted"
        print(
            f"evoae: {what}; finished evaluations are in the journal (continue with "
            "--resume RUN, or end it now with evoae finish RUN)",
            file=sys.stderr,
        )
        return EXIT_TERMINATED if isinstance(e, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


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
