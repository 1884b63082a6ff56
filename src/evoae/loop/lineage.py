"""Weight inheritance bookkeeping: which row each offspring inherits from, and which
saved states (``RUN/states/<id>``) the population still needs.

With the strategy option ``inherit`` every training saves its state and an offspring
starts from its parent's; the parent is the row that trained the genome the strategy
names (:meth:`evoae.evolution.Strategy.parents`). A parent whose state is missing or
invalid gives no parent: the child trains from its own initialisation, which a resumed
run decides the same way, since it holds the same state files.

With the setting ``final_continue`` every training saves its state too, and the states
of the search's finalists (:func:`evoae.finish.finalists`) are kept besides those the
population needs, so the final stage continues them; the rest are deleted after each
batch, and every state once the final stage is done.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from evoae.evolution import Strategy
from evoae.loop.keys import Phenotypes
from evoae.runs import folder as rf
from evoae.runs.journal import Row
from evoae.spaces import Space
from evoae.training import Task
from evoae.training.rungs import valid_state

#: A saved state evoae wrote (``states/<id>.safetensors`` / ``.json``) or its temporary file.
_STATE_FILE = re.compile(r"^(?P<tmp>\.)?(?P<id>\d+)\.(safetensors|json)(?(tmp)\.tmp)$")


def inherits(strategy: Strategy) -> bool:
    """Whether ``strategy``'s offspring start from their parents' trained weights: its
    ``inherits`` property, else its ``inherit`` option."""
    flag = getattr(strategy, "inherits", None)
    if isinstance(flag, bool):
        return flag
    return bool(getattr(strategy.options, "inherit", False))


def jsonable(x: Any) -> Any:
    """``x`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(x))


def genome_id(genome: Any) -> str:
    return json.dumps(jsonable(genome), sort_keys=True)


class Lineage:
    """Parents and saved states of one search (inert when inheritance is off)."""

    def __init__(self, strategy: Strategy, space: Space, keys: Phenotypes, run_dir: Path) -> None:
        self.strategy, self.space, self.keys, self.run_dir = strategy, space, keys, run_dir
        self.on = inherits(strategy)
        #: Morph mode: a task also gets its parent's spec (which morph made the child).
        self.morph = bool(getattr(strategy.options, "morph", False))
        t = keys.s.training
        #: Every training saves its state for the final stage to continue (``final_continue``).
        # (Not with multi-fidelity strategies: their own saved states are kept as before.)
        staged = type(strategy).live_states is not Strategy.live_states
        self.final = bool(t.final_continue) and t.final_pbt < 2 and not staged
        #: genome id -> the row holding its latest trained state.
        self.trained: dict[str, Row] = {}

    def parent_id(self, row: Row) -> int | None:
        """The journal row ``row`` inherited from (checked: an earlier row), or None."""
        v = row.terms.get("inherited_from")
        if v is None:
            return None
        number = isinstance(v, int | float) and not isinstance(v, bool)
        known = self.keys.keys
        if not number or not float(v).is_integer() or not 0 <= v < row.id or v not in known:
            raise ValueError(f"row {row.id} names an invalid parent row {v!r}")
        return int(v)

    def remember(self, row: Row, key: str) -> None:
        """Note a committed row: its key, and for its genome the row holding the trained
        state (a cached row's is the row it was cached from)."""
        if self.on:
            self.keys.keys[row.id] = key
            src = self.keys.cache.get(key, row) if row.cached else row
            self.trained[genome_id(row.genome)] = src

    def tasks(
        self, genomes: Sequence[Any], specs: Sequence[dict[str, Any]], base: int
    ) -> tuple[list[int | None], list[Task]]:
        """Each genome's parent row and its task (with inheritance on, every task saves
        its state to ``states/<id>`` and an offspring starts from its parent's)."""
        parents: list[int | None] = [None] * len(genomes)
        parent_specs: list[dict[str, Any] | None] = [None] * len(genomes)
        if self.on:
            for i, g in enumerate(self.strategy.parents(genomes)):
                row = None if g is None else self.trained.get(genome_id(self.space.to_json(g)))
                if row is not None and valid_state(self.stem(row.id), row.spec):
                    parents[i] = row.id
                    parent_specs[i] = row.spec if self.morph else None
        tasks = []
        for i, (spec, parent) in enumerate(zip(specs, parents, strict=True)):
            seed = self.keys.seed_for(spec, base + i, parent)
            epochs = self.keys.epochs_for(spec)
            trainer = self.keys.s.training.trainer
            if not self.on and not self.final:
                tasks.append(Task(spec, seed, epochs, trainer=trainer))
                continue
            stem = None if parent is None else str(self.stem(parent))
            save = str(rf.save_stem(self.run_dir.resolve(), base + i))
            tasks.append(
                Task(
                    spec,
                    seed,
                    epochs,
                    save=save,
                    inherit=stem,
                    inherit_spec=parent_specs[i],
                    trainer=trainer,
                )
            )
        return parents, tasks

    def stem(self, eval_id: int) -> Path:
        return rf.state_stem(self.run_dir.resolve(), eval_id)

    def prune(self, next_id: int, everything: bool = False, keep: Iterable[int] = ()) -> None:
        """Delete saved states no member of the population needs (the batch in flight
        keeps its own) and ``keep`` does not name (the finalists' and those a
        multi-fidelity strategy continues); ``everything`` (but ``keep``) at the end of
        the search. Only evoae's files."""
        folder = self.run_dir / rf.STATES_DIR
        members = getattr(self.strategy, "population", None)
        if not (self.on or self.final) or folder.is_symlink() or not folder.is_dir():
            return  # a linked folder is not evoae's to empty
        if members is None and not everything and not self.final:
            return
        keep = set(keep)
        for g in () if everything or not self.on or members is None else members:
            row = self.trained.get(genome_id(self.space.to_json(g)))
            if row is not None:
                keep.add(row.id)
        for p in list(folder.iterdir()):
            m = _STATE_FILE.match(p.name)
            if m is None or p.is_symlink() or not p.is_file():
                continue
            n = int(m["id"])
            mine = m["tmp"] or rf.is_state_file(p)  # by content: a user's 2024.json stays
            # Only ids this run has handed out (below next_id): a state-like file of
            # another id is not one evoae wrote, whatever it holds.
            if m["tmp"] or (mine and n < next_id and n not in keep):
                p.unlink()
        if everything and not any(folder.iterdir()):
            folder.rmdir()
