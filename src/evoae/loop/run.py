"""A search in a ready run folder: open the journal, loop until the strategy is done,
retrain the best, write the summary; write failures end it with a one-line error."""

from __future__ import annotations

import errno
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from evoae.data import Splits
from evoae.errors import EvoaeError
from evoae.evolution import Strategy
from evoae.finish import SearchResult, retrain_best
from evoae.loop.core import Loop
from evoae.objectives import Objective
from evoae.report.progress import Reporter
from evoae.runs import folder as rf
from evoae.runs import guard
from evoae.runs.journal import Journal
from evoae.settings import SearchSettings
from evoae.spaces import Space
from evoae.training import Evaluator
from evoae.training.budget import final_deadline, search_seconds
from evoae.training.evaluator import ExecutorLost

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


@contextmanager
def write_errors(run_dir: Path) -> Iterator[None]:
    """A full disk (or a folder gone read-only) becomes an :class:`EvoaeError`: every
    evaluation committed so far stays in the journal (SQLite rolls back a write it could
    not finish) and the checkpoint is the last one fully renamed, so the run can be
    resumed once there is room. An executor lost mid-search (a Ray cluster's head) ends
    it the same way, with the command that continues it."""
    try:
        yield
    except ExecutorLost as e:
        raise EvoaeError(
            f"{e}; finished evaluations are safe in the journal: continue with evoae search "
            f"--resume {run_dir} (on a running cluster, or with --executor inline), or end "
            f"it now with evoae finish {run_dir}"
        ) from None
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


def run(
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
    """The loop and the final training in a ready run folder."""
    journal = Journal(run_dir / rf.JOURNAL, create=not resume)
    try:
        with write_errors(run_dir):
            loop = Loop(
                s, space, strategy, objective, journal, run_dir, reporters, len(splits.train)
            )
            if resume:
                check_rewritable(run_dir)
                _restore(loop, run_dir)
                _check_genomes(loop, space, run_dir)
            _record(loop, space, objective, run_dir, fingerprint, resume)
            stopped = _search(loop, evaluator, finish, t0)
            ex = s.execution
            # The finalists' states outlive the search (a killed final stage continues them).
            loop.lineage.prune(loop.next_id, everything=True, keep=loop.final_states())
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
                search_seconds=loop.search_seconds(),
                phenotype_key=loop.keys.phenotype_key,
                reporters=reporters,
                deadline=final_deadline(
                    t0, time.perf_counter(), ex.time_budget, ex.final_time_budget
                ),
                evaluator=evaluator,
            )
            result.stopped = stopped
            result.executor = getattr(evaluator, "choice", "") or s.execution.executor
            for r in reporters:
                r.finished(result, splits)
            rf.write_json(run_dir / rf.SUMMARY, result.summary())
            loop.lineage.prune(loop.next_id, everything=True)  # the final stage is done
            return result
    finally:
        journal.close()
        for r in reporters:
            r.end()


#: What a resumed run rewrites: checked to be evoae's own before anything is evaluated.
_REWRITTEN = (
    rf.CHECKPOINT,
    rf.SETTINGS,
    rf.SUMMARY,
    rf.BEST_GENOME,
    f"{rf.MODEL_DIR}/model.json",
    f"{rf.MODEL_DIR}/model.safetensors",
)


def check_rewritable(run_dir: Path) -> None:
    """Refuse a resume (before any evaluation or journal row) whose run folder holds a
    file evoae would rewrite but did not write, or a linked folder it writes into."""
    sqlite = [rf.JOURNAL + suffix for suffix in ("", "-wal", "-shm")]
    for name in (rf.MODEL_DIR, rf.PLOTS_DIR, *sqlite):
        if (run_dir / name).is_symlink():
            raise EvoaeError(
                f"{run_dir / name} is a symbolic link, which evoae never writes through: "
                "replace it with a folder to continue the run; nothing was written"
            )
    for name in _REWRITTEN:
        guard.claim(run_dir / name)


def _check_genomes(loop: Loop, space: Space, run_dir: Path) -> None:
    """Every journal genome belongs to the run's space, checked before the first write
    (the final retraining decodes them)."""
    for row in loop.journal.rows():
        try:
            space.decode(space.from_json(row.genome))
        except (EvoaeError, TypeError, ValueError, KeyError, IndexError) as e:
            raise EvoaeError(
                f"journal row {row.id} of run {run_dir} is damaged (field genome: {e}); "
                "restore the journal or start a new run"
            ) from None


def _restore(loop: Loop, run_dir: Path) -> None:
    """A run killed before its first checkpoint has none: it replays from the start."""
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


def _record(
    loop: Loop, space: Space, objective: Objective, run_dir: Path, fingerprint: str, resume: bool
) -> None:
    """Store the settings (on resume: the extended budget) and, for a new run, what a
    resume must match: the space, the data's SHA-256 and the objective."""
    stored = loop.s.to_dict()
    loop.journal.set_meta("settings", stored)
    if not resume:
        loop.journal.set_meta("space", space.config())
        loop.journal.set_meta("data_sha256", fingerprint)
        loop.journal.set_meta("objective", objective.config())
    rf.write_json(run_dir / rf.SETTINGS, stored)
    if loop.lineage.on or loop.lineage.final:  # a run made before states/ did not list it
        rf.add_to_manifest(run_dir, rf.STATES_DIR)
    done, total = loop.strategy.progress()
    for r in loop.reporters:
        r.opened(run_dir, resume)
    for r in loop.reporters:
        r.start(total, done, stored, unit=loop.strategy.unit, evaluations=loop.next_id)


def _search(loop: Loop, evaluator: Evaluator, finish: bool, t0: float) -> str:
    """Step until the strategy is done, the search's share of the time budget (timed
    from ``t0``, the run's start) is spent (after at least one batch: something to
    retrain) or ``finish`` asks to stop; returns why it stopped."""
    ex = loop.s.execution
    budget = search_seconds(ex.time_budget, ex.final_time_budget)
    while not loop.strategy.done:
        if finish:
            return "finished early"
        if budget is not None and time.perf_counter() - t0 >= budget and loop.next_id > 0:
            return "time budget"
        loop.step(evaluator)
    return "budget"
