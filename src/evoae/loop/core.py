"""The loop: ask -> decode -> cache -> evaluate -> journal -> tell -> checkpoint.

Every finished evaluation is committed to the journal (in id order, whatever order the
trainings finish in) before the strategy is told, and the strategy's state is
checkpointed atomically with the journal position after every tell. Keys, seeds and the
phenotype cache are :mod:`evoae.loop.keys`'s; weight inheritance is
:mod:`evoae.loop.lineage`'s; reporters hear of every row and every batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evoae.evolution import Plan, Strategy
from evoae.finish import RowCache, final_states, strict_history
from evoae.loop.batch import Batch
from evoae.loop.keys import Phenotypes
from evoae.loop.lineage import Lineage, jsonable
from evoae.objectives import Objective
from evoae.report.progress import Reporter
from evoae.runs import folder as rf
from evoae.runs.journal import Journal, Row
from evoae.settings import SearchSettings
from evoae.spaces import Space
from evoae.training import Evaluator, Result, Task


class Loop:
    """One search's mutable state: journal position, phenotype cache, history."""

    def __init__(
        self,
        s: SearchSettings,
        space: Space,
        strategy: Strategy,
        objective: Objective,
        journal: Journal,
        run_dir: Path,
        reporters: Sequence[Reporter],
        n_train: int,
    ) -> None:
        self.s, self.space, self.strategy, self.journal = s, space, strategy, journal
        self.run_dir, self.reporters = run_dir, reporters
        self.reevaluate = bool(getattr(strategy.options, "reevaluate", False))
        self.keys = Phenotypes(s, n_train, objective, reevaluate=self.reevaluate)
        self.lineage = Lineage(strategy, space, self.keys, run_dir)
        self.next_id = 0
        self.batches = 0
        self.history: list[dict[str, float]] = []
        self.trainings = 0
        self.best = math.inf
        self.states_listed = False
        self._rows: RowCache | None = None  # the journal's rows, for final_states
        #: Search seconds of earlier sessions (a resumed run's checkpoint), and when this
        #: session's search began: ``search spent`` counts every session.
        self.seconds_before = 0.0
        self.session_start = time.perf_counter()

    @property
    def cache(self) -> dict[str, Row]:
        return self.keys.cache

    # ------------------------------------------------------------ resume, checkpoint

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Continue from a checkpoint: the strategy's state, the position, the cache."""
        self.strategy.load_state_dict(ckpt["strategy"])
        self.next_id = int(ckpt["next_id"])
        told = self.strategy.progress()[0]
        if self.strategy.unit == "evaluations" and told > self.next_id:
            raise ValueError(f"the strategy counts {told} evaluations, the journal {self.next_id}")
        self.batches = int(ckpt.get("batches", len(ckpt["history"])))
        self.history = [
            {k: math.inf if v is None else v for k, v in row.items()} for row in ckpt["history"]
        ]
        self.trainings = int(ckpt["trainings"])
        before = ckpt.get("seconds")  # absent in checkpoints made before it was kept
        ok = isinstance(before, int | float) and not isinstance(before, bool)
        if ok and 0 <= before <= 1e10:  # a damaged count is dropped, not trusted
            self.seconds_before = float(before)
        for row in self.journal.rows():
            if row.id < self.next_id:
                self.best = min(self.best, row.fitness)
                planned = "rung" in row.terms and row.terms.get("epochs") is not None
                epochs = int(row.terms["epochs"]) if planned else None
                parent = self.lineage.parent_id(row)
                key = self.keys.cache_key(row.spec, epochs=epochs, parent=parent)
                if not row.cached:
                    self.cache[key] = row
                self.lineage.remember(row, key)
        live = self.strategy.live_states()
        self.lineage.prune(self.next_id, keep=self.final_states() | (live or set()))

    def checkpoint(self) -> None:
        rf.write_json(
            self.run_dir / rf.CHECKPOINT,
            {
                "strategy": self.strategy.state_dict(),
                "next_id": self.next_id,
                "batches": self.batches,
                "history": strict_history(self.history),
                "trainings": self.trainings,
                "seconds": self.search_seconds(),
            },
        )

    def search_seconds(self) -> float:
        """Seconds the search has run, over every session of the run."""
        return self.seconds_before + time.perf_counter() - self.session_start

    # ------------------------------------------------------------ one batch

    def step(self, evaluator: Evaluator) -> None:
        """One batch: ask, decode, reuse what is known, train the rest, journal, tell."""
        genomes = self.strategy.ask()
        batch = Batch(self, genomes)
        batch.look_up()
        batch.flush()
        for j, result in evaluator.evaluate(batch.tasks) if batch.tasks else ():
            batch.trained(j, result)
            batch.flush()
        batch.flush()
        done = batch.done()
        self.next_id = batch.base + len(genomes)
        self.batches += 1
        self.best = min([self.best, *(r.fitness for r in done)])
        self.strategy.tell(genomes, tell_values(self.strategy, done))
        self.history.append(self._history_row())
        self.checkpoint()
        live = self.strategy.live_states()
        final = self.final_states()
        if live is not None:  # after the checkpoint: a resume never needs what is deleted
            rf.prune_states(self.run_dir, live | final)
        self.lineage.prune(self.next_id, keep=final | (live or set()))
        for r in self.reporters:
            r.generation(self.strategy.progress()[0], self.best)

    def final_states(self) -> set[int]:
        """The journal ids whose saved states the final stage continues (none unless
        ``final_continue``): the finalists' so far (:func:`evoae.finish.final_states`)."""
        if not self.lineage.final:
            return set()
        if self._rows is None or self._rows.journal is not self.journal:
            self._rows = RowCache(self.journal)
        return final_states(self._rows, self.s.training.final_candidates)

    def task(self, spec: dict[str, Any], eval_id: int, plan: Plan) -> Task:
        """The training of row ``eval_id`` the strategy planned: its epochs, continuing a
        saved state, saving its own. Seeds never depend on the plan, so a promotion
        continues with the seed of its first rung."""
        seed = self.keys.seed_for(spec, eval_id)
        resume = None if plan.resume is None else str(rf.state_stem(self.run_dir, plan.resume))
        save = None
        if plan.save:
            if not self.states_listed:  # runs whose manifest predates states/
                rf.add_to_manifest(self.run_dir, rf.STATES_DIR)
                self.states_listed = True
            save = str(rf.save_stem(self.run_dir, eval_id))
        trainer = self.s.training.trainer
        return Task(spec, seed, int(plan.epochs), resume=resume, save=save, trainer=trainer)

    def row(
        self,
        eval_id: int,
        gen: int,
        genome: Any,
        spec: dict[str, Any],
        src: Result | Row,
        *,
        cached: bool,
        seed: int | None = None,
    ) -> Row:
        return Row(
            id=eval_id,
            generation=gen,
            genome=jsonable(self.space.to_json(genome)),
            spec=spec,
            fitness=src.fitness,
            train_loss=src.train_loss,
            val_loss=src.val_loss,
            params=src.params,
            seconds=0.0 if cached else src.seconds,
            seed=src.seed if isinstance(src, Row) else int(seed),  # type: ignore[arg-type]
            status=src.status,
            cached=cached,
            terms=dict(src.terms),
            error=src.error,
            curve=[] if cached or isinstance(src, Row) else list(src.curve),
        )

    def _history_row(self) -> dict[str, float]:
        row = {
            "generation": self.strategy.progress()[0],
            "evaluations": self.next_id,
            "best": self.best,
        }
        pop = self.strategy.population_fitness()
        fit = np.array([f for f in pop or () if math.isfinite(f)])
        if fit.size:
            q25, med, q75 = np.percentile(fit, [25, 50, 75])
            row.update(median=float(med), q25=float(q25), q75=float(q75), min=float(fit.min()))
        return row


def tell_values(strategy: Strategy, rows: Sequence[Row]) -> list[Any]:
    """What ``strategy`` is told per row: its fitness, or one tuple of its objectives."""
    names = strategy.objectives
    if tuple(names) == ("fitness",):
        return [r.fitness for r in rows]
    return [tuple(_value(r, n) for n in names) for r in rows]


def _value(row: Row, name: str) -> float:
    if row.status == "failed":
        return math.inf
    if name in ("fitness", "params", "val_loss", "train_loss"):
        v = getattr(row, name)
    else:
        v = row.terms.get(name)
    return math.inf if v is None else float(v)
