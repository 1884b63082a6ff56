"""After the search: retrain the best candidate, score it, save it, build the result.

:func:`retrain_best` is the one place a :class:`SearchResult` is assembled; plots and
summaries are drawn by reporters from it.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from evoae.data import Splits
from evoae.errors import EvoaeError
from evoae.families import space_from_config
from evoae.families.io import save_model
from evoae.objectives import Objective, make_objective
from evoae.runs import folder as rf
from evoae.runs.journal import Journal, Row
from evoae.runs.reader import pareto_front, read_run
from evoae.settings import SearchSettings
from evoae.spaces import Space, spec_key
from evoae.training import train_candidate
from evoae.training.evaluator import as_tensor, resolve_device
from evoae.training.trainer import as_split, evaluate


@dataclass
class SearchResult:
    """What a search hands back. ``history`` has one row per told batch."""

    run_dir: Path
    best_genome: dict[str, Any]
    best_spec: dict[str, Any]
    best_fitness: float
    final: dict[str, Any]
    model: nn.Module
    history: list[dict[str, float]]
    n_evaluations: int
    n_trainings: int
    seconds: float
    settings: SearchSettings

    def summary(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "best_genome": self.best_genome,
            "best_spec": self.best_spec,
            "best_fitness": self.best_fitness,
            "final": self.final,
            "n_evaluations": self.n_evaluations,
            "n_trainings": self.n_trainings,
            "seconds": self.seconds,
            "settings": self.settings.to_dict(),
            "history": strict_history(self.history),
        }


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any JSON-able parts; stable across machines and Python runs."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def strict_history(history: list[dict[str, float]]) -> list[dict[str, float | None]]:
    """History rows for JSON files: an infinite "best" (every candidate failed) as null."""
    return [{k: v if math.isfinite(v) else None for k, v in row.items()} for row in history]


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x))


def retrain_best(
    s: SearchSettings,
    space: Space,
    objective: Objective,
    journal: Journal,
    history: list[dict[str, float]],
    splits: Splits,
    run_dir: Path,
    *,
    n_evaluations: int,
    n_trainings: int,
    t0: float,
    phenotype_key: Callable[[dict[str, Any]], str],
) -> SearchResult:
    """Retrain the journal's best candidate for ``final_epochs``, test it and save it.

    A diverging retraining is an error (the search itself stays saved): a NaN model is
    never written as the run's model.
    """
    best = journal.best()
    if best is None:
        raise EvoaeError(
            "every candidate failed to train: try other settings (e.g. fewer epochs, a lower "
            "learning rate range) or check the data"
        )
    genome = space.from_json(best.genome)
    spec = space.decode(genome)
    device = resolve_device(s.execution.device)
    epochs = s.training.final_epochs
    final_seed = derive_seed(s.seed, "final", phenotype_key(spec))
    train, val = as_split(splits.train, device), as_split(splits.val, device)
    final_result, model = train_candidate(
        spec, train, val, epochs=epochs, seed=final_seed, objective=objective
    )
    if final_result.status != "ok":  # never save NaN weights as the run's model
        raise EvoaeError(
            f"retraining the best candidate (evaluation {best.id}) for {epochs} epochs "
            f"failed ({final_result.error}); the search is saved: resume with fewer "
            "--final-epochs"
        )
    final: dict[str, Any] = {
        "epochs": epochs,
        "val_loss": final_result.val_loss,
        "train_loss": final_result.train_loss,
        "terms": final_result.terms,
        "params": final_result.params,
        "seconds": final_result.seconds,
        "status": final_result.status,
    }
    if not objective.model_loss:
        final["fitness"] = final_result.fitness
    if splits.test is not None:
        final["test_loss"] = evaluate(model, as_tensor(splits.test.x, device))["loss"]
    model = model.cpu().eval()
    genome_json = _jsonable(space.to_json(genome))
    save_model(
        model,
        run_dir / rf.MODEL_DIR,
        space=space.config(),
        genome=genome_json,
        metrics={
            "search_fitness": best.fitness,
            **{k: v for k, v in final.items() if k != "terms"},
        },
    )
    rf.write_json(
        run_dir / rf.BEST_GENOME,
        {"genome": genome_json, "spec": spec, "fitness": best.fitness, "evaluation": best.id},
    )
    return SearchResult(
        run_dir=run_dir,
        best_genome=genome_json,
        best_spec=spec,
        best_fitness=best.fitness,
        final=final,
        model=model,
        history=history,
        n_evaluations=n_evaluations,
        n_trainings=n_trainings,
        seconds=time.perf_counter() - t0,
        settings=s,
    )


def front_member(
    run_dir: str | Path, *, pick: int | None = None, max_params: int | None = None
) -> tuple[int, Row]:
    """Member ``pick`` (1-based, by parameters) of a run's Pareto front of (fitness, params),
    or the fittest member with at most ``max_params`` parameters."""
    view = read_run(run_dir)
    front = pareto_front(view.rows)
    if not front:
        raise EvoaeError(f"run {run_dir} has no successful evaluation: its front is empty")
    if pick is not None:
        if not 1 <= pick <= len(front):
            raise EvoaeError(
                f"--pick {pick} is outside the run's front: choose 1 to {len(front)} "
                "(see evoae runs show RUN)"
            )
        return pick, front[pick - 1]
    if max_params is None:
        raise EvoaeError("choose a front member with --pick N or --max-params P")
    fits = [i for i, r in enumerate(front) if r.params <= max_params]
    if not fits:
        raise EvoaeError(
            f"no front member has at most {max_params} parameters: the smallest has "
            f"{front[0].params}"
        )
    return fits[-1] + 1, front[fits[-1]]


def retrain_row(run_dir: str | Path, row: Row, dest: str | Path) -> Path:
    """Retrain one journal row of a finished or unfinished run exactly as the best is
    retrained (``final_epochs``, the same seed rule) and save it as ``dest/model``.

    The retraining of the run's best row reproduces the run's own ``model/``.
    """
    run_dir = Path(run_dir)
    with Journal(run_dir / rf.JOURNAL, readonly=True) as j:
        s = SearchSettings.from_dict(j.get_meta("settings"))
        space = space_from_config(j.get_meta("space"))
    objective = make_objective(s.training.objective)
    splits = s.load_splits()
    genome = space.from_json(row.genome)
    spec = space.decode(genome)
    device = resolve_device(s.execution.device)
    key = spec_key({"spec": spec, "epochs": s.training.epochs})  # the loop's phenotype key
    seed = derive_seed(s.seed, "final", key)
    train, val = as_split(splits.train, device), as_split(splits.val, device)
    result, model = train_candidate(
        spec, train, val, epochs=s.training.final_epochs, seed=seed, objective=objective
    )
    if result.status != "ok":
        raise EvoaeError(f"retraining evaluation {row.id} failed ({result.error})")
    metrics: dict[str, Any] = {
        "search_fitness": row.fitness,
        "evaluation": row.id,
        "epochs": s.training.final_epochs,
        "val_loss": result.val_loss,
        "train_loss": result.train_loss,
        "params": result.params,
    }
    if splits.test is not None:
        metrics["test_loss"] = evaluate(model, as_tensor(splits.test.x, device))["loss"]
    return save_model(
        model.cpu().eval(),
        Path(dest) / rf.MODEL_DIR,
        space=space.config(),
        genome=_jsonable(space.to_json(genome)),
        metrics=metrics,
    )
