"""The ``evoae`` command line. Each subcommand lives in its own module with a ``register``.

User mistakes (:class:`~evoae.errors.EvoaeError`) print one line on stderr and exit 2,
like argparse's own usage errors (``evoae search: error: ...``, with a suggestion for a
mistyped flag; no flag may be abbreviated); no traceback is shown for them. A closed
pipe (``evoae runs show RUN --json | head -1``) ends the command quietly.

Only the chosen subcommand's module is imported, so ``evoae --help``, ``--version`` and
``runs list`` (whose module imports the rest in its handlers) start in a fraction of a
second, without torch.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
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
    "dashboard": ("dashboard", "open runs in optuna-dashboard (127.0.0.1)"),
}
#: Exit status after SIGTERM (128 + 15), as shells report it.
EXIT_TERMINATED = 143
#: Exit status when the reader of stdout went away: 1, as in the recipe of Python's
#: ``signal`` documentation and as rich's console (tables) exits on a closed pipe.
EXIT_BROKEN_PIPE = 1
_UNRECOGNIZED = "unrecognized arguments: "


class _Parser(argparse.ArgumentParser):
    """argparse, but no flag may be abbreviated (a prefix such as ``--strat`` breaks
    scripts as soon as another flag shares it), and a usage error is one line
    (``prog: error: ...``, naming the subcommand, with ``did you mean --flag?`` for a
    mistyped flag) and exit status 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        # A subcommand's parser is called with parse_known_args: its leftovers would be
        # reported by the top-level parser as "evoae: error"; report them here instead,
        # under the subcommand's own name and flags.
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and self.prog != "evoae":
            self.error(_UNRECOGNIZED + " ".join(extras))
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        text = " ".join(f"{message}{self._suggestion(message)} (see --help)".split())
        self.exit(2, f"{self.prog}: error: {text}\n")

    def _suggestion(self, message: str) -> str:
        """``; did you mean --strategy?`` for a mistyped flag (or ``search`` for a
        mistyped command or choice) close to a real one, else ""."""
        if message.startswith(_UNRECOGNIZED):
            words = [w.split("=", 1)[0] for w in message[len(_UNRECOGNIZED) :].split()]
            flags = [f for f in self._option_string_actions if f.startswith("--")]
            pairs = [(w, flags) for w in words if w.startswith("--") and len(w) > 2]
        else:
            bad = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
            pairs = [(bad[1], re.findall(r"'([^']*)'", bad[2]))] if bad else []
        for word, options in pairs:
            # Compared without the dashes, which every flag shares.
            bare = {o.lstrip("-"): o for o in options}
            close = difflib.get_close_matches(word.lstrip("-"), list(bare), n=1, cutoff=0.7)
            if close:
                return f"; did you mean {bare[close[0]]}?"
        return ""


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
    """Run one ``evoae`` command; returns its exit status."""
    try:
        try:
            return _main(sys.argv[1:] if argv is None else list(argv))
        finally:
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except BrokenPipeError as e:
        # A Ctrl-C or SIGTERM whose clean-up broke a worker's pipe (a local Ray shutting
        # down) is still that interruption; any other broken pipe is the reader of stdout
        # gone (`evoae runs show --json | head -1`), which ends quietly.
        cause: BaseException | None = e.__context__
        while cause is not None and not isinstance(cause, KeyboardInterrupt):
            cause = cause.__context__
        if isinstance(cause, KeyboardInterrupt):
            return _interrupted(cause)
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush cannot fail again
    (the recipe of Python's ``signal`` documentation for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout without a descriptor (tests)
        pass


def _main(argv: list[str]) -> int:
    parser = build_parser(_command(argv))
    args = parser.parse_args(argv)
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
        return _interrupted(e)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupted(e: KeyboardInterrupt) -> int:
    """The one line and exit status of a search stopped by Ctrl-C (130) or SIGTERM (143)."""
    what = "terminated" if isinstance(e, Terminated) else "interrupted"
    print(
        f"evoae: {what}; finished evaluations are in the journal (continue with "
        "--resume RUN, or end it now with evoae finish RUN)",
        file=sys.stderr,
    )
    return EXIT_TERMINATED if isinstance(e, Terminated) else 130


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
