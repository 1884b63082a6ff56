"""After the search: retrain the best candidate, score it, save it, build the result.

:func:`retrain_best` is the one place a :class:`SearchResult` is assembled; plots and
summaries are drawn by reporters from it.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import BrokenExecutor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from torch import nn

from evoae.data import Splits
from evoae.errors import EvoaeError
from evoae.families import describe, get_family, space_from_config
from evoae.families import fallback as family_fallback
from evoae.families.io import save_model
from evoae.models import count_params
from evoae.models.pca import pca_val_loss
from evoae.models.vae import final_figures
from evoae.objectives import EvalSplit, Objective, make_objective
from evoae.runs import folder as rf
from evoae.runs.curves import downsample
from evoae.runs.journal import Journal, Row
from evoae.runs.reader import best_row, check_data, pareto_front, read_run
from evoae.seeds import derive_seed
from evoae.settings import SearchSettings
from evoae.spaces import Space, spec_key
from evoae.training import Evaluator, Result, train_candidate
from evoae.training.budget import (
    EPOCH_CAP,
    PLATEAU,
    TIME_CAP,
    epochs_for,
    plateau_epochs,
    steps_per_epoch,
)
from evoae.training.evaluator import as_tensor, resolve_device
from evoae.training.pbt import pbt_train
from evoae.training.rungs import BadState, continue_candidate
from evoae.training.threads import torch_threads
from evoae.training.trainer import as_split, evaluate, make_result


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
    #: What the search spent before the final stage (:func:`search_spent`).
    spent: dict[str, Any] | None = None
    #: The journal id of the returned model's candidate (:mod:`evoae.runs.best`).
    best_evaluation: int | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "best_genome": self.best_genome,
            "best_spec": self.best_spec,
            "best_fitness": self.best_fitness,
            "best_evaluation": self.best_evaluation,
            "final": self.final,
            "n_evaluations": self.n_evaluations,
            "n_trainings": self.n_trainings,
            "seconds": self.seconds,
            "settings": self.settings.to_dict(),
            "history": strict_history(self.history),
            "stopped": self.stopped,
            "executor": self.executor,
            "spent": self.spent,
        }


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
    deadline: float | None = None,
    search_seconds: float | None = None,
    evaluator: Evaluator | None = None,
) -> SearchResult:
    """Retrain the search's best candidates, keep the best on validation, compare it with
    PCA, test it and save it.

    The finalists (:func:`finalists`: the ``final_candidates`` best architectures) each
    train at most ``max(final_epochs, epochs for final_min_steps)`` epochs, continuing
    the state the search saved of them (``final_continue``; from scratch without one); with
    ``final_patience`` a validation plateau cuts the learning rate (``final_lr_cuts``
    times) and then stops the training, and the best weights are kept.
    ``final["candidates"]`` lists the finalists and which was kept. ``final["pca_val_loss"]`` is
    PCA's validation MSE at the same code size (fit on the training split) when the
    family's loss is that MSE; with ``pca_fallback``, a dense model worse than PCA is
    replaced by the PCA-initialised linear autoencoder (``final["fallback"] = "pca"``).
    A diverging retraining is an error (the search itself stays saved): a NaN model is
    never written as the run's model.

    With a ``deadline`` (:func:`time.perf_counter` time; the time budget) every final
    training stops by it; each finalist gets an equal share of the time left. An
    ``evaluator`` with worker processes (the search's process pool) trains one other
    finalist per worker there while this process trains the rest (under a deadline each
    gets the same share of the time, on workers already started); the models are those
    of one training after another.
    ``final["stop"]`` says what ended the kept model's training ("plateau":
    ``final["converged"]``; "epochs" or "time budget": a cap), beside the epochs,
    optimizer steps and seconds it spent.
    """
    best = _best_or_refuse(journal, n_evaluations, run_dir)
    device = resolve_device(s.execution.device)
    train, val = as_split(splits.train, device), as_split(splits.val, device)
    if search_seconds is None:
        search_seconds = time.perf_counter() - t0
    spent = search_spent(s, journal, len(splits.train.x), search_seconds)
    ctx = _Final(s, space, objective, phenotype_key, train, val, run_dir, deadline)
    pick, candidates = _retrain(ctx, journal, best, reporters, evaluator)
    family = get_family(pick.spec["family"])
    pca_loss = _pca_loss(splits, s.space.code_size) if family.loss_label == "MSE" else None
    pick, fallback = _pca_if_worse(ctx, journal, pick, pca_loss)
    # The final stage's learning curve, under the row of the candidate it retrained.
    journal.set_final_curve(
        pick.row.id if pick.row.spec == pick.spec else -1, pick.trained.result.curve
    )
    final = _final_figures(s, pick, splits, objective, device, pca_loss, family.loss_label)
    final["candidates"] = candidates
    final.update(fallback)
    model = pick.trained.model.cpu().eval()
    genome_json = _jsonable(space.to_json(pick.genome))
    save_model(
        model,
        run_dir / rf.MODEL_DIR,
        space=space.config(),
        genome=genome_json,
        metrics={
            "search_fitness": pick.row.fitness,
            **{k: v for k, v in final.items() if k != "terms"},
        },
        preprocess=splits.train.preprocess,  # also sets model.preprocess
    )
    rf.write_json(
        run_dir / rf.BEST_GENOME,
        {
            "genome": genome_json,
            "spec": pick.spec,
            "fitness": pick.row.fitness,
            "evaluation": pick.row.id,
        },
    )
    return SearchResult(
        run_dir=run_dir,
        best_genome=genome_json,
        best_spec=pick.spec,
        best_fitness=pick.row.fitness,
        final=final,
        model=model,
        history=history,
        n_evaluations=n_evaluations,
        n_trainings=n_trainings,
        seconds=time.perf_counter() - t0,
        settings=s,
        spent=spent,
        best_evaluation=pick.row.id,
    )


@dataclass
class _Final:
    """What every final training of one run shares."""

    s: SearchSettings
    space: Space
    objective: Objective
    phenotype_key: Callable[[dict[str, Any]], str]
    train: EvalSplit
    val: EvalSplit
    run_dir: Path
    deadline: float | None


@dataclass
class _Pick:
    """A retrained candidate: its search row, genome, spec and final training."""

    row: Any
    genome: Any
    spec: dict[str, Any]
    trained: Trained


def _best_or_refuse(journal: Journal, n_evaluations: int, run_dir: Path) -> Any:
    """The journal's best row, or a one-line error saying why there is none."""
    best = best_row(list(journal.rows()))
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
    return best


def _retrain(
    ctx: _Final,
    journal: Journal,
    best: Any,
    reporters: Sequence[Any],
    evaluator: Evaluator | None = None,
) -> tuple[_Pick, list[dict[str, Any]]]:
    """The final training of the finalists (:func:`finalists`), each continued from the
    search's saved state (``final_continue``) or from scratch with the final schedule,
    validation deciding which is kept; and a summary row for each.

    Low-fidelity fitness ranks candidates after a few hundred steps, so the search's best
    is not always the best trained to convergence. The time left to a deadline is shared
    equally by the finalists not yet trained. With PBT (``final_pbt``, itself N trainings)
    only the search's best is a finalist. The search's best failing (a NaN) is an
    error, never a model; another finalist failing only drops it."""
    t = ctx.s.training
    rows = finalists(journal, best, 1 if t.final_pbt >= 2 else t.final_candidates)
    genomes = [ctx.space.from_json(row.genome) for row in rows]
    specs = [ctx.space.decode(g) for g in genomes]
    sources = [
        state_source(journal, row) if t.final_continue and t.final_pbt < 2 else None for row in rows
    ]
    # With worker processes (the search's process pool), one other finalist per worker
    # trains there while this process trains the first (with the reporters) and any
    # finalists beyond the workers. Under a deadline every finalist gets the share of
    # the time left that each of this process's gets, and only workers already started
    # are used (starting one takes seconds of that time). Seeds and thread counts are
    # the same, so are the models.
    ready_only = ctx.deadline is not None
    workers = evaluator.call_workers(ready_only) if evaluator is not None and t.final_pbt < 2 else 0
    sent = range(1, min(len(rows), 1 + workers))
    share = _share(ctx.deadline, len(rows) - len(sent))
    futures = {
        i: evaluator.submit_call(
            _final_in_worker, ctx.s, specs[i], ctx.phenotype_key(specs[i]), ctx.run_dir,
            share, sources[i],
        )
        for i in sent
        if evaluator is not None
    }  # fmt: skip

    def train_here(i: int, deadline: float | None) -> Trained:
        return _final_training(
            ctx.s, specs[i], ctx.train, ctx.val, ctx.objective, ctx.phenotype_key,
            reporters if i == 0 else (), run_dir=ctx.run_dir, deadline=deadline,
            saved=sources[i],
        )  # fmt: skip

    done: dict[int, Trained] = {}
    here = [i for i in range(len(rows)) if i not in futures]
    for k, i in enumerate(here):
        done[i] = train_here(i, _share(ctx.deadline, len(here) - k))
        r = done[i].result
        if i == 0 and r.status != "ok":  # never save NaN weights as the run's model
            raise EvoaeError(
                f"retraining the best candidate (evaluation {rows[0].id}) for {r.epochs} "
                f"epochs failed ({r.error}); the search is saved: resume with fewer "
                "--final-epochs"
            )
    for i, future in futures.items():
        got = _worker_result(future)
        done[i] = got if got is not None else train_here(i, ctx.deadline)  # its worker died
    pick: _Pick | None = None
    report: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        genome, spec, trained = genomes[i], specs[i], done[i]
        r = trained.result
        report.append({
            "evaluation": row.id, "search_fitness": row.fitness, "architecture": describe(spec),
            "val_loss": r.val_loss if r.status == "ok" else None,
            "fitness": r.fitness if math.isfinite(r.fitness) else None,
            "epochs": r.epochs, "stop": r.stop, "status": r.status,
            **(trained.start or {"start": "scratch"}),
        })  # fmt: skip
        if r.status == "ok" and (pick is None or r.fitness < pick.trained.result.fitness):
            pick = _Pick(row, genome, spec, trained)
    assert pick is not None  # the first finalist succeeded or raised
    for entry in report:
        entry["kept"] = entry["evaluation"] == pick.row.id
    return pick, report


@dataclass(frozen=True)
class _FixedKey:
    """A phenotype key known in advance (a worker has no journal to derive it from)."""

    key: str

    def __call__(self, spec: dict[str, Any]) -> str:
        return self.key


def _final_in_worker(
    train: EvalSplit,
    val: EvalSplit,
    objective: Objective,
    s: SearchSettings,
    spec: dict[str, Any],
    key: str,
    run_dir: Path,
    deadline: float | None,
    saved: Any,
) -> bytes:
    """A finalist's :func:`_final_training` in a worker process, pickled whole (the
    model's tensors travel as bytes, not as shared-memory handles)."""
    trained = _final_training(
        s, spec, train, val, objective, _FixedKey(key), (), run_dir=run_dir,
        deadline=deadline, saved=saved,
    )  # fmt: skip
    return pickle.dumps(trained, protocol=pickle.HIGHEST_PROTOCOL)


def _worker_result(future: Future[bytes]) -> Trained | None:
    """What :func:`_final_in_worker` returned, or None when its worker died (the
    finalist is then trained in this process)."""
    try:
        data = future.result()
    except BrokenExecutor:
        return None
    trained = pickle.loads(data)  # our own worker's bytes, never a file
    if not isinstance(trained, Trained):
        raise TypeError(f"a final-training worker returned {type(trained).__name__}")
    return trained


def finalists(journal: Journal | RowCache, best: Any, n: int) -> list[Any]:
    """The rows the final stage trains: ``best`` and the next best successful rows of
    other architectures, ``n`` in all; when ``best`` is the PCA seed, also the best row
    that is not (the seed starts at PCA's optimum, where others must train to, so on a
    short candidate budget its fitness is not comparable with theirs). Rows of
    multi-fidelity runs compete at ``best``'s rung only."""
    rung = best.terms.get("rung") or 0.0
    ok = [r for r in journal.rows() if r.status == "ok" and (r.terms.get("rung") or 0.0) == rung]
    out, seen = [best], {spec_key(best.spec)}
    for r in sorted(ok, key=lambda r: (r.fitness, r.id)):
        if len(out) >= n:
            break
        if spec_key(r.spec) not in seen:
            out.append(r)
            seen.add(spec_key(r.spec))
    if all(r.spec.get("init") == "pca" for r in out):
        other = _best_not_pca(journal)
        if other is not None:
            out.append(other)
    return out


def state_source(journal: Journal | RowCache, row: Any) -> Any:
    """The row whose training saved ``row``'s state: itself, or for a cached row the
    first trained row of its spec (None when there is none)."""
    return _row_of(journal, row.spec) if row.cached else row


class RowCache:
    """A journal's rows, decoded once: :meth:`rows` reads only the rows added since the
    last call (a journal only grows while a search runs). :func:`final_states` walks
    every row several times after each batch; decoding them all each time made the
    search's bookkeeping quadratic in its evaluations."""

    def __init__(self, journal: Journal) -> None:
        self.journal, self._rows = journal, []

    def rows(self) -> Iterator[Any]:
        self._rows.extend(self.journal.rows(len(self._rows)))
        return iter(list(self._rows))


def final_states(journal: Journal | RowCache, n: int) -> set[int]:
    """The journal ids of the states the final stage would continue now: those of the
    :func:`finalists` (``n`` of them) of the journal so far."""
    best = best_row(list(journal.rows()))
    if best is None:
        return set()
    sources = (state_source(journal, r) for r in finalists(journal, best, n))
    return {r.id for r in sources if r is not None}


def _pca_if_worse(
    ctx: _Final, journal: Journal, pick: _Pick, pca_loss: float | None
) -> tuple[_Pick, dict[str, Any]]:
    """With ``pca_fallback``, a model validating worse than PCA is replaced by the
    family's linear fallback (dense: the PCA-initialised linear autoencoder)."""
    linear = family_fallback(ctx.space)
    worse = pick.trained.result.val_loss
    if (
        pca_loss is None
        or not ctx.s.training.pca_fallback
        or not ctx.objective.model_loss
        or linear is None
        or worse is None
        or worse <= pca_loss * (1 + FALLBACK_RTOL)
    ):
        return pick, {}
    pca_genome, pca_spec = linear
    done = pick.trained if pick.spec == pca_spec else None
    trained = Trained(*_pca_model(ctx.s, pca_spec, ctx.train, ctx.val, ctx.objective,
                                  ctx.phenotype_key, done, run_dir=ctx.run_dir,
                                  deadline=ctx.deadline))  # fmt: skip
    # The returned model's own search row (the PCA seed's), when the search had one.
    row = _row_of(journal, pca_spec) or pick.row
    fallback = {
        "fallback": "pca",
        "fallback_message": (
            f"the retrained best ({describe(pick.spec)}) reconstructs the validation "
            f"split worse than PCA ({worse:.6g} > {pca_loss:.6g} MSE): returning the "
            "PCA-initialised linear autoencoder"
        ),
        "searched_val_loss": worse,
    }
    return _Pick(row, pca_genome, pca_spec, trained), fallback


def _final_figures(
    s: SearchSettings,
    pick: _Pick,
    splits: Splits,
    objective: Objective,
    device: Any,
    pca_loss: float | None,
    label: str,
) -> dict[str, Any]:
    """``summary.json``'s ``final``: the kept model's training, losses and PCA figures."""
    result, model, pbt = pick.trained.result, pick.trained.model, pick.trained.pbt
    val_loss = result.val_loss
    if val_loss is None:  # an objective other than the model's loss: measure that too
        val_loss = evaluate(model, as_tensor(splits.val.x, device))["loss"]
    final: dict[str, Any] = {
        "epochs": result.epochs,
        **_final_spent(s, pick.spec, len(splits.train.x), result, pbt),
        "best_epoch": result.best_epoch,
        "val_loss": val_loss,
        "train_loss": result.train_loss,
        "terms": result.terms,
        "params": result.params,
        "seconds": result.seconds,
        "status": result.status,
        **_pca_figures(pca_loss, val_loss, label),
    }
    if pbt is not None:
        final["pbt"] = pbt
    if not objective.model_loss:
        final["fitness"] = result.fitness
    if splits.test is not None:
        final["test_loss"] = evaluate(model, as_tensor(splits.test.x, device))["loss"]
    vae = final_figures(
        model,
        as_tensor(splits.val.x, device),
        None if splits.test is None else as_tensor(splits.test.x, device),
        nll_samples=s.nll_samples(),
        binarize=s.data.binarize,
        seed=derive_seed(s.seed, "vae figures"),
    )
    if vae is not None:  # a VAE: collapse verdict, active units, test NLL
        final["vae"] = vae
    return final


def final_epochs(s: SearchSettings, spec: dict[str, Any], n_train: int) -> int:
    """The final training's epoch cap for ``spec``: ``final_epochs``, raised by the
    step floor ``final_min_steps`` (0 when the user set ``final_epochs``)."""
    t = s.training
    return epochs_for(t.final_epochs, t.final_min_steps, n_train, int(spec["batch_size"]))


def search_spent(
    s: SearchSettings, journal: Journal, n_train: int, seconds: float
) -> dict[str, Any]:
    """What the search spent: evaluations, trainings, their epochs and optimizer steps
    (as planned: a diverging candidate stops early; None with ASHA, whose promotions
    continue saved trainings), and the search's ``seconds`` before the final stage
    (every session of a resumed run)."""
    t = s.training
    rows = list(journal.rows())
    trained = [r for r in rows if not r.cached]
    epochs: int | None = 0
    steps: int | None = 0
    for r in trained:
        if "rung" in r.terms or epochs is None or steps is None:
            epochs = steps = None
            continue
        batch = int(r.spec["batch_size"])
        e = epochs_for(t.epochs, t.min_steps, n_train, batch)
        epochs += e
        steps += e * steps_per_epoch(n_train, batch)
    return {
        "evaluations": len(rows),
        "trainings": len(trained),
        "epochs": epochs,
        "steps": steps,
        "seconds": seconds,
    }


def _final_spent(
    s: SearchSettings,
    spec: dict[str, Any],
    n_train: int,
    result: Result,
    pbt: dict[str, Any] | None,
) -> dict[str, Any]:
    """The kept final training's cap, optimizer steps and why it stopped."""
    epochs = int(result.epochs or 0)
    steps = None if pbt is not None else epochs * steps_per_epoch(n_train, spec["batch_size"])
    stop = result.stop or EPOCH_CAP
    return {
        "max_epochs": final_epochs(s, spec, n_train),
        "steps": steps,
        "stop": stop,
        "converged": stop == PLATEAU,
    }


def _share(deadline: float | None, parts: int) -> float | None:
    """The deadline of the first of ``parts`` trainings sharing the time to ``deadline``."""
    if deadline is None or parts <= 1:
        return deadline
    now = time.perf_counter()
    return now + max(0.0, deadline - now) / parts


def phenotype_key(s: SearchSettings, n_train: int, spec: dict[str, Any]) -> str:
    """What a candidate's training is a function of (with the data): its spec and its
    epochs (``epochs``, more where ``min_steps`` asks for them). Seeds derive from it."""
    t = s.training
    epochs = epochs_for(t.epochs, t.min_steps, n_train, int(spec["batch_size"]))
    return spec_key({"spec": spec, "epochs": epochs})


#: The retrained model must beat PCA by more than float noise to be kept over it.
FALLBACK_RTOL = 1e-6


class Trained(NamedTuple):
    """A final training's result and model; ``pbt``: its PBT figures (None: plain);
    ``start``: what it started from (:func:`_final_training`; None: from scratch)."""

    result: Result
    model: nn.Module
    pbt: dict[str, Any] | None = None
    start: dict[str, Any] | None = None


def _final_training(
    s: SearchSettings,
    spec: dict[str, Any],
    train: EvalSplit,
    val: EvalSplit,
    objective: Objective,
    phenotype_key: Callable[[dict[str, Any]], str],
    reporters: Sequence[Any] = (),
    *,
    run_dir: Path | None = None,
    deadline: float | None = None,
    saved: Any = None,
) -> Trained:
    """The final schedule of :func:`retrain_best` for ``spec``, seeded by its phenotype;
    reporters hear of its start (the epoch cap) and of every epoch (PBT: every interval).
    It stops after the epoch (PBT: the interval) that ends past ``deadline``.

    ``saved`` (a journal row of ``spec``'s, with ``run_dir``) names the search's saved
    state to continue (``final_continue``): the final schedule then trains it at most the
    same epochs further. A missing or invalid state is trained from scratch instead;
    ``Trained.start`` says which ("start": "continued", "continued_from", "epochs_before";
    or "scratch" and "start_note", why).

    With ``final_pbt`` it is population-based training of that many copies, each for
    the same epochs, checkpointed in ``run_dir/pbt/KEY`` (resumed from there)."""
    t = s.training
    epochs = final_epochs(s, spec, len(train.x))
    seed = derive_seed(s.seed, "final", phenotype_key(spec))
    for r in reporters:
        r.final_start(epochs)

    def on_epoch(done: int, loss: float) -> None:
        for r in reporters:
            r.final_epoch(done, loss)

    with torch_threads(s.execution.threads or 1):
        if t.final_pbt >= 2 and epochs > 0:
            return _final_pbt(
                s, spec, train, val, objective, epochs, seed, run_dir, on_epoch, deadline
            )
        patience = plateau_epochs(
            t.final_patience, t.final_lr_cuts, len(train.x), int(spec["batch_size"])
        )
        note = "the search saved no state of it"
        if saved is not None and run_dir is not None:
            try:
                result, model, before = continue_candidate(
                    spec, train, val, rf.state_stem(run_dir, saved.id), epochs=epochs,
                    seed=seed, state_seed=saved.seed, objective=objective,
                    on_epoch=on_epoch if reporters else None, patience=patience,
                    min_steps=t.final_min_steps, deadline=deadline, trainer=t.trainer,
                    lr_cuts=t.final_lr_cuts,
                )  # fmt: skip
            except (BadState, EvoaeError) as e:  # missing, damaged, foreign, linked away
                stem = Path(run_dir) / rf.STATES_DIR / str(saved.id)
                gone = not any(stem.with_suffix(x).exists() for x in (".json", ".safetensors"))
                note = (
                    f"evaluation {saved.id} has no saved state (states are deleted when a "
                    "run finishes, and multi-fidelity runs keep only their own)"
                    if gone
                    else f"evaluation {saved.id}'s saved state is unusable ({e})"
                )
            else:
                start = {"start": "continued", "continued_from": saved.id,
                         "epochs_before": before}  # fmt: skip
                return Trained(result, model, None, start)
        trained = Trained(
            *train_candidate(
                spec,
                train,
                val,
                epochs=epochs,
                seed=seed,
                objective=objective,
                patience=patience,
                min_steps=t.final_min_steps,
                on_epoch=on_epoch if reporters else None,
                deadline=deadline,
                trainer=t.trainer,
                lr_cuts=t.final_lr_cuts,
            )
        )
        if saved is None or run_dir is None or not t.final_continue:
            return trained
        return trained._replace(start={"start": "scratch", "start_note": note})


def _final_pbt(
    s: SearchSettings,
    spec: dict[str, Any],
    train: EvalSplit,
    val: EvalSplit,
    objective: Objective,
    epochs: int,
    seed: int,
    run_dir: Path | None,
    on_epoch: Callable[[int, float], None],
    deadline: float | None = None,
) -> Trained:
    """``final_pbt`` copies of ``spec`` trained ``epochs`` epochs each by PBT; the copy
    with the best final validation loss is kept. Its checkpoint folder is keyed by
    everything the training depends on, so a changed setting never meets an old one."""
    t = s.training
    t0 = time.perf_counter()
    copies, ready = t.final_pbt, t.final_pbt_ready
    config = {"spec": spec, "copies": copies, "epochs": epochs, "ready": ready, "seed": seed}
    if t.trainer != "autograd":  # the key of runs made before the kernel stays the same
        config["trainer"] = t.trainer
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    state = rf.pbt_state(run_dir, key) if run_dir is not None else None

    def on_interval(done: int, history: list[dict[str, Any]]) -> None:
        losses = [r["train_loss"] for r in history if r["interval"] == done - 1]
        finite = [x for x in losses if x is not None]
        on_epoch(min(done * ready, epochs), min(finite) if finite else math.nan)

    res = pbt_train(
        spec, train, val, copies=copies, epochs=epochs, ready=ready, seed=seed,
        state_path=state, on_interval=on_interval, trainer=t.trainer,
        stop=None if deadline is None else lambda: time.perf_counter() >= deadline,
    )  # fmt: skip
    last = [r for r in res.history if r["interval"] == res.history[-1]["interval"]]
    train_loss = next(r["train_loss"] for r in last if r["member"] == res.best)
    score = objective.score(res.model, val) if math.isfinite(res.val_loss) else None
    result = make_result(
        score,
        [math.nan if train_loss is None else train_loss],
        count_params(res.model),
        time.perf_counter() - t0,
        objective=objective,
    )
    trained = int(res.history[-1]["epoch"])
    result.epochs = result.best_epoch = trained
    # The kept copy's slot, interval by interval (an exploit copies another's weights).
    result.curve = downsample(
        sorted(
            (int(r["epoch"]), r["train_loss"], r["val_loss"])
            for r in res.history
            if r["member"] == res.best
        )
    )
    result.stop = TIME_CAP if trained < epochs else EPOCH_CAP
    figures = {
        "copies": copies,
        "epochs_per_copy": trained,
        "epochs_total": copies * trained,
        "ready": ready,
        "best_copy": res.best,
        "hparams": res.hparams,
        "exploits": sum(r["exploit"] is not None for r in res.history),
        "copy_val_losses": [r["val_loss"] for r in last],
        "state": f"{rf.PBT_DIR}/{key}" if state is not None else None,
    }
    return Trained(result, res.model, figures)


def _row_of(journal: Journal | RowCache, spec: dict[str, Any]) -> Any:
    """The first successful trained row of ``spec``, or None."""
    rows = (r for r in journal.rows() if r.spec == spec and not r.cached and r.status == "ok")
    return next(rows, None)


def _best_not_pca(journal: Journal | RowCache) -> Any:
    """The best successful row whose spec is not the PCA-initialised linear one (from
    scratch or PCA-residual), or None."""
    return best_row([r for r in journal.rows() if r.spec.get("init") != "pca"])


def _pca_model(
    s: SearchSettings,
    spec: dict[str, Any],
    train: EvalSplit,
    val: EvalSplit,
    objective: Objective,
    phenotype_key: Callable[[dict[str, Any]], str],
    done: Trained | None = None,
    *,
    run_dir: Path | None = None,
    deadline: float | None = None,
) -> Trained:
    """The PCA-initialised linear autoencoder: trained with the final schedule (``done``
    when that was the retrained best) or as initialised, whichever reconstructs the
    validation split better."""
    if done is None:
        done = _final_training(
            s, spec, train, val, objective, phenotype_key, run_dir=run_dir, deadline=deadline
        )
    untrained, plain = train_candidate(spec, train, val, epochs=0, seed=0, objective=objective)
    if done.result.status == "ok" and _loss(done.result) <= _loss(untrained):
        return done
    return Trained(untrained, plain)


def _loss(r: Result) -> float:
    return math.inf if r.val_loss is None else float(r.val_loss)


def _pca_loss(splits: Splits, k: int) -> float | None:
    """PCA's validation MSE at code size ``k``, fit on the training split (flattened)."""
    train, val = splits.train.x, splits.val.x
    if not 1 <= k <= min(len(train), int(np.prod(train.shape[1:]))):
        return None
    return pca_val_loss(train, val, k)


def _pca_figures(pca_loss: float | None, val_loss: float | None, label: str) -> dict[str, Any]:
    if pca_loss is None:
        why = f"n/a ({label} is not comparable with PCA's MSE)" if label != "MSE" else "n/a"
        return {"pca_val_loss": None, "pca_ratio": None, "pca_note": why}
    ratio = val_loss / pca_loss if val_loss is not None and pca_loss > 0 else None
    return {"pca_val_loss": pca_loss, "pca_ratio": ratio}


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
    retrained (the final schedule and seed rule) and save it as ``dest/model``.

    The retraining of the run's best row reproduces the run's own ``model/`` when the
    final stage trained it from scratch (not continued from a saved state).
    """
    run_dir = Path(run_dir)
    with Journal(run_dir / rf.JOURNAL, readonly=True) as j:
        s = SearchSettings.from_dict(j.get_meta("settings"))
        space = space_from_config(j.get_meta("space"))
    objective = make_objective(s.training.objective)
    splits = s.load_splits()
    check_data(run_dir, splits.train.x, splits.val.x)  # as a resume: never on other data
    genome = space.from_json(row.genome)
    spec = space.decode(genome)
    device = resolve_device(s.execution.device)
    train, val = as_split(splits.train, device), as_split(splits.val, device)
    n_train = len(splits.train.x)
    trained = _final_training(
        s, spec, train, val, objective, lambda sp: phenotype_key(s, n_train, sp)
    )
    result, model = trained.result, trained.model
    if result.status != "ok":
        raise EvoaeError(f"retraining evaluation {row.id} failed ({result.error})")
    metrics: dict[str, Any] = {
        "search_fitness": row.fitness,
        "evaluation": row.id,
        "epochs": result.epochs,
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
