"""``evoae search``: evolve an autoencoder and retrain the best.

Every flag is generated from the declared settings (:mod:`evoae.settings`) and from the
``Options`` of each registered strategy, so a default is written once, in the
declaration, and shown once in ``--help``.
"""

from __future__ import annotations

import argparse
import math
import os
import textwrap
from collections.abc import Sequence
from dataclasses import Field, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from evoae import evolution
from evoae.cli import add_command
from evoae.cli.config import apply_config
from evoae.cli.runs import final_training_text, pca_rows, spent_text
from evoae.errors import EvoaeError
from evoae.evolution import DEFAULT_STRATEGY
from evoae.execution import EXECUTOR_HELP
from evoae.families import describe, get_family
from evoae.finish import SearchResult
from evoae.loop import search
from evoae.options import help_text, options_of
from evoae.report.progress import ProgressReporter, Reporter
from evoae.runs.best import best_of
from evoae.runs.reader import read_run
from evoae.runs.vae_text import collapse_text, summary_rows
from evoae.seeds import in_range
from evoae.settings import SECTIONS
from evoae.training.optim import defer_dynamo

_TITLES = {
    "data": "data",
    "space": "model and space",
    "training": "training",
    "fidelity": "multi-fidelity",
    "execution": "execution",
}


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "search",
        description="Evolve an autoencoder architecture for a dataset, train the candidates,\n"
        "retrain the best and write journal, model and plots to a run folder.",
        add_help=False,
        epilog=strategy_help(list(evolution.STRATEGIES)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--help", "-h", action=_StrategyHelp, help="show this help and exit")
    for section, cls in SECTIONS.items():
        group = p.add_argument_group(_TITLES[section])
        if section == "execution":
            group.description = "executors: " + "; ".join(
                f"{k}: {v}" for k, v in EXECUTOR_HELP.items()
            )
        for f in options_of(cls):
            if f.metadata["cli"]:
                _add(group, f)
    s = p.add_argument_group("strategy")
    s.add_argument(
        "--strategy",
        "-s",
        choices=list(evolution.STRATEGIES),
        default=None,
        help="search strategy; its own options are listed below, each with its own default "
        f"(--strategy NAME --help: that strategy's alone) [default: {DEFAULT_STRATEGY}]",
    )
    for fld, _owners in _strategy_options().values():
        _add(s, fld, hidden=True)  # listed per strategy by _StrategyHelp
    r = p.add_argument_group("run")
    r.add_argument(
        "--config",
        metavar="FILE",
        action=_Once,
        default=None,
        help="settings from a TOML file or an earlier run's settings.json, in the nested "
        "layout of settings.json ([data], [space], [strategy] name and options, ...); "
        "flags given here override it",
    )
    r.add_argument("--seed", type=_seed, default=None, help="random seed [default: 0]")
    r.add_argument(
        "--out", "-o", default=None, help="run folder [default: a new folder under runs/]"
    )
    r.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    r.add_argument(
        "--resume",
        metavar="RUN",
        default=None,
        help="continue the run in this folder (only budgets, --final-epochs and execution "
        "options may change)",
    )
    r.add_argument(
        "--finish",
        action="store_true",
        help="with --resume: evaluate nothing more, retrain and save the best found so far",
    )
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary table")
    _add_trackers(p)
    p.set_defaults(func=run)
    f = add_command(
        sub,
        "finish",
        description="Retrain and save the best candidate of an interrupted run without "
        "evaluating more (the same as search --resume RUN --finish).",
    )
    f.add_argument("run", metavar="RUN", help="run folder")
    f.add_argument(
        "--final-epochs",
        type=_parser(_training_field("final_epochs")),
        default=None,
        help="epochs to retrain the best [default: the run's]",
    )
    f.add_argument(
        "--final-pbt",
        type=_parser(_training_field("final_pbt")),
        default=None,
        metavar="N",
        help="retrain the best with PBT of N copies (0: plain) [default: the run's]",
    )
    f.add_argument(
        "--final-time-budget",
        type=_parser(_field("execution", "final_time_budget")),
        default=None,
        metavar="SECONDS",
        help="stop the final training after the epoch that ends past SECONDS [default: the run's]",
    )
    f.add_argument(
        "--again",
        action="store_true",
        help="retrain the best of a run that is already finished (replacing its model)",
    )
    f.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary table")
    _add_trackers(f)
    f.set_defaults(func=run_finish)


def _add_trackers(p: argparse.ArgumentParser) -> None:
    """Reporting flags: they log the run elsewhere and change nothing in it."""
    t = p.add_argument_group("logging (optional extras; the run and its settings are unchanged)")
    t.add_argument(
        "--tensorboard",
        metavar="DIR",
        default=None,
        help="log scalars for TensorBoard under DIR/<run folder name> (tensorboard --logdir "
        "DIR); pip install 'evoae[tensorboard]'",
    )
    t.add_argument(
        "--mlflow",
        metavar="URI",
        nargs="?",
        const="",
        default=None,
        help="log params, metrics and the model to MLflow: a folder, file: or sqlite:/// "
        "URI, or a server on 127.0.0.1 (no other host) [default: the file store ./mlruns]; "
        "pip install 'evoae[mlflow]'",
    )
    t.add_argument(
        "--mlflow-experiment",
        metavar="NAME",
        default="evoae",
        help="MLflow experiment to log to [default: evoae]",
    )


def _reporters(args: argparse.Namespace) -> list[Reporter]:
    """The progress bar (unless --quiet) and the trackers asked for; a tracker whose
    package is missing is refused here, before the run folder is touched."""
    reporters: list[Reporter] = [] if args.quiet else [ProgressReporter()]
    if args.tensorboard is not None:
        from evoae.report.trackers import TensorBoardReporter

        if not args.tensorboard.strip():
            raise EvoaeError("--tensorboard needs a folder: --tensorboard DIR")
        reporters.append(TensorBoardReporter(args.tensorboard))
    if args.mlflow is not None:
        from evoae.report.trackers import MLflowReporter

        reporters.append(MLflowReporter(args.mlflow or None, experiment=args.mlflow_experiment))
    return reporters


def _strategy_options() -> dict[str, tuple[Field[Any], list[str]]]:
    """Each strategy option once (first declaration wins), with the strategies taking it."""
    seen: dict[str, tuple[Field[Any], list[str]]] = {}
    for name, cls in evolution.STRATEGIES.items():
        for f in options_of(cls.Options):
            if f.name in seen:
                seen[f.name][1].append(name)
            else:
                seen[f.name] = (f, [name])
    return seen


class _StrategyHelp(argparse.Action):
    """``--help``: the parser's help, then each strategy's own options and defaults
    (only the chosen one's when ``--strategy NAME`` comes before ``--help``)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, nargs=0, **kw)

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        chosen = getattr(namespace, "strategy", None)
        if chosen:
            parser.epilog = strategy_help([chosen])
        parser.print_help()
        parser.exit(0)


def strategy_help(names: Sequence[str]) -> str:
    """Each named strategy's options, with that strategy's own defaults."""
    out = []
    for name in names:
        cls = evolution.STRATEGIES[name]
        doc = (cls.__doc__ or "").strip().splitlines()[0].replace("``", "") if cls.__doc__ else ""
        out.append(f"strategy {name} (--strategy {name}): {doc}")
        for f in options_of(cls.Options):
            flag = f.metadata["flag"] or "--" + f.name.replace("_", "-")
            metavar = "" if f.metadata["kind"] is bool else " " + f.name.upper()
            body = textwrap.fill(help_text(f), 79, initial_indent=" " * 24,
                                 subsequent_indent=" " * 24)  # fmt: skip
            out.append(f"  {flag}{metavar}\n{body}")
        out.append("")
    return "\n".join(out)


def _add(group: Any, f: Any, extra: str = "", hidden: bool = False) -> None:
    meta = f.metadata
    flag = meta["flag"] or "--" + f.name.replace("_", "-")
    names = [flag] + ([meta["short"]] if meta["short"] else [])
    if f.name == "code_size":
        names.append("--latent-dim")
    kind = meta["kind"]
    help = argparse.SUPPRESS if hidden else help_text(f, extra)
    kw: dict[str, Any] = {"dest": f.name, "default": None, "help": help}
    if kind is bool:
        # A setting on by default is turned off with --no-NAME.
        kw["action"] = argparse.BooleanOptionalAction if f.default is True else "store_true"
    else:
        kw["type"] = _parser(f)
        if meta["choices"] is not None:
            kw["choices"] = list(meta["choices"])
        kw["metavar"] = f.name.upper() if meta["choices"] is None else None
        if kw["metavar"] is None:
            del kw["metavar"]
    group.add_argument(*names, **kw)


def _parser(f: Field[Any]) -> Any:
    meta = f.metadata
    kind = meta["kind"]
    if kind is list:
        return _names

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = {int: "an integer", float: "a number"}.get(kind, "valid")
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        lo, hi = meta["low"], meta["high"]
        if lo is not None and value < lo:
            raise argparse.ArgumentTypeError(f"must be at least {_n(lo)}, got {value}")
        if hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"must be at most {_n(hi)}, got {value}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _n(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


class _Once(argparse.Action):
    """An option that may be given once (a second ``--config`` would silently win)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        if getattr(namespace, self.dest, None) is not None:
            parser.error(f"{option} given twice: pass one file (flags override it)")
        setattr(namespace, self.dest, values)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not in_range(value):
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**63 - 1, got {value}")
    return value


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one name")
    return names


def _training_field(name: str) -> Field[Any]:
    return _field("training", name)


def _field(section: str, name: str) -> Field[Any]:
    return next(f for f in options_of(SECTIONS[section]) if f.name == name)


def refuse_finished(run: str) -> None:
    """``finish`` ends an interrupted run: one whose summary already counts every
    evaluation of its checkpoint is retrained only with ``--again``."""
    from evoae.runs import folder as rf

    summary, ckpt = Path(run) / rf.SUMMARY, Path(run) / rf.CHECKPOINT
    if not (summary.is_file() and ckpt.is_file()):
        return
    try:
        done = rf.read_json(summary, "summary").get("n_evaluations")
        at = rf.read_json(ckpt, "checkpoint").get("next_id")
    except EvoaeError:
        return  # the resume itself names what is damaged
    if done == at:
        raise EvoaeError(
            f"run {run} is already finished (its summary counts all {at} evaluations): "
            "pass --again to retrain its best once more"
        )


def run_finish(args: argparse.Namespace) -> int:
    names = ("final_epochs", "final_pbt", "final_time_budget")
    given = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    if given.get("final_epochs") == 0:
        raise EvoaeError("--final-epochs 0 would save an untrained model: give at least 1")
    if not args.again:
        refuse_finished(args.run)
    reporters = _reporters(args)
    defer_dynamo()
    result = search(None, out=args.run, resume=True, finish=True, reporters=reporters, **given)
    _report(result, args.quiet)
    return 0


def _given(args: argparse.Namespace) -> dict[str, Any]:
    names = [f.name for cls in SECTIONS.values() for f in options_of(cls)]
    names += list(_strategy_options()) + ["seed"]
    given = {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}
    given.pop("dataset", None)
    return given


def run(args: argparse.Namespace) -> int:
    given = _given(args)
    dataset, strategy = args.dataset, args.strategy
    if args.config and args.resume:
        raise EvoaeError(
            "--config starts a new run and --resume continues one with its own settings: "
            "pass only one"
        )
    if args.config:
        given, dataset, strategy = apply_config(args.config, given, dataset, strategy)
    if args.finish and not args.resume:
        raise EvoaeError("--finish ends an existing run: pass it with --resume RUN")
    if args.resume and args.overwrite:
        raise EvoaeError("--resume continues a run and --overwrite replaces one: pass only one")
    if args.resume and args.out and Path(args.out).resolve() != Path(args.resume).resolve():
        raise EvoaeError(
            f"--resume continues the run in {args.resume} itself: drop --out {args.out}"
        )
    reporters = _reporters(args)
    defer_dynamo()  # this process is evoae's own
    if args.resume:
        result = search(
            dataset,
            out=args.resume,
            resume=True,
            reporters=reporters,
            strategy=strategy,
            finish=args.finish,
            **given,
        )
    else:
        result = search(
            dataset if dataset is not None else "digits",
            out=args.out,
            runs_dir=cli_runs_dir(),
            overwrite=args.overwrite,
            reporters=reporters,
            strategy=strategy,
            **given,
        )
    _report(result, args.quiet)
    return 0


def cli_runs_dir() -> Path:
    """Where ``evoae search`` puts a run without ``--out``: ``$EVOAE_RUNS``, else
    ``./runs`` (the Python API's default is a temporary folder instead)."""
    return Path(os.environ.get("EVOAE_RUNS") or "runs")


def _report(result: SearchResult, quiet: bool) -> None:
    if not quiet:
        print_summary(result)
    else:
        print(result.run_dir)


_STOPPED = {
    "budget": "its budget (all evaluations done)",
    "time budget": "the time budget (--time-budget): best so far retrained",
    "finished early": "finish: best so far retrained",
}


def print_summary(result: SearchResult) -> None:
    s = result.settings
    unit = get_family(result.best_spec["family"]).loss_label
    best = best_of(replace(read_run(result.run_dir), summary=result.summary()))
    table = Table(title="evoae search", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")  # a long run folder wraps instead of being cut
    rows = [
        ("run folder", str(result.run_dir)),
        ("dataset", f"{s.data.dataset} (code size {s.space.code_size})"),
        ("strategy", s.strategy.name),
        ("evaluations / trainings", f"{result.n_evaluations} / {result.n_trainings}"),
        ("best candidate", best.search_text()),
        ("retrained val loss", best.final_text()),
        *((("search leader", best.leader_note),) if best.leader_note else ()),
        *((("search spent", spent_text(result.spent)),) if result.spent else ()),
        ("final training", final_training_text(result.final)),
        *pca_rows(result.final, s.space.code_size, unit),
        ("retrained test loss", _f(result.final.get("test_loss"), unit)),
        *summary_rows(result.final.get("vae")),
        ("best architecture", describe(result.best_spec)),
        ("parameters", str(result.final.get("params"))),
        ("executor", result.executor or s.execution.executor),
        ("stopped by", _STOPPED.get(result.stopped, result.stopped)),
        ("wall time", f"{result.seconds:.1f} s"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)
    if result.final.get("fallback"):
        Console().print(f"[bold]PCA fallback:[/bold] {result.final.get('fallback_message')}")
    collapse = collapse_text(result.final.get("vae"))
    if collapse:
        Console().print(collapse, markup=False)


def _f(x: float | None, unit: str = "") -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.5f} {unit}".rstrip()


__all__ = ["print_summary", "register", "run"]
