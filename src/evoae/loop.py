"""The search loop: ask the strategy, evaluate, journal, tell, checkpoint; then retrain the best.

Every finished evaluation is committed to the journal before the strategy is told, and
the strategy's state is checkpointed atomically with the journal position after every
tell. Candidate seeds are derived from the run seed and the candidate's phenotype, so a
result never depends on which worker trained it or when; identical phenotypes are
trained once (the phenotype cache) unless ``reevaluate`` asks for the published
behaviour of retraining parents, which then get per-evaluation seeds.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from evoae import evolution
from evoae.data import Dataset, Splits, load_splits
from evoae.errors import EvoaeError
from evoae.evolution import Asha, Plan, Strategy
from evoae.execution import make_evaluator
from evoae.families import make_space
from evoae.finish import SearchResult, derive_seed, phenotype_key, retrain_best, strict_history
from evoae.objectives import Objective, make_objective
from evoae.report import PlotReporter
from evoae.report.progress import Reporter
from evoae.runs import folder as rf
from evoae.runs.journal import Journal, Row
from evoae.runs.killpoints import arm_forward, kill_point
from evoae.settings import SearchSettings, StrategySettings
from evoae.spaces import Space, spec_key
from evoae.training import Evaluator, Result, Task
from evoae.training.budget import epochs_for
from evoae.training.evaluator import resolve_device
from evoae.training.rungs import valid_state

__all__ = ["SearchResult", "SearchSettings", "derive_seed", "search"]


# ---------------------------------------------------------------- the loop


class _Loop:
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
        self.n_train = int(n_train)
        self.objective = objective
        self.run_dir = run_dir
        self.reporters = reporters
        self.next_id = 0
        self.batches = 0
        self.cache: dict[str, Row] = {}
        self.history: list[dict[str, float]] = []
        self.trainings = 0
        self.best = math.inf
        self.reevaluate = bool(getattr(strategy.options, "reevaluate", False))
        self.states_listed = False
        # Weight inheritance: every training saves its state; each row's cache key (by
        # id) and, per genome, the row that trained its latest evaluation.
        self.inherit = bool(getattr(strategy.options, "inherit", False))
        self.keys: dict[int, str] = {}
        self.trained: dict[str, Row] = {}

    def epochs_for(self, spec: dict[str, Any]) -> int:
        """The candidate's epochs: ``epochs``, more if needed for ``min_steps`` steps."""
        t = self.s.training
        return epochs_for(t.epochs, t.min_steps, self.n_train, int(spec["batch_size"]))

    def phenotype_key(self, spec: dict[str, Any]) -> str:
        """What a candidate's training is a function of (with the data): seeds derive from it."""
        return phenotype_key(self.s, self.n_train, spec)

    def cache_key(
        self, spec: dict[str, Any], *, epochs: int | None = None, parent: int | None = None
    ) -> str:
        """The phenotype cache's key: the phenotype, what it is scored on, the epochs of a
        planned (multi-fidelity) training, and the row it inherited its weights from (so
        it never shares an entry with a scratch one)."""
        key = self.phenotype_key(spec) + spec_key(self.objective.config()) + self.link(parent)
        return key if epochs is None else f"{key}@{int(epochs)}"

    def link(self, parent: int | None) -> str:
        """What an inherited training adds to its keys: the parent row and its key."""
        if parent is None:
            return ""
        digest = hashlib.sha256(f"{self.keys[parent]}#{parent}".encode()).hexdigest()
        return f"<{digest[:16]}"

    def seed_for(self, spec: dict[str, Any], eval_id: int, parent: int | None = None) -> int:
        key = self.phenotype_key(spec) + self.link(parent)
        if self.reevaluate:
            return derive_seed(self.s.seed, key, eval_id)
        return derive_seed(self.s.seed, key)

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.strategy.load_state_dict(ckpt["strategy"])
        self.next_id = int(ckpt["next_id"])
        self.batches = int(ckpt.get("batches", len(ckpt["history"])))
        self.history = [
            {k: math.inf if v is None else v for k, v in row.items()} for row in ckpt["history"]
        ]
        self.trainings = int(ckpt["trainings"])
        for row in self.journal.rows():
            if row.id < self.next_id:
                self.best = min(self.best, row.fitness)
                planned = "rung" in row.terms and row.terms.get("epochs") is not None
                epochs = int(row.terms["epochs"]) if planned else None
                key = self.cache_key(row.spec, epochs=epochs, parent=self._parent_id(row))
                if not row.cached:
                    self.cache[key] = row
                self._remember(row, key)
        self.prune_states()

    def _parent_id(self, row: Row) -> int | None:
        """The journal row ``row`` inherited from (checked: an earlier row), or None."""
        v = row.terms.get("inherited_from")
        if v is None:
            return None
        number = isinstance(v, int | float) and not isinstance(v, bool)
        if not number or not float(v).is_integer() or not 0 <= v < row.id or v not in self.keys:
            raise ValueError(f"row {row.id} names an invalid parent row {v!r}")
        return int(v)

    def _remember(self, row: Row, key: str) -> None:
        """Note a committed row: its key, and for its genome the row holding the trained
        state (a cached row's is the row it was cached from)."""
        if self.inherit:
            self.keys[row.id] = key
            src = self.cache.get(key, row) if row.cached else row
            self.trained[_genome_id(row.genome)] = src

    def inheritance(
        self, genomes: Sequence[Any], specs: Sequence[dict[str, Any]], base: int
    ) -> tuple[list[int | None], list[Task]]:
        """Weight inheritance: each genome's parent row, and its task (with inheritance
        on, every task saves its state to ``states/<id>`` and an offspring starts from
        its parent's). A parent is the row that trained the genome the strategy names;
        one whose state is missing or invalid (not the parent spec's tensors, or not
        finite) gives no parent: the child trains from its own initialisation, which a
        resumed run decides the same way, since it holds the same state files."""
        parents: list[int | None] = [None] * len(genomes)
        if self.inherit:
            for i, g in enumerate(self.strategy.parents(genomes)):
                row = None if g is None else self.trained.get(_genome_id(self.space.to_json(g)))
                if row is not None and valid_state(self._stem(row.id), row.spec):
                    parents[i] = row.id
        tasks = []
        for i, (spec, parent) in enumerate(zip(specs, parents, strict=True)):
            seed, epochs = self.seed_for(spec, base + i, parent), self.epochs_for(spec)
            if not self.inherit:
                tasks.append(Task(spec, seed, epochs))
                continue
            stem = None if parent is None else str(self._stem(parent))
            tasks.append(Task(spec, seed, epochs, save=str(self._stem(base + i)), inherit=stem))
        return parents, tasks

    def _stem(self, eval_id: int) -> Path:
        return rf.state_stem(self.run_dir.resolve(), eval_id)

    def prune_states(self, everything: bool = False) -> None:
        """Delete saved states no member of the population needs (the batch in flight
        keeps its own); ``everything`` at the end of the search. Only evoae's files."""
        folder = self.run_dir / rf.STATES_DIR
        members = getattr(self.strategy, "population", None)
        if not self.inherit or folder.is_symlink() or not folder.is_dir():
            return  # a linked folder is not evoae's to empty
        if members is None and not everything:
            return
        keep = set()
        for g in () if everything else members:
            row = self.trained.get(_genome_id(self.space.to_json(g)))
            if row is not None:
                keep.add(row.id)
        for p in list(folder.iterdir()):
            m = _STATE_FILE.match(p.name)
            if m is None or p.is_symlink() or not p.is_file():
                continue
            n = int(m["id"])
            if everything or m["tmp"] or (n < self.next_id and n not in keep):
                p.unlink()
        if everything and not any(folder.iterdir()):
            folder.rmdir()

    def checkpoint(self) -> None:
        rf.write_json(
            self.run_dir / rf.CHECKPOINT,
            {
                "strategy": self.strategy.state_dict(),
                "next_id": self.next_id,
                "batches": self.batches,
                "history": strict_history(self.history),
                "trainings": self.trainings,
            },
        )

    def step(self, evaluator: Evaluator) -> None:
        genomes = self.strategy.ask()
        base = self.next_id
        plans = self.strategy.plan(genomes, base) or [None] * len(genomes)
        gen = self.strategy.progress()[0]
        specs = [self.space.decode(g) for g in genomes]
        parents, tasks_by_pos = self.inheritance(genomes, specs, base)
        keys = [
            self.cache_key(sp, epochs=None if p is None else p.epochs, parent=parent)
            for sp, p, parent in zip(specs, plans, parents, strict=True)
        ]
        rows: list[Row | None] = [None] * len(genomes)
        stored: set[int] = set()  # positions whose row is already in the journal
        to_train: dict[str, list[int]] = {}
        for i, (g, key) in enumerate(zip(genomes, keys, strict=True)):
            old = self.journal.get(base + i)
            if old is not None:  # written before a crash: replay, do not retrain
                try:
                    if old.genome != _jsonable(self.space.to_json(g)):
                        raise ValueError
                    # What it inherited is on record (its parent's state may be gone since).
                    plan = plans[i]
                    key = keys[i] = self.cache_key(
                        specs[i],
                        epochs=None if plan is None else plan.epochs,
                        parent=self._parent_id(old),
                    )
                except ValueError:
                    raise EvoaeError(
                        f"journal row {base + i} does not match the resumed search: the run folder "
                        "was modified or the settings differ; start a new run"
                    ) from None
                rows[i] = old
                stored.add(i)
                if not old.cached:
                    self.cache[key] = old
                    self.trainings += 1  # it was trained before the crash
                continue
            if not self.reevaluate and key in self.cache:
                rows[i] = self._row(base + i, gen, g, specs[i], self.cache[key], cached=True)
                continue
            slot = key if not self.reevaluate else f"{key}#{i}"
            to_train.setdefault(slot, []).append(i)
        leaders = [idx[0] for idx in to_train.values()]
        dups = {idx[0]: idx[1:] for idx in to_train.values()}
        tasks = [
            tasks_by_pos[i] if plans[i] is None else self._task(specs[i], base + i, plans[i])
            for i in leaders
        ]
        written = 0  # rows[:written] are in the journal

        def flush() -> None:
            # Rows are committed in id order, so the journal stays 0..n-1 whatever order
            # the trainings finish in: a kill leaves no gap for the resume to refuse.
            nonlocal written
            while written < len(rows) and rows[written] is not None:
                row = rows[written]
                assert row is not None
                if written not in stored:
                    self.journal.append(row)
                    kill_point("appended")
                    self._notify_evaluated(row)
                self._remember(row, keys[written])
                written += 1

        flush()
        for j, result in evaluator.evaluate(tasks) if tasks else ():
            i = leaders[j]
            if plans[i] is not None:
                result.terms["rung"] = float(plans[i].rung)  # type: ignore[union-attr]
            row = self._row(
                base + i, gen, genomes[i], specs[i], result, cached=False, seed=tasks[j].seed
            )
            if parents[i] is not None:
                row.terms["inherited_from"] = float(parents[i])
            kill_point("trained")
            self.trainings += 1
            rows[i] = row
            if not self.reevaluate:
                self.cache[keys[i]] = row
            for d in dups[i]:  # duplicates of a phenotype within one batch
                rows[d] = self._row(base + d, gen, genomes[d], specs[d], row, cached=True)
            flush()
        flush()
        assert written == len(rows)
        done = [r for r in rows if r is not None]
        self.next_id = base + len(genomes)
        self.batches += 1
        self.best = min([self.best, *(r.fitness for r in done)])
        self.strategy.tell(genomes, tell_values(self.strategy, done))
        self.history.append(self._history_row())
        self.checkpoint()
        live = self.strategy.live_states()
        if live is not None:  # after the checkpoint: a resume never needs what is deleted
            rf.prune_states(self.run_dir, live)
        self.prune_states()
        for r in self.reporters:
            r.generation(self.strategy.progress()[0], self.best)

    def _task(self, spec: dict[str, Any], eval_id: int, plan: Plan | None) -> Task:
        """The training of row ``eval_id``: the settings' epochs, or the strategy's plan
        (its epochs; continuing a saved state; saving its own). Seeds never depend on
        the plan, so a promotion continues with the seed of its first rung."""
        seed = self.seed_for(spec, eval_id)
        if plan is None:
            return Task(spec, seed, self.epochs_for(spec))
        resume = None if plan.resume is None else str(rf.state_stem(self.run_dir, plan.resume))
        save = None
        if plan.save:
            if not self.states_listed:  # runs whose manifest predates states/
                rf.add_to_manifest(self.run_dir, rf.STATES_DIR)
                self.states_listed = True
            save = str(rf.state_stem(self.run_dir, eval_id))
        return Task(spec, seed, int(plan.epochs), resume=resume, save=save)

    def _row(
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
            genome=_jsonable(self.space.to_json(genome)),
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
        )

    def _notify_evaluated(self, row: Row) -> None:
        for r in self.reporters:
            r.evaluated(row)

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


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x))


def _genome_id(genome: Any) -> str:
    return json.dumps(_jsonable(genome), sort_keys=True)


#: A saved state evoae wrote (``states/<id>.safetensors`` / ``.json``) or its temporary file.
_STATE_FILE = re.compile(r"^(?P<tmp>\.)?(?P<id>\d+)\.(safetensors|json)(?(tmp)\.tmp)$")


# ---------------------------------------------------------------- entry point


def search(
    dataset: str | None = None,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    reporters: Sequence[Reporter] = (),
    evaluator: Evaluator | None = None,
    data: Dataset | np.ndarray | tuple[Any, Any] | None = None,
    strategy: str | Strategy | None = None,
    objective: str | Objective | None = None,
    finish: bool = False,
    **settings: Any,
) -> SearchResult:
    """Evolve an autoencoder for ``dataset`` and return the retrained best.

    Parameters
    ----------
    dataset
        ``digits`` (bundled with scikit-learn, the default), ``mnist``, ``fashion-mnist``,
        or a path to ``.npy`` / ``.npz`` / ``.csv`` data.
    out
        Run folder. Default: a new folder named after dataset, model, code size and seed
        under ``$EVOAE_RUNS`` (else ``./runs``), never an existing one.
    overwrite, resume
        Replace an existing run in ``out``, or continue it (settings are read from the
        run; only budgets, ``final_epochs`` and execution options may change).
    finish
        With ``resume``: evaluate nothing more, retrain and save the best found so far.
    reporters
        Progress hooks (see :class:`evoae.report.progress.Reporter`).
    evaluator
        A ready evaluator to use instead of the one ``executor`` names.
    data
        In-memory data to search on instead of loading ``dataset``, which then only names
        it (default ``"<array>"``): a :class:`evoae.data.Dataset` (used as is), an array of
        rows ``(N, F)`` (min-max scaled per column) or images ``(N, H, W)`` /
        ``(N, C, H, W)`` (uint8 /255; kept if in [0, 1]), or a tuple ``(X, y)`` with
        labels; see :mod:`evoae.data.arrays`. Split 70/15/15 with the run seed.
    strategy
        A registered strategy name (``microbial``, the default; ``random``; see
        :data:`evoae.evolution.STRATEGIES`) whose options are passed as settings, or a
        ready :class:`evoae.evolution.Strategy` instance of any class.
    objective
        What candidates are scored on: a registered name (``recon``, the default) or an
        :class:`evoae.objectives.Objective` instance.
    **settings
        Settings by name: any field of the sections of
        :class:`evoae.settings.SearchSettings` (``code_size``, ``preset``, ``epochs``,
        ``seed``...) or an option of the strategy (``population``, ``generations``...).

    Returns
    -------
    SearchResult
        Best genome and spec, the retrained model, figures and history.

    Examples
    --------
    >>> result = evoae.search("digits", code_size=4, generations=10)  # doctest: +SKIP
    >>> result.model.encode(result.model.preprocess(raw_rows))  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    arm_forward()  # a no-op outside the kill tests
    instance = strategy if isinstance(strategy, Strategy) else None
    if strategy is not None and instance is None and not isinstance(strategy, str):
        raise EvoaeError(
            f"strategy must be a registered name or a Strategy instance, got {strategy!r}"
        )
    obj_instance = objective if isinstance(objective, Objective) else None
    if objective is not None and obj_instance is None:
        settings["objective"] = objective
    elif obj_instance is not None:
        settings.pop("objective", None)
    if finish and not resume:
        raise EvoaeError("finish ends an existing run: pass it with resume=True (or --resume)")
    if resume:
        if out is None:
            raise EvoaeError("--resume needs the run folder to continue")
        run_dir = Path(out)
        s = _resumed_settings(run_dir, dataset, settings, strategy, obj_instance)
    else:
        name = _strategy_name(strategy)
        default = "digits" if data is None else "<array>"
        given = {"dataset": dataset if dataset is not None else default, **settings}
        for count, floor in (("epochs", "min_steps"), ("final_epochs", "final_min_steps")):
            # An epoch count the user sets is what trains: its step floor is then off
            # unless the user sets that too.
            if given.get(count) is not None and given.get(floor) is None:
                given[floor] = 0
        if instance is not None:
            s = SearchSettings.from_flat(given, strategy="", strict=True)
            s.strategy = StrategySettings(name, _jsonable(instance.options_dict()))
        else:
            evolution.strategy_class(name)
            s = SearchSettings.from_flat(given, strategy=name)
        if obj_instance is not None:
            s.training.objective = obj_instance.name
    s.validate()
    s.refuse_ignored(settings)
    resolve_device(s.execution.device)
    if resume and data is None and s.data.dataset.startswith("<"):
        raise EvoaeError(
            f"run {out} was made from in-memory data: it cannot be resumed from the CLI"
        )
    obj = obj_instance if obj_instance is not None else make_objective(s.training.objective)
    splits = load_splits(**asdict(s.data), seed=s.seed, data=data)
    if obj.needs_labels and (splits.train.y is None or splits.val.y is None):
        raise EvoaeError(
            f"objective {obj.name} needs labels but dataset {s.data.dataset!r} has none: "
            "use labelled data (MNIST, .npz with y, CSV --label-column) or --objective recon"
        )
    obj.check_labels(splits.val.y)
    space = make_space(
        s.space.model,
        s.space.preset,
        splits.train,
        s.space.code_size,
        **s.space_options(),
    )
    strat = (
        instance
        if instance is not None
        else evolution.make_strategy(s.strategy.name, space, s.strategy.options, seed=s.seed)
    )
    if instance is not None and instance.space is not space:
        instance.space = space  # the user's strategy searches the space of this run
    f = s.fidelity
    if f.fidelity == "asha" and getattr(strat.options, "inherit", False):
        raise EvoaeError(
            "--inherit cannot be combined with --fidelity asha (a promotion continues its "
            "own state, an offspring its parent's): drop one of them"
        )
    if f.fidelity == "asha":  # the stored options stay the strategy's own (see Asha.around)
        strat = Asha.around(
            strat,
            seed=s.seed,
            epochs=s.training.epochs,
            min_epochs=f.min_epochs,
            eta=f.eta,
            max_epochs=f.max_epochs,
            epoch_budget=f.epoch_budget,
            rebuild=instance is None,
        )
    strat.add_seeds(space.seed_genomes())  # the PCA seed of dense spaces
    s.strategy.options = _jsonable(strat.options_dict())  # stored in full, defaults included
    fingerprint = _data_fingerprint(splits)
    if resume:
        _check_resumed_run(run_dir, space, fingerprint, obj)
    # Everything that can refuse the input is checked before the run folder is touched.
    own = evaluator is None
    if own:
        ex = s.execution
        evaluator = make_evaluator(
            ex.executor,
            splits.train,
            splits.val,
            device=ex.device,
            objective=obj,
            workers=ex.workers,
            threads=ex.threads,
            ray_address=ex.ray_address,
            parallelism=strat.parallelism,
        )
    try:
        if not resume:
            target = out if out is not None else rf.default_out(runs_root(), _run_name(s))
            run_dir = rf.prepare_new(target, overwrite=overwrite)
        reps = [*reporters, PlotReporter()]
        return _run(
            s,
            space,
            strat,
            obj,
            evaluator,
            splits,
            run_dir,
            resume,
            fingerprint,
            reps,
            t0,
            finish=finish,
        )
    finally:
        if own:
            evaluator.close()


def _strategy_name(strategy: str | Strategy | None) -> str:
    if strategy is None:
        return "microbial"
    if isinstance(strategy, Strategy):
        return strategy.name or type(strategy).__name__
    return strategy


#: errno values that mean the run folder cannot be written: an environment problem.
_WRITE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EIO,
    errno.EFBIG,
}


def _run(
    s: SearchSettings,
    space: Space,
    strategy: Strategy,
    objective: Objective,
    evaluator: Evaluator,
    splits: Splits,
    run_dir: Path,
    resume: bool,
    fingerprint: str,
    reporters: Sequence[Reporter],
    t0: float,
    *,
    finish: bool = False,
) -> SearchResult:
    """The loop and the final training in a ready run folder; write failures end it cleanly.

    A full disk (or a folder gone read-only) stops the run with an :class:`EvoaeError`:
    every evaluation committed so far stays in the journal (SQLite rolls back a write it
    could not finish) and the checkpoint is the last one fully renamed, so the run can
    be resumed once there is room.
    """
    journal = Journal(run_dir / rf.JOURNAL, create=not resume)
    try:
        loop = _Loop(s, space, strategy, objective, journal, run_dir, reporters, len(splits.train))
        if resume:
            # A run killed before its first checkpoint has none: it replays from the start.
            if (run_dir / rf.CHECKPOINT).exists():
                ckpt = rf.read_json(run_dir / rf.CHECKPOINT, "checkpoint")
                try:
                    loop.restore(ckpt)
                except (KeyError, TypeError, ValueError, AttributeError) as e:
                    raise EvoaeError(
                        f"checkpoint {run_dir / rf.CHECKPOINT} is corrupted ({e!r}): "
                        "the run cannot be resumed; start a new run"
                    ) from None
            rf.remove_stale_temps(run_dir)
        stored = s.to_dict()
        journal.set_meta("settings", stored)  # on resume: the extended budget
        if not resume:
            journal.set_meta("space", space.config())
            journal.set_meta("data_sha256", fingerprint)
            journal.set_meta("objective", objective.config())
        rf.write_json(run_dir / rf.SETTINGS, stored)
        if loop.inherit:  # a run made before states/ existed does not list it yet
            rf.add_to_manifest(run_dir, rf.STATES_DIR)
        done, total = strategy.progress()
        for r in reporters:
            r.start(total, done, stored, unit=strategy.unit, evaluations=loop.next_id)
        budget = s.execution.time_budget
        started = time.monotonic()
        stopped = "budget"
        while not strategy.done:
            if finish:
                stopped = "finished early"
                break
            over = budget is not None and time.monotonic() - started >= budget
            if over and loop.next_id > 0:  # at least one batch: something to retrain
                stopped = "time budget"
                break
            loop.step(evaluator)
        loop.prune_states(everything=True)
        result = retrain_best(
            s,
            space,
            objective,
            loop.journal,
            loop.history,
            splits,
            run_dir,
            n_evaluations=loop.next_id,
            n_trainings=loop.trainings,
            t0=t0,
            phenotype_key=loop.phenotype_key,
            reporters=reporters,
        )
        result.stopped = stopped
        result.executor = getattr(evaluator, "choice", "") or s.execution.executor
        for r in reporters:
            r.finished(result, splits)
        rf.write_json(run_dir / rf.SUMMARY, result.summary())
        return result
    except OSError as e:
        if e.errno not in _WRITE_ERRNOS:
            raise
        raise EvoaeError(
            f"cannot write to run folder {run_dir} ({e.strerror}); finished evaluations are "
            f"safe in the journal: fix the disk or folder, then continue with --resume {run_dir}"
        ) from None
    except sqlite3.OperationalError as e:
        raise EvoaeError(
            f"cannot write the run journal in {run_dir} ({e}); finished evaluations are safe: "
            f"fix the disk or folder, then continue with --resume {run_dir}"
        ) from None
    finally:
        journal.close()
        for r in reporters:
            r.end()


def _data_fingerprint(splits: Splits) -> str:
    """SHA-256 of the training and validation data: a resume must see the same bytes."""
    h = hashlib.sha256()
    for x in (splits.train.x, splits.val.x):
        h.update(str(x.shape).encode())
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def _check_resumed_run(run_dir: Path, space: Space, fingerprint: str, obj: Objective) -> None:
    """Refuse to resume when the data, the space or the objective are not the run's own."""
    with Journal(run_dir / rf.JOURNAL, readonly=True) as j:
        stored_space = j.get_meta("space")
        stored_data = j.get_meta("data_sha256")
        stored_obj = j.get_meta("objective")
    if stored_space is not None and stored_space != _jsonable(space.config()):
        raise EvoaeError(
            f"the search space of run {run_dir} differs from the one these settings give "
            "(the data shape or evoae's space definition changed): start a new run"
        )
    if stored_data is not None and stored_data != fingerprint:
        raise EvoaeError(
            f"the data of run {run_dir} changed since it started (its SHA-256 differs): "
            "restore the original data or start a new run"
        )
    if stored_obj is not None and stored_obj != _jsonable(obj.config()):
        raise EvoaeError(
            f"run {run_dir} was scored with objective {stored_obj!r}, not {obj.config()!r}: "
            "pass the run's own objective to resume it"
        )


def runs_root() -> Path:
    """Where runs go without ``out``: ``$EVOAE_RUNS``, else ``./runs``."""
    return Path(os.environ.get("EVOAE_RUNS") or "runs")


def _run_name(s: SearchSettings) -> str:
    d = s.data.dataset
    name = Path(d).stem if d not in ("digits", "mnist", "fashion-mnist") else d
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name.strip("<>")) or "data"
    return f"{name}-{s.space.model}-code{s.space.code_size}-seed{s.seed}"


def _resumed_settings(
    run_dir: Path,
    dataset: str | None,
    overrides: dict[str, Any],
    strategy: str | Strategy | None,
    objective: Objective | None,
) -> SearchSettings:
    """The run's stored settings with the changes a resume allows (budgets may grow,
    execution options and final epochs may change); anything else must match."""
    if not rf.is_run(run_dir):
        raise EvoaeError(
            f"{run_dir} is not an evoae run folder (no {rf.JOURNAL}): nothing to resume"
        )
    rf.check_writable(run_dir)
    with Journal(run_dir / rf.JOURNAL, readonly=True) as j:
        raw = j.get_meta("settings")
    if not isinstance(raw, dict):
        raise EvoaeError(f"{run_dir / rf.JOURNAL} holds no settings: the journal is corrupted")
    try:
        s = SearchSettings.from_dict(raw)
    except EvoaeError as e:
        where = run_dir / rf.JOURNAL
        raise EvoaeError(f"the settings stored in {where} are invalid ({e})") from None
    name = _strategy_name(strategy) if strategy is not None else s.strategy.name
    if name != s.strategy.name:
        raise EvoaeError(
            f"run {run_dir} was searched with strategy {s.strategy.name}, not {name}: "
            "resume it with its own strategy"
        )
    if isinstance(strategy, Strategy):
        options_cls = type(strategy.options)
    else:
        options_cls = evolution.strategy_class(name).Options
    stored_flat = s.flat()
    given = dict(overrides)
    if dataset is not None:
        given["dataset"] = dataset
    if objective is not None:
        given["objective"] = objective.name
    if isinstance(strategy, Strategy):  # a user's instance: its options follow the same rules
        given.update(_jsonable(strategy.options_dict()))
    rules = _resume_rules(options_cls)
    for key, value in given.items():
        if value is None:
            continue
        if key not in stored_flat:
            raise EvoaeError(f"unknown search setting {key!r}")
        rule = rules.get(key)
        old = stored_flat[key]
        if rule == "grows":
            if old is not None and value < old:
                raise EvoaeError(
                    f"cannot shrink the budget on resume ({key} {old} -> {value}): "
                    "pass the same or more"
                )
        elif rule != "free" and old != value:
            raise EvoaeError(
                f"cannot change {key.replace('_', ' ')} on resume (run has {old!r}, "
                f"asked {value!r}): start a new run instead"
            )
        _set_flat(s, key, value)
    s.validate()
    return s


def _resume_rules(options_cls: type) -> dict[str, str]:
    """Flat setting name -> "grows" (a budget) or "free" (may change on resume)."""
    from evoae.options import options_of
    from evoae.settings import SECTIONS

    rules: dict[str, str] = {}
    for cls in (*SECTIONS.values(), options_cls):
        for f in options_of(cls):
            if f.metadata["grows"]:
                rules[f.name] = "grows"
            elif f.metadata["resumable"]:
                rules[f.name] = "free"
    return rules


def _set_flat(s: SearchSettings, key: str, value: Any) -> None:
    from evoae.settings import SECTIONS

    for name, cls in SECTIONS.items():
        if key in {f.name for f in fields(cls)}:
            setattr(getattr(s, name), key, value)
            return
    if key == "seed":
        s.seed = value
    elif key == "space_options":
        s.space.options = dict(value)
    else:
        s.strategy.options[key] = value
