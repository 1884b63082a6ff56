"""After the search: retrain the best candidate, score it, save it, build the result.

:func:`retrain_best` is the one place a :class:`SearchResult` is assembled; plots and
summaries are drawn by reporters from it.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from evoae.data import Splits
from evoae.errors import EvoaeError
from evoae.families.io import save_model
from evoae.objectives import Objective
from evoae.runs import folder as rf
from evoae.runs.journal import Journal
from evoae.settings import SearchSettings
from evoae.spaces import Space
from evoae.training import train_candidate
from evoae.training.evaluator import as_tensor, resolve_device
from evoae.training.threads import torch_threads
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
    #: Why the search stopped: "budget", "time budget" or "finished early".
    stopped: str = "budget"
    #: The executor used, in words (what ``auto`` chose).
    executor: str = ""

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
            "stopped": self.stopped,
            "executor": self.executor,
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
    reporters: Sequence[Any] = (),
) -> SearchResult:
    """Retrain the journal's best candidate for ``final_epochs``, test it and save it.

    A diverging retraining is an error (the search itself stays saved): a NaN model is
    never written as the run's model.
    """
    best = journal.best()
    if best is None and n_evaluations == 0:
        raise EvoaeError(
            f"run {run_dir} has no finished evaluation yet: nothing to retrain; continue it "
            f"with --resume {run_dir}"
        )
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
    for r in reporters:
        r.final_start(epochs)

    def on_epoch(done: int, loss: float) -> None:
        for r in reporters:
            r.final_epoch(done, loss)

    with torch_threads(s.execution.threads or 1):
        final_result, model = train_candidate(
            spec,
            train,
            val,
            epochs=epochs,
            seed=final_seed,
            objective=objective,
            on_epoch=on_epoch,
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
        preprocess=splits.train.preprocess,  # also sets model.preprocess
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
