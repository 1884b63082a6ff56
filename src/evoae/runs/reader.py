"""Reading a run folder back (finished or not), without importing torch or matplotlib."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evoae.errors import EvoaeError
from evoae.runs import folder as rf
from evoae.runs.curves import Curve
from evoae.runs.journal import Journal, Row

if TYPE_CHECKING:
    import pandas as pd

#: Rows of the best-candidates tables.
TOP = 10


@dataclass
class RunView:
    """What a run folder holds, read once. ``summary`` is None until the run finished."""

    path: Path
    #: Settings by flat name (``code_size``, ``epochs``, the strategy's options...).
    settings: dict[str, Any]
    rows: list[Row]
    summary: dict[str, Any] | None
    history: list[dict[str, float]] = field(default_factory=list)
    #: The settings as stored (nested by layer since evoae 0.2).
    raw_settings: dict[str, Any] = field(default_factory=dict)
    #: Learning curves of the search by evaluation id (:mod:`evoae.runs.curves`); empty
    #: for runs made before evoae recorded them.
    curves: dict[int, Curve] = field(default_factory=dict)
    #: The final training's curve and the evaluation it retrained (-1: none), or None.
    final_curve: tuple[int, Curve] | None = None

    @property
    def finished(self) -> bool:
        return self.summary is not None

    @property
    def trained(self) -> list[Row]:
        """Evaluations that trained a model (not phenotype-cache hits), in id order."""
        return [r for r in self.rows if not r.cached]

    def best(self) -> Row | None:
        return best_row(self.rows)

    def trials_dataframe(self, *, curves: bool = False) -> pd.DataFrame:
        """One row per evaluation (pandas, the optional extra ``evoae[pandas]``): id,
        generation, status, fitness, losses, params, seconds, seed, cached, a
        ``genome.<gene>`` column per gene and a ``terms.<name>`` column per objective
        term; with ``curves`` also ``curve``, its ``[(epoch, train, val), ...]``."""
        from evoae.runs.frame import to_pandas

        return to_pandas(self, curves=curves)

    to_pandas = trials_dataframe


def read_run(folder: str | Path) -> RunView:
    """Read a run folder (finished or not)."""
    path = Path(folder)
    if not rf.is_run(path):
        raise EvoaeError(f"{path} is not an evoae run folder (no {rf.JOURNAL})")
    with Journal(path / rf.JOURNAL, readonly=True) as j:
        rows = list(j.rows())
        settings = j.get_meta("settings")
        curves = j.curves("search")
        final = j.curves("final")
    if len(final) > 1:
        raise EvoaeError(
            f"the learning curves of run {path} are damaged (a final curve for "
            f"{len(final)} evaluations): restore the journal or start a new run"
        )
    if (path / rf.SETTINGS).is_file():
        stored, settings = settings, rf.read_json(path / rf.SETTINGS, "run settings")
        if isinstance(stored, dict) and stored != settings:  # the journal's are the run's
            raise EvoaeError(
                f"run settings {path / rf.SETTINGS} disagree with the settings stored in the "
                "journal: the file was edited; restore it (a resume rewrites it)"
            )
    if not isinstance(settings, dict):
        raise EvoaeError(f"run {path} has no settings: the run folder is damaged")
    summary = (
        rf.read_json(path / rf.SUMMARY, "run summary") if (path / rf.SUMMARY).is_file() else None
    )
    if summary is not None:
        history = summary.get("history", [])
    elif (path / rf.CHECKPOINT).is_file():
        history = rf.read_json(path / rf.CHECKPOINT, "checkpoint").get("history", [])
    else:
        history = []
    return RunView(
        path=path,
        settings=flat_settings(settings),
        rows=rows,
        summary=summary,
        history=history,
        raw_settings=settings,
        curves=curves,
        final_curve=next(iter(final.items()), None),
    )


def data_digest(train_x: Any, val_x: Any) -> str:
    """SHA-256 of the training and validation inputs, as a run records it at its start."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for x in (train_x, val_x):
        h.update(str(x.shape).encode())
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def check_data(run_dir: str | Path, train_x: Any, val_x: Any) -> None:
    """Refuse data whose digest differs from the one run ``run_dir`` recorded (runs made
    before evoae recorded one pass)."""
    run_dir = Path(run_dir)
    with Journal(run_dir / rf.JOURNAL, readonly=True) as j:
        stored = j.get_meta("data_sha256")
    if stored is not None and stored != data_digest(train_x, val_x):
        raise EvoaeError(
            f"the data of run {run_dir} changed since it started (its SHA-256 differs): "
            "restore the original data or start a new run"
        )


def best_row(rows: list[Row]) -> Row | None:
    """The lowest-fitness row that did not fail; with multi-fidelity rows (ASHA, a
    ``rung`` term) the best at the highest rung reached, since rows of lower rungs
    trained fewer epochs and their fitness is not comparable."""
    ok = [r for r in rows if r.status != "failed"]
    if not ok:
        return None
    top = max(r.terms.get("rung") or 0.0 for r in ok)
    return min(
        (r for r in ok if (r.terms.get("rung") or 0.0) == top), key=lambda r: (r.fitness, r.id)
    )


def flat_settings(stored: dict[str, Any]) -> dict[str, Any]:
    """Stored settings by flat name: nested sections merged (evoae 0.1 stored them flat)."""
    if not isinstance(stored.get("data"), dict):
        return dict(stored)
    out: dict[str, Any] = {}
    for section in ("data", "space", "training", "fidelity", "execution"):
        part = stored.get(section)
        out.update(part if isinstance(part, dict) else {})
    out["space_options"] = out.pop("options", {})
    strategy = stored.get("strategy") if isinstance(stored.get("strategy"), dict) else {}
    options = strategy.get("options")
    out.update(options if isinstance(options, dict) else {})
    out["strategy"] = strategy.get("name", "microbial")
    out["seed"] = stored.get("seed", 0)
    return out


def top_candidates(rows: list[Row], n: int = TOP) -> list[Row]:
    """The ``n`` best distinct trained candidates (cache hits repeat a phenotype)."""
    ok = [r for r in rows if not r.cached and r.status != "failed"]
    return sorted(ok, key=lambda r: (r.fitness, r.id))[:n]


def pareto_front(rows: list[Row]) -> list[Row]:
    """The trained candidates no other one beats in both fitness and parameter count.

    Sorted by parameters (smallest first); of equal (fitness, params) points the first
    evaluation is kept. Member ``N`` of ``evoae export --pick N`` is ``front[N - 1]``.
    """
    ok = sorted(
        (r for r in rows if not r.cached and r.status != "failed"),
        key=lambda r: (r.params, r.fitness, r.id),
    )
    front: list[Row] = []
    for r in ok:  # by params ascending: kept iff strictly fitter than every smaller one
        if not front or r.fitness < front[-1].fitness:
            front.append(r)
    return front
