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
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evoae.data import Dataset, Splits, load_dataset, load_test_dataset, random_split, seed_split
from evoae.errors import EvoaeError
from evoae.evolution import MicrobialGA, Strategy
from evoae.models.io import save_model
from evoae.report import PLOT_HOOKS
from evoae.report.plots import plot_fitness, plot_reconstructions
from evoae.report.progress import Reporter
from evoae.runs import folder as rf
from evoae.runs.journal import Journal, Row
from evoae.runs.killpoints import arm_forward, kill_point
from evoae.spaces import SPACE_FACTORIES, Space, make_space, spec_key
from evoae.training import Evaluator, Result, Task, make_evaluator, train_candidate
from evoae.training.evaluator import as_tensor, resolve_device
from evoae.training.trainer import evaluate as evaluate_model

#: Settings that may change when a run is resumed; every other one must match.
RESUMABLE = (
    "generations",
    "final_epochs",
    "device",
    "executor",
    "workers",
    "ray_address",
    "download",
)


@dataclass
class SearchSettings:
    """Everything that defines a search. JSON-able; stored in the run folder."""

    dataset: str = "digits"
    data_dir: str | None = None
    image_size: int | None = None
    limit: int | None = None
    split: str = "auto"
    model: str = "dense"
    preset: str = "seed"
    code_size: int = 4
    max_depth: int | None = None
    space_options: dict[str, Any] = field(default_factory=dict)
    population: int = 20
    generations: int = 100
    deme: int = 5
    recombination: float = 0.5
    mutation: float | None = None
    concurrent: int = 1
    reevaluate: bool = False
    epochs: int = 2
    final_epochs: int = 20
    seed: int = 0
    device: str = "cpu"
    executor: str = "inline"
    workers: int | None = None
    ray_address: str | None = None
    download: bool = False

    def validate(self) -> None:
        for name in ("population", "epochs", "deme", "concurrent"):
            if getattr(self, name) < 1:
                raise EvoaeError(
                    f"{name.replace('_', ' ')} must be at least 1, got {getattr(self, name)}"
                )
        if self.generations < 0:
            raise EvoaeError(f"generations must be 0 or more, got {self.generations}")
        if self.final_epochs < 0:
            raise EvoaeError(f"final epochs must be 0 or more, got {self.final_epochs}")
        if self.code_size < 1:
            raise EvoaeError(f"code size must be at least 1, got {self.code_size}")
        if self.limit is not None and self.limit < 1:
            raise EvoaeError(f"limit must be at least 1, got {self.limit}")
        if self.image_size is not None and self.image_size < 1:
            raise EvoaeError(f"image size must be at least 1, got {self.image_size}")
        if self.split not in ("auto", "seed", "random"):
            raise EvoaeError(f"unknown split {self.split!r}: choose auto, seed or random")
        if self.model not in SPACE_FACTORIES:
            raise EvoaeError(
                f"unknown model {self.model!r}: choose from {', '.join(SPACE_FACTORIES)}"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


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
            "settings": asdict(self.settings),
            "history": _strict_history(self.history),
        }


# ---------------------------------------------------------------- data and space


def load_splits(s: SearchSettings, data: Dataset | None = None) -> Splits:
    """The train / validation / test splits a search uses.

    ``auto`` is the published protocol for MNIST and Fashion-MNIST (first 15,000 images
    at 16x16 unless ``image_size`` says otherwise: 10,000 train, 5,000 validation; the
    official test set as test) and a seeded 70/15/15 split for everything else.
    """
    if data is not None:
        return random_split(data, val_fraction=0.15, test_fraction=0.15, seed=s.seed)
    mnist_like = s.dataset in ("mnist", "fashion-mnist")
    split = s.split if s.split != "auto" else ("seed" if mnist_like else "random")
    size = s.image_size if s.image_size is not None else (16 if mnist_like else None)
    hw = None if size is None else (size, size)
    limit = s.limit if s.limit is not None else (15_000 if split == "seed" else None)
    ds = load_dataset(
        s.dataset, data_dir=s.data_dir, image_size=hw, limit=limit, download=s.download
    )
    test = load_test_dataset(s.dataset, data_dir=s.data_dir, image_size=hw) if mnist_like else None
    if split == "seed":
        n_val = min(5_000, len(ds) // 3) if s.limit is not None else 5_000
        n_train = len(ds) - n_val if s.limit is not None else 10_000
        return seed_split(ds, n_train=n_train, n_val=n_val, test=test)
    return random_split(ds, val_fraction=0.15, test_fraction=0.15, seed=s.seed, test=test)


def make_strategy(s: SearchSettings, space: Space) -> Strategy:
    return MicrobialGA(
        space,
        population=s.population,
        generations=s.generations,
        deme=s.deme,
        recombination=s.recombination,
        mutation=s.mutation,
        concurrent=s.concurrent,
        reevaluate=s.reevaluate,
        seed=s.seed,
    )


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any JSON-able parts; stable across machines and Python runs."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


# ---------------------------------------------------------------- the loop


class _Loop:
    """One search's mutable state: journal position, phenotype cache, history."""

    def __init__(
        self,
        s: SearchSettings,
        space: Space,
        strategy: Strategy,
        journal: Journal,
        run_dir: Path,
        reporters: Sequence[Reporter],
    ) -> None:
        self.s, self.space, self.strategy, self.journal = s, space, strategy, journal
        self.run_dir = run_dir
        self.reporters = reporters
        self.next_id = 0
        self.cache: dict[str, Row] = {}
        self.history: list[dict[str, float]] = []
        self.trainings = 0

    def cache_key(self, spec: dict[str, Any]) -> str:
        return spec_key({"spec": spec, "epochs": self.s.epochs})

    def seed_for(self, key: str, eval_id: int) -> int:
        if self.s.reevaluate:
            return derive_seed(self.s.seed, key, eval_id)
        return derive_seed(self.s.seed, key)

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.strategy.load_state_dict(ckpt["strategy"])
        self.next_id = int(ckpt["next_id"])
        self.history = [
            {k: math.inf if v is None else v for k, v in row.items()} for row in ckpt["history"]
        ]
        self.trainings = int(ckpt["trainings"])
        for row in self.journal.rows():
            if row.id < self.next_id and not row.cached:
                self.cache[self.cache_key(row.spec)] = row

    def checkpoint(self) -> None:
        rf.write_json(
            self.run_dir / rf.CHECKPOINT,
            {
                "strategy": self.strategy.state_dict(),
                "next_id": self.next_id,
                "history": _strict_history(self.history),
                "trainings": self.trainings,
            },
        )

    def step(self, evaluator: Evaluator) -> None:
        genomes = self.strategy.ask()
        base = self.next_id
        gen = self.strategy.generation
        specs = [self.space.decode(g) for g in genomes]
        keys = [self.cache_key(sp) for sp in specs]
        rows: list[Row | None] = [None] * len(genomes)
        stored: set[int] = set()  # positions whose row is already in the journal
        to_train: dict[str, list[int]] = {}
        for i, (g, key) in enumerate(zip(genomes, keys, strict=True)):
            old = self.journal.get(base + i)
            if old is not None:  # written before a crash: replay, do not retrain
                if old.genome != _jsonable(self.space.to_json(g)):
                    raise EvoaeError(
                        f"journal row {base + i} does not match the resumed search: the run folder "
                        "was modified or the settings differ; start a new run"
                    )
                rows[i] = old
                stored.add(i)
                if not old.cached:
                    self.cache[key] = old
                    self.trainings += 1  # it was trained before the crash
                continue
            if not self.s.reevaluate and key in self.cache:
                rows[i] = self._row(base + i, gen, g, specs[i], self.cache[key], cached=True)
                continue
            slot = key if not self.s.reevaluate else f"{key}#{i}"
            to_train.setdefault(slot, []).append(i)
        leaders = [idx[0] for idx in to_train.values()]
        tasks = [Task(specs[i], self.seed_for(keys[i], base + i), self.s.epochs) for i in leaders]
        for j, result in evaluator.evaluate(tasks) if tasks else ():
            i = leaders[j]
            row = self._row(
                base + i, gen, genomes[i], specs[i], result, cached=False, seed=tasks[j].seed
            )
            kill_point("trained")
            self.journal.append(row)
            kill_point("appended")
            self.trainings += 1
            rows[i] = row
            stored.add(i)
            if not self.s.reevaluate:
                self.cache[keys[i]] = row
            self._notify_evaluated(row)
        for idx in to_train.values():  # duplicates of a phenotype within one batch
            for i in idx[1:]:
                rows[i] = self._row(base + i, gen, genomes[i], specs[i], rows[idx[0]], cached=True)
        for i, row in enumerate(rows):
            assert row is not None
            if i not in stored:
                self.journal.append(row)
                kill_point("appended")
                self._notify_evaluated(row)
        self.next_id = base + len(genomes)
        self.strategy.tell(genomes, [r.fitness for r in rows])  # type: ignore[union-attr]
        self.history.append(self._history_row())
        self.checkpoint()
        for r in self.reporters:
            r.generation(self.strategy.generation, self.strategy.best_fitness)

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
        fit = np.array([f for f in self.strategy.population_fitness() if math.isfinite(f)])
        row = {
            "generation": self.strategy.generation,
            "evaluations": self.next_id,
            "best": self.strategy.best_fitness,
        }
        if fit.size:
            q25, med, q75 = np.percentile(fit, [25, 50, 75])
            row.update(median=float(med), q25=float(q25), q75=float(q75), min=float(fit.min()))
        return row


def _strict_history(history: list[dict[str, float]]) -> list[dict[str, float | None]]:
    """History rows for JSON files: an infinite "best" (every candidate failed) as null."""
    return [{k: v if math.isfinite(v) else None for k, v in row.items()} for row in history]


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x))


# ---------------------------------------------------------------- entry point


def search(
    dataset: str = "digits",
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    reporters: Sequence[Reporter] = (),
    evaluator: Evaluator | None = None,
    data: Dataset | None = None,
    **settings: Any,
) -> SearchResult:
    """Evolve an autoencoder for ``dataset`` and return the retrained best.

    Parameters
    ----------
    dataset
        ``digits`` (bundled with scikit-learn, the default), ``mnist``, ``fashion-mnist``,
        or a path to ``.npy`` / ``.npz`` / ``.csv`` data.
    out
        Run folder. Default: a new folder under ``runs/``.
    overwrite, resume
        Replace an existing run in ``out``, or continue it (settings are read from the
        run; only ``generations``, ``final_epochs`` and execution options may change).
    reporters
        Progress hooks (see :class:`evoae.report.progress.Reporter`).
    evaluator
        A ready evaluator to use instead of the one ``executor`` names.
    data
        In-memory data (a :class:`evoae.data.Dataset`) to search on instead of loading
        ``dataset``, which then only names it; split 70/15/15 with the run seed.
    **settings
        Any field of :class:`SearchSettings` (``code_size``, ``preset``, ``population``,
        ``generations``, ``epochs``, ``seed``...).

    Returns
    -------
    SearchResult
        Best genome and spec, the retrained model, figures and history.

    Examples
    --------
    >>> result = evoae.search("digits", code_size=4, generations=10)  # doctest: +SKIP
    >>> result.model.encode(x)  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    arm_forward()  # a no-op outside the kill tests
    if resume:
        if out is None:
            raise EvoaeError("--resume needs the run folder to continue")
        run_dir = Path(out)
        s = _resumed_settings(run_dir, dataset, settings)
    else:
        s = SearchSettings.from_dict({"dataset": dataset, **settings})
        unknown = set(settings) - {f.name for f in fields(SearchSettings)}
        if unknown:
            raise EvoaeError(f"unknown search setting(s): {', '.join(sorted(unknown))}")
    s.validate()
    resolve_device(s.device)
    if resume and data is None and s.dataset.startswith("<"):
        raise EvoaeError(
            f"run {out} was made from in-memory data: it cannot be resumed from the CLI"
        )
    splits = load_splits(s, data)
    space = make_space(
        s.model,
        s.preset,
        splits.train,
        s.code_size,
        **{"max_depth": s.max_depth, **s.space_options},
    )
    strategy = make_strategy(s, space)
    fingerprint = _data_fingerprint(splits)
    if resume:
        _check_resumed_run(run_dir, space, fingerprint)
    # Everything that can refuse the input is checked before the run folder is touched.
    own = evaluator is None
    if own:
        evaluator = make_evaluator(
            s.executor,
            splits.train.x,
            splits.val.x,
            device=s.device,
            workers=s.workers,
            ray_address=s.ray_address,
        )
    try:
        if not resume:
            target = out if out is not None else rf.default_out("runs", _run_name(s))
            run_dir = rf.prepare_new(target, overwrite=overwrite)
        return _run(
            s, space, strategy, evaluator, splits, run_dir, resume, fingerprint, reporters, t0
        )
    finally:
        if own:
            evaluator.close()


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
    evaluator: Evaluator,
    splits: Splits,
    run_dir: Path,
    resume: bool,
    fingerprint: str,
    reporters: Sequence[Reporter],
    t0: float,
) -> SearchResult:
    """The loop and the final training in a ready run folder; write failures end it cleanly.

    A full disk (or a folder gone read-only) stops the run with an :class:`EvoaeError`:
    every evaluation committed so far stays in the journal (SQLite rolls back a write it
    could not finish) and the checkpoint is the last one fully renamed, so the run can
    be resumed once there is room.
    """
    journal = Journal(run_dir / rf.JOURNAL, create=not resume)
    try:
        loop = _Loop(s, space, strategy, journal, run_dir, reporters)
        if resume:
            # A run killed before its first checkpoint has none: it replays from the start.
            if (run_dir / rf.CHECKPOINT).exists():
                ckpt = rf.read_json(run_dir / rf.CHECKPOINT, "checkpoint")
                try:
                    loop.restore(ckpt)
                except (KeyError, TypeError, ValueError) as e:
                    raise EvoaeError(
                        f"checkpoint {run_dir / rf.CHECKPOINT} is corrupted ({e!r}): "
                        "the run cannot be resumed; start a new run"
                    ) from None
            rf.remove_stale_temps(run_dir)
        journal.set_meta("settings", asdict(s))  # on resume: the extended budget
        if not resume:
            journal.set_meta("space", space.config())
            journal.set_meta("data_sha256", fingerprint)
        rf.write_json(run_dir / rf.SETTINGS, asdict(s))
        for r in reporters:
            r.start(s.generations, strategy.generation if strategy.population else 0, asdict(s))
        while not strategy.done:
            loop.step(evaluator)
        for r in reporters:
            r.phase("final training")
        return _finish(s, space, strategy, loop, splits, run_dir, t0)
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


def _check_resumed_run(run_dir: Path, space: Space, fingerprint: str) -> None:
    """Refuse to resume when the data or the search space are not the run's own."""
    with Journal(run_dir / rf.JOURNAL, readonly=True) as j:
        stored_space = j.get_meta("space")
        stored_data = j.get_meta("data_sha256")
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


def _run_name(s: SearchSettings) -> str:
    name = (
        Path(s.dataset).stem if s.dataset not in ("digits", "mnist", "fashion-mnist") else s.dataset
    )
    return f"{name}-{s.model}-{s.preset}-seed{s.seed}"


def _resumed_settings(
    run_dir: Path, dataset: str | None, overrides: dict[str, Any]
) -> SearchSettings:
    if not rf.is_run(run_dir):
        raise EvoaeError(
            f"{run_dir} is not an evoae run folder (no {rf.JOURNAL}): nothing to resume"
        )
    rf.check_writable(run_dir)
    with Journal(run_dir / rf.JOURNAL, readonly=True) as j:
        stored = j.get_meta("settings")
    if not isinstance(stored, dict):
        raise EvoaeError(f"{run_dir / rf.JOURNAL} holds no settings: the journal is corrupted")
    s = SearchSettings.from_dict(stored)
    given = dict(overrides)
    if dataset is not None:
        given["dataset"] = dataset
    for key, value in given.items():
        if value is None or key in RESUMABLE:
            continue
        if key in stored and stored[key] != value:
            raise EvoaeError(
                f"cannot change {key.replace('_', ' ')} on resume (run has {stored[key]!r}, "
                f"asked {value!r}): start a new run instead"
            )
    for key in RESUMABLE:
        if given.get(key) is not None:
            setattr(s, key, given[key])
    if s.generations < int(stored.get("generations", 0)):
        raise EvoaeError(
            f"cannot shrink the budget on resume ({stored['generations']} -> {s.generations} "
            "generations): pass the same or more"
        )
    return s


def _finish(
    s: SearchSettings,
    space: Space,
    strategy: Strategy,
    loop: _Loop,
    splits: Splits,
    run_dir: Path,
    t0: float,
) -> SearchResult:
    best = loop.journal.best()
    if best is None:
        raise EvoaeError(
            "every candidate failed to train: try other settings (e.g. fewer epochs, a lower "
            "learning rate range) or check the data"
        )
    genome = space.from_json(best.genome)
    spec = space.decode(genome)
    device = resolve_device(s.device)
    x_train = as_tensor(splits.train.x, device)
    x_val = as_tensor(splits.val.x, device)
    final_seed = derive_seed(s.seed, "final", loop.cache_key(spec))
    final_result, model = train_candidate(
        spec, x_train, x_val, epochs=s.final_epochs, seed=final_seed
    )
    if final_result.status != "ok":  # never save NaN weights as the run's model
        raise EvoaeError(
            f"retraining the best candidate (evaluation {best.id}) for {s.final_epochs} epochs "
            f"failed ({final_result.error}); the search is saved: resume with fewer "
            "--final-epochs"
        )
    final: dict[str, Any] = {
        "epochs": s.final_epochs,
        "val_loss": final_result.val_loss,
        "train_loss": final_result.train_loss,
        "terms": final_result.terms,
        "params": final_result.params,
        "seconds": final_result.seconds,
        "status": final_result.status,
    }
    if splits.test is not None and final_result.status == "ok":
        final["test_loss"] = evaluate_model(model, as_tensor(splits.test.x, device))["loss"]
    model = model.cpu().eval()
    genome_json = space.to_json(genome)
    save_model(
        model,
        run_dir / rf.MODEL_DIR,
        space=space.config(),
        genome=_jsonable(genome_json),
        metrics={
            "search_fitness": best.fitness,
            **{k: v for k, v in final.items() if k != "terms"},
        },
    )
    rf.write_json(
        run_dir / rf.BEST_GENOME,
        {
            "genome": _jsonable(genome_json),
            "spec": spec,
            "fitness": best.fitness,
            "evaluation": best.id,
        },
    )
    plots = run_dir / rf.PLOTS_DIR
    plot_fitness(loop.history, plots / "fitness.png", ylabel=f"validation loss ({s.epochs} epochs)")
    n = min(10, len(splits.val))
    with torch.no_grad():
        originals = splits.val.x[:n]
        # The posterior mean for VAEs: the plot shows what the model encodes, not one sample.
        recons = model.reconstruct(torch.as_tensor(originals)).numpy()
    plot_reconstructions(
        originals,
        recons,
        plots / "reconstructions.png",
        image_shape=splits.val.image_shape,
        title=f"best model after {s.final_epochs} epochs",
    )
    for extra in PLOT_HOOKS.get(spec["family"], ()):
        extra(model, splits, plots)
    result = SearchResult(
        run_dir=run_dir,
        best_genome=_jsonable(genome_json),
        best_spec=spec,
        best_fitness=best.fitness,
        final=final,
        model=model,
        history=loop.history,
        n_evaluations=loop.next_id,
        n_trainings=loop.trainings,
        seconds=time.perf_counter() - t0,
        settings=s,
    )
    rf.write_json(run_dir / rf.SUMMARY, result.summary())
    return result
