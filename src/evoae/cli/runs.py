"""``evoae runs list|show``: runs and their best results, as tables or JSON."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evoae.cli import add_command, positive_int
from evoae.errors import EvoaeError
from evoae.runs import folder as rf
from evoae.runs.best import best_of
from evoae.runs.reader import RunView, pareto_front, read_run, top_candidates
from evoae.runs.vae_text import collapse_text, summary_rows

if TYPE_CHECKING:
    from rich.console import Console

# rich, the families and the strategies (which need numpy) are imported where they are
# used: ``evoae runs list`` must start at once.


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "runs",
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
    show.add_argument(
        "--top", type=positive_int, default=None, help="candidates to show [default: 10]"
    )
    fmt = show.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON")
    fmt.add_argument(
        "--csv",
        action="store_true",
        help="print every evaluation as CSV (one row each: id, generation, status, fitness, "
        "losses, params, seconds, seed, cached, genome.GENE and terms.NAME columns)",
    )
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
    from evoae.families.registry import describe as describe_spec

    s = view.settings
    best = best_of(view)
    summary = view.summary or {}
    final = summary.get("final", {})
    spec = summary.get("best_spec") or (best.row.spec if best.row else None)
    return {
        "run": str(view.path),
        "dataset": s.get("dataset"),
        "model": s.get("model"),
        "preset": s.get("preset"),
        "strategy": s.get("strategy", "microbial"),
        "code_size": s.get("code_size"),
        "seed": s.get("seed"),
        "state": "finished" if view.finished else "unfinished",
        "evaluations": len(view.rows),
        "trainings": len(view.trained),
        # A finished run: the returned model's candidate (not always the journal's best:
        # a PCA seed that led the search can lose the final training to a from-scratch one).
        "best_fitness": _finite(best.fitness),
        "best_evaluation": best.evaluation,
        "best_fidelity": best.search_fidelity,
        "best_architecture": describe_spec(spec) if spec else None,
        "val_loss": _finite(final.get("val_loss")),
        "pca_val_loss": _finite(final.get("pca_val_loss")),
        "pca_ratio": _finite(final.get("pca_ratio")),
        "fallback": final.get("fallback"),
        "final_pbt": final.get("pbt") is not None,
        # None: a summary written before evoae recorded what ended the final training.
        "final_stop": final.get("stop"),
        "converged": final.get("converged"),
        "test_loss": _finite(final.get("test_loss")),
        "collapsed": (final.get("vae") or {}).get("collapsed"),
        "collapse": collapse_text(final.get("vae")),
        "test_nll": _finite((final.get("vae") or {}).get("test_nll")),
        "params": final.get("params"),
        "seconds": (view.summary or {}).get("seconds"),
    }


def damaged_record(path: Path, reason: str) -> dict[str, Any]:
    """The record of a run that cannot be read: its folder and why."""
    return {"run": str(path), "state": f"damaged ({reason})", "damaged": reason}


def _record_or_damage(path: Path) -> dict[str, Any]:
    try:
        return run_record(read_run(path))
    except EvoaeError as e:
        return damaged_record(path, str(e))
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
        # Whatever one bad run does, the other runs are still listed.
        return damaged_record(path, " ".join(f"{type(e).__name__}: {e}".split())[:200])


def run_list(args: argparse.Namespace) -> int:
    """Every run under the folder; a damaged run is listed as "damaged (reason)"."""
    records = [_record_or_damage(p) for p in find_runs(args.folder)]
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    if not records:
        print(f"no runs in {args.folder}")
        return 0
    from rich.table import Table

    table = Table(title=f"evoae runs in {args.folder}")
    head = ["run", "dataset", "model", "code", "evals", "best fitness", "val loss", "test loss"]
    for col in head + ["state"]:
        table.add_column(col, overflow="fold")
    for r in records:
        if "damaged" in r:
            table.add_row(Path(r["run"]).name, *["-"] * (len(head) - 1), r["state"])
            continue
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


def _info_table(view: Any, record: dict[str, Any]) -> Any:
    """The run's figures and settings, one row each."""
    from rich.table import Table

    info = Table(title=f"evoae run {view.path.name}", show_header=False)
    info.add_column(style="bold")
    info.add_column(overflow="fold")
    for key in ("dataset", "model", "preset", "code_size", "seed", "state", "evaluations"):
        info.add_row(key.replace("_", " "), str(record[key]))
    info.add_row("trainings", str(record["trainings"]))
    best = best_of(view)
    info.add_row("best candidate", best.search_text())
    if best.row is not None:
        from evoae.families.registry import describe as describe_spec

        info.add_row("best architecture", describe_spec(best.row.spec))
    info.add_row("retrained val loss", best.final_text())
    if best.leader_note:
        info.add_row("search leader", best.leader_note)
    final = (view.summary or {}).get("final", {})
    if view.finished:
        spent = (view.summary or {}).get("spent")
        if isinstance(spent, dict):
            info.add_row("search spent", spent_text(spent))
        info.add_row("final training", final_training_text(final))
    if view.final_curve is not None:
        info.add_row("final learning curve", curve_text(*view.final_curve))
    if view.finished and "pca_val_loss" in final:
        for key, value in pca_rows(final, record["code_size"]):
            info.add_row(key, value)
        if final.get("fallback"):
            info.add_row("fallback", str(final.get("fallback_message")))
    else:  # unfinished, or made before evoae compared runs with PCA
        info.add_row(f"PCA val loss ({record['code_size']} components)", "-")
        info.add_row("ratio to PCA", "-")
    info.add_row("retrained test loss", _f(record["test_loss"]))
    for key, value in summary_rows(final.get("vae")):  # a VAE: collapse and likelihood
        info.add_row(key, value)
    info.add_row("parameters", str(record["params"] if record["params"] is not None else "-"))
    s = view.settings
    raw = view.raw_settings
    if isinstance(raw.get("data"), dict):  # nested settings (evoae >= 0.2)
        options = (raw.get("strategy") or {}).get("options") or {}
    else:  # evoae 0.1: the microbial GA's settings were flat
        options = {k: s[k] for k in ("population", "generations", "deme", "concurrent") if k in s}
    strategy = ", ".join(f"{k} {v}" for k, v in options.items() if v is not None)
    info.add_row("strategy", f"{s.get('strategy', 'microbial')} ({strategy})")
    info.add_row("budget", budget_text(s))
    if s.get("fidelity") == "asha":
        info.add_row(
            "fidelity",
            f"asha: rungs of {s.get('min_epochs')} to {s.get('max_epochs')} epochs, eta "
            f"{s.get('eta')}; the best is the best at the highest rung reached",
        )
    return info


def _candidates_table(top: list[Any]) -> Any:
    """The best candidates, one row each (with epochs when rows differ in them)."""
    from rich.table import Table

    from evoae.families.registry import describe as describe_spec

    cand = Table(title=f"best {len(top)} candidates")
    rungs = any("rung" in r.terms for r in top)  # multi-fidelity: rows differ in epochs
    cols = ("eval", "gen", "fitness", *(("epochs",) if rungs else ()), "params", "architecture")
    for col in (*cols, "optimizer", "lr", "batch"):
        cand.add_column(col, overflow="fold")
    for r in top:
        epochs = r.terms.get("epochs")
        cand.add_row(
            str(r.id),
            str(r.generation),
            _f(r.fitness),
            *((str(int(epochs)) if epochs is not None else "-",) if rungs else ()),
            str(r.params),
            describe_spec(r.spec),
            str(r.spec.get("optimizer")),
            f"{r.spec.get('lr', 0):.3g}",
            str(r.spec.get("batch_size")),
        )
    return cand


def run_show(args: argparse.Namespace) -> int:
    from rich.table import Table

    from evoae.evolution import STRATEGIES
    from evoae.families.registry import describe as describe_spec

    if args.csv and (args.top is not None or args.front):
        # refused rather than ignored: --csv prints every evaluation, no front
        flag = "--top" if args.top is not None else "--front"
        raise EvoaeError(f"--csv prints every evaluation: drop {flag}, or use --json")
    view = read_run(args.run)
    if args.csv:
        import sys

        from evoae.runs.frame import write_csv

        write_csv(view, sys.stdout)
        return 0
    record = run_record(view)
    top = top_candidates(view.rows, 10 if args.top is None else args.top)
    front = pareto_front(view.rows)
    strategy = STRATEGIES.get(str(view.settings.get("strategy")))
    show_front = args.front or (strategy is not None and "params" in strategy.objectives)
    if args.json:
        out = {
            **record,
            "settings": view.settings,
            "final": (view.summary or {}).get("final"),
            "top": [_row_json(r, view.curves) for r in top],
            "front": [_row_json(r, view.curves) for r in front],
            "final_curve": None
            if view.final_curve is None
            else {"evaluation": view.final_curve[0], "curve": view.final_curve[1]},
        }
        print(json.dumps(out, indent=2))
        return 0
    console = _console()
    console.print(_info_table(view, record))
    collapse = collapse_text(((view.summary or {}).get("final") or {}).get("vae"))
    if collapse:
        console.print(collapse, markup=False, style="bold")
    console.print(_candidates_table(top))
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
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)


def _row_json(row: Any, curves: dict[int, Any]) -> dict[str, Any]:
    """A row as JSON, with its learning curve ``[[epoch, train, val], ...]``."""
    d = asdict(row)
    d["fitness"] = _finite(d["fitness"])
    d["curve"] = [list(p) for p in curves.get(row.id, [])]
    return d


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.5f}"


def budget_text(s: dict[str, Any]) -> str:
    """The run's budgets as set (flat settings): epochs and their step floors, time."""
    text = f"epochs {s.get('epochs')}"
    if s.get("min_steps"):
        text += f" (at least {s.get('min_steps')} steps)"
    text += f", final epochs {s.get('final_epochs')}"
    if s.get("final_min_steps"):
        text += f" (at least {s.get('final_min_steps')} steps)"
    if s.get("time_budget") is not None:
        text += f", time budget {s.get('time_budget'):g} s"
    if s.get("final_time_budget") is not None:
        text += f", final time budget {s.get('final_time_budget'):g} s"
    return text


def spent_text(spent: dict[str, Any]) -> str:
    """What the search spent before the final stage, in words."""
    parts = [f"{spent.get('evaluations')} evaluations", f"{spent.get('trainings')} trainings"]
    for key in ("epochs", "steps"):
        if isinstance(spent.get(key), int):
            parts.append(f"{spent[key]:,} {key}")
    if isinstance(spent.get("seconds"), int | float):
        parts.append(f"{spent['seconds']:.1f} s")
    return ", ".join(parts)


def curve_text(evaluation: int, curve: list[Any]) -> str:
    """The final stage's recorded curve in words: its points and last losses."""
    if not curve:
        return "none recorded"
    who = f"evaluation {evaluation}" if evaluation >= 0 else "the fallback model"
    train = [t for _, t, _ in curve if t is not None]
    val = [v for _, _, v in curve if v is not None]
    text = f"{len(curve)} points (epochs {curve[0][0]} to {curve[-1][0]}) of {who}"
    if train:
        text += f", last train loss {train[-1]:.5f}"
    if val:
        text += f", best val loss {min(val):.5f}"
    return text


_STOPS = {
    "plateau": "converged (stopped on a validation plateau)",
    "epochs": "capped by the epoch limit (not converged)",
    "time budget": "capped by the time budget (not converged)",
}


def finalists_text(candidates: Any) -> str:
    """``"; kept evaluation N, the best on validation of K finalists (...)"``, or "" for
    one finalist (or a summary from before the final stage trained several)."""
    if not isinstance(candidates, list) or len(candidates) < 2:
        return ""
    rows = [c for c in candidates if isinstance(c, dict)]
    kept = next((c for c in rows if c.get("kept") is True), None)
    if kept is None:
        return ""
    short = {"plateau": "converged", "epochs": "capped", "time budget": "out of time"}
    losses = ", ".join(
        f"#{c.get('evaluation')} {_f(_finite(c.get('val_loss')))} "
        f"({short.get(str(c.get('stop')), c.get('stop') or c.get('status'))}"
        f"{', continued' if c.get('start') == 'continued' else ''})"
        for c in rows
    )
    return (
        f"; kept evaluation {kept.get('evaluation')}, the best on validation of "
        f"{len(rows)} finalists (val loss: {losses})"
    )


def final_training_text(final: dict[str, Any]) -> str:
    """How the final model was trained (plain, or PBT with its figures), what it spent
    and whether it converged or hit a cap."""
    pbt = final.get("pbt")
    epochs = final.get("epochs")
    spend = [f"{final['steps']:,} steps"] if isinstance(final.get("steps"), int) else []
    if isinstance(final.get("seconds"), int | float):
        spend.append(f"{final['seconds']:.1f} s")
    stop = _STOPS.get(str(final.get("stop")))
    if not isinstance(pbt, dict):
        if epochs is None:
            return "plain"
        cap = final.get("max_epochs")
        text = f"plain, {epochs} epoch{'' if epochs == 1 else 's'}"
        text += f" (at most {cap})" if cap is not None else ""
        text = ", ".join([text, *spend])
        text = f"{text}: {stop}" if stop else text
        return text + finalists_text(final.get("candidates"))
    hp = pbt.get("hparams") if isinstance(pbt.get("hparams"), dict) else {}
    tuned = ", ".join(
        f"{k} {v:.3g}" if k != "batch_size" else f"batch {v:g}"
        for k, v in hp.items()
        if isinstance(v, int | float)
    )
    text = (
        f"PBT, {pbt.get('copies')} copies x {pbt.get('epochs_per_copy')} epochs "
        f"(= {pbt.get('epochs_total')}), exploit/explore every {pbt.get('ready')}: "
        f"{pbt.get('exploits')} exploit(s), best copy #{pbt.get('best_copy')} ({tuned})"
    )
    return f"{text}: {stop}" if stop else text


def pca_rows(final: dict[str, Any], code_size: Any, unit: str = "") -> list[tuple[str, str]]:
    """PCA's validation loss at the run's code size and the model's ratio to it (or n/a)."""
    pca = final.get("pca_val_loss")
    if pca is None:
        note = final.get("pca_note", "-")
        return [(f"PCA val loss ({code_size} components)", note), ("ratio to PCA", note)]
    ratio = final.get("pca_ratio")
    tail = " (PCA fallback)" if final.get("fallback") == "pca" else ""
    return [
        (f"PCA val loss ({code_size} components)", f"{pca:.5f} {unit}".rstrip()),
        ("ratio to PCA", "-" if ratio is None else f"{ratio:.4f}{tail}"),
    ]
