"""``evoae runs list|show``: runs and their best results, as tables or JSON."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from evoae.cli import positive_int
from evoae.errors import EvoaeError
from evoae.evolution import STRATEGIES
from evoae.families.registry import describe as describe_spec
from evoae.runs import folder as rf
from evoae.runs.reader import RunView, pareto_front, read_run, top_candidates


def register(sub: Any) -> None:
    p = sub.add_parser(
        "runs",
        help="list runs or show one",
        description="List the runs under a folder, or show one run's settings and best "
        "candidates. --json prints machine-readable output instead of tables.",
    )
    rsub = p.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    ls = rsub.add_parser("list", help="list runs and their best results")
    ls.add_argument(
        "folder", nargs="?", default="runs", help="folder holding run folders [default: runs]"
    )
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=run_list)
    show = rsub.add_parser("show", help="show one run: settings, results, best candidates")
    show.add_argument("run", metavar="RUN", help="run folder")
    show.add_argument("--top", type=positive_int, default=10, help="candidates to show")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.add_argument(
        "--front",
        action="store_true",
        help="also print the Pareto front of (fitness, params) [default: for multi-objective "
        "strategies such as nsga2]",
    )
    show.set_defaults(func=run_show)


def find_runs(folder: str | Path) -> list[Path]:
    """``folder`` itself when it is a run, else the run folders directly inside it."""
    folder = Path(folder)
    if rf.is_run(folder):
        return [folder]
    if not folder.is_dir():
        raise EvoaeError(f"{folder} is not a folder: pass the folder that holds your runs")
    return sorted(p for p in folder.iterdir() if p.is_dir() and rf.is_run(p))


def run_record(view: RunView) -> dict[str, Any]:
    """One run's headline figures (JSON-able)."""
    s = view.settings
    best = view.best()
    final = (view.summary or {}).get("final", {})
    return {
        "run": str(view.path),
        "dataset": s.get("dataset"),
        "model": s.get("model"),
        "preset": s.get("preset"),
        "code_size": s.get("code_size"),
        "seed": s.get("seed"),
        "state": "finished" if view.finished else "unfinished",
        "evaluations": len(view.rows),
        "trainings": len(view.trained),
        "best_fitness": _finite(best.fitness) if best else None,
        "best_architecture": describe_spec(best.spec) if best else None,
        "val_loss": _finite(final.get("val_loss")),
        "test_loss": _finite(final.get("test_loss")),
        "params": final.get("params"),
        "seconds": (view.summary or {}).get("seconds"),
    }


def run_list(args: argparse.Namespace) -> int:
    records = [run_record(read_run(p)) for p in find_runs(args.folder)]
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    if not records:
        print(f"no runs in {args.folder}")
        return 0
    table = Table(title=f"evoae runs in {args.folder}")
    head = ["run", "dataset", "model", "code", "evals", "best fitness", "val loss", "test loss"]
    for col in head + ["state"]:
        table.add_column(col, overflow="fold")
    for r in records:
        table.add_row(
            Path(r["run"]).name,
            str(r["dataset"]),
            f"{r['model']} ({r['preset']})",
            str(r["code_size"]),
            str(r["evaluations"]),
            _f(r["best_fitness"]),
            _f(r["val_loss"]),
            _f(r["test_loss"]),
            r["state"],
        )
    _console().print(table)
    return 0


def run_show(args: argparse.Namespace) -> int:
    view = read_run(args.run)
    record = run_record(view)
    top = top_candidates(view.rows, args.top)
    front = pareto_front(view.rows)
    strategy = STRATEGIES.get(str(view.settings.get("strategy")))
    show_front = args.front or (strategy is not None and "params" in strategy.objectives)
    if args.json:
        out = {
            **record,
            "settings": view.settings,
            "final": (view.summary or {}).get("final"),
            "top": [_row_json(r) for r in top],
            "front": [_row_json(r) for r in front],
        }
        print(json.dumps(out, indent=2))
        return 0
    console = _console()
    info = Table(title=f"evoae run {view.path.name}", show_header=False)
    info.add_column(style="bold")
    info.add_column(overflow="fold")
    for key in ("dataset", "model", "preset", "code_size", "seed", "state", "evaluations"):
        info.add_row(key.replace("_", " "), str(record[key]))
    info.add_row("trainings", str(record["trainings"]))
    info.add_row("best search fitness", _f(record["best_fitness"]))
    info.add_row("retrained val loss", _f(record["val_loss"]))
    info.add_row("retrained test loss", _f(record["test_loss"]))
    info.add_row("parameters", str(record["params"] if record["params"] is not None else "-"))
    s = view.settings
    if s.get("strategy", "microbial") == "microbial":
        budget = f"population {s.get('population')}, generations {s.get('generations')}"
    else:
        options = (view.raw_settings.get("strategy") or {}).get("options") or {}
        budget = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in options.items())
    info.add_row("strategy", str(s.get("strategy", "microbial")))
    info.add_row(
        "budget", f"{budget}, epochs {s.get('epochs')}, final epochs {s.get('final_epochs')}"
    )
    console.print(info)
    cand = Table(title=f"best {len(top)} candidates")
    for col in ("eval", "gen", "fitness", "params", "architecture", "optimizer", "lr", "batch"):
        cand.add_column(col, overflow="fold")
    for r in top:
        cand.add_row(
            str(r.id),
            str(r.generation),
            _f(r.fitness),
            str(r.params),
            describe_spec(r.spec),
            str(r.spec.get("optimizer")),
            f"{r.spec.get('lr', 0):.3g}",
            str(r.spec.get("batch_size")),
        )
    console.print(cand)
    if show_front:
        pf = Table(title=f"Pareto front of (fitness, params): {len(front)} members")
        for col in ("#", "eval", "fitness", "params", "architecture"):
            pf.add_column(col, overflow="fold")
        for n, r in enumerate(front, 1):
            pf.add_row(str(n), str(r.id), _f(r.fitness), str(r.params), describe_spec(r.spec))
        console.print(pf)
        console.print(f"export a member: evoae export {view.path} --pick N --format onnx")
    return 0


def _console() -> Console:
    """The terminal's width on a terminal; wide enough for whole rows when piped."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def _row_json(row: Any) -> dict[str, Any]:
    d = asdict(row)
    d["fitness"] = _finite(d["fitness"])
    return d


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.5f}"
