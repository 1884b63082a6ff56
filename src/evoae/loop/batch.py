"""One asked batch: each row replayed from the journal (a resume), reused from the
phenotype cache, or trained; rows are committed in id order as they complete."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from evoae.errors import EvoaeError
from evoae.loop.lineage import jsonable
from evoae.runs.journal import Row
from evoae.runs.killpoints import kill_point
from evoae.training import Result, Task

if TYPE_CHECKING:
    from evoae.loop.core import Loop


class Batch:
    """The rows of one asked batch: replayed from the journal (a resume), reused from
    the cache, or trained; committed in id order as they complete."""

    def __init__(self, loop: Loop, genomes: Sequence[Any]) -> None:
        self.loop, self.genomes = loop, genomes
        self.base = base = loop.next_id
        self.plans = loop.strategy.plan(genomes, base) or [None] * len(genomes)
        self.gens = loop.strategy.row_generations(len(genomes))
        self.specs = [loop.space.decode(g) for g in genomes]
        self.parents, self.by_pos = loop.lineage.tasks(genomes, self.specs, base)
        self.keys = [
            loop.keys.cache_key(sp, epochs=None if p is None else p.epochs, parent=parent)
            for sp, p, parent in zip(self.specs, self.plans, self.parents, strict=True)
        ]
        self.rows: list[Row | None] = [None] * len(genomes)
        self.stored: set[int] = set()  # positions whose row is already in the journal
        self.written = 0  # rows[:written] are in the journal
        self.leaders: list[int] = []
        self.dups: dict[int, list[int]] = {}
        self.tasks: list[Task] = []

    def look_up(self) -> None:
        """Fill what needs no training and list the trainings (one per phenotype)."""
        loop = self.loop
        to_train: dict[str, list[int]] = {}
        for i, key in enumerate(self.keys):
            old = loop.journal.get(self.base + i)
            if old is not None:  # written before a crash: replay, do not retrain
                self._replay(i, old)
                continue
            if not loop.reevaluate and key in loop.cache:
                self.rows[i] = self._cached(i, loop.cache[key])
                continue
            slot = key if not loop.reevaluate else f"{key}#{i}"
            to_train.setdefault(slot, []).append(i)
        self.leaders = [idx[0] for idx in to_train.values()]
        self.dups = {idx[0]: idx[1:] for idx in to_train.values()}
        self.tasks = [
            self.by_pos[i]
            if self.plans[i] is None
            else loop.task(self.specs[i], self.base + i, self.plans[i])  # type: ignore[arg-type]
            for i in self.leaders
        ]

    def _replay(self, i: int, old: Row) -> None:
        loop = self.loop
        try:
            if old.genome != jsonable(loop.space.to_json(self.genomes[i])):
                raise ValueError
            # What it inherited is on record (its parent's state may be gone since).
            plan = self.plans[i]
            self.keys[i] = loop.keys.cache_key(
                self.specs[i],
                epochs=None if plan is None else plan.epochs,
                parent=loop.lineage.parent_id(old),
            )
        except ValueError:
            raise EvoaeError(
                f"journal row {self.base + i} does not match the resumed search: the run "
                "folder was modified or the settings differ; start a new run"
            ) from None
        self.rows[i] = old
        self.stored.add(i)
        if not old.cached:
            loop.cache[self.keys[i]] = old
            loop.trainings += 1  # it was trained before the crash

    def _cached(self, i: int, src: Row) -> Row:
        return self.loop.row(
            self.base + i, self.gens[i], self.genomes[i], self.specs[i], src, cached=True
        )

    def trained(self, j: int, result: Result) -> None:
        """Task ``j`` finished: its row, and its duplicates within the batch."""
        loop, i = self.loop, self.leaders[j]
        plan = self.plans[i]
        if plan is None and not loop.lineage.on:  # saved for the final stage only: the
            result.terms.pop("epochs", None)  # row is the same as an unsaved training's
        if plan is not None:
            result.terms["rung"] = float(plan.rung)
            if plan.resume is not None:
                # A promotion's curve holds the epochs it added, whether its saved state
                # was continued or (gone or invalid) retrained from scratch to the same end.
                prev = loop.journal.get(plan.resume)
                done = int((prev.terms.get("epochs") or 0) if prev is not None else 0)
                result.curve = [p for p in result.curve if p[0] > done]
        row = loop.row(
            self.base + i,
            self.gens[i],
            self.genomes[i],
            self.specs[i],
            result,
            cached=False,
            seed=self.tasks[j].seed,
        )
        if self.parents[i] is not None:
            row.terms["inherited_from"] = float(self.parents[i])  # type: ignore[arg-type]
        kill_point("trained")
        loop.trainings += 1
        self.rows[i] = row
        if not loop.reevaluate:
            loop.cache[self.keys[i]] = row
        for d in self.dups[i]:  # duplicates of a phenotype within one batch
            self.rows[d] = self._cached(d, row)

    def flush(self) -> None:
        """Commit the completed prefix in id order, so the journal stays 0..n-1 whatever
        order the trainings finish in: a kill leaves no gap for the resume to refuse."""
        loop = self.loop
        while self.written < len(self.rows) and self.rows[self.written] is not None:
            row = self.rows[self.written]
            assert row is not None
            if self.written not in self.stored:
                loop.journal.append(row)
                kill_point("appended")
                for r in loop.reporters:
                    r.evaluated(row)
            loop.lineage.remember(row, self.keys[self.written])
            self.written += 1

    def done(self) -> list[Row]:
        assert self.written == len(self.rows)
        return [r for r in self.rows if r is not None]
