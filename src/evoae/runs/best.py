"""The one meaning of "best" shared by the search summary, ``runs show`` and the report.

A finished run's best is the candidate whose model the run returns: the journal row
retrained by the final stage (``summary.json``'s ``best_evaluation``; older summaries:
``best_genome.json``'s ``evaluation``, or the row with the summary's spec and fitness).
That is not always the journal's lowest fitness: a PCA seed that led the search can lose
the final training to a from-scratch candidate, and a PCA fallback returns the linear
model. An unfinished run's best is the journal's best (:func:`best_row`).

Every figure names its fidelity: the search fitness was measured after the search's
epochs (ASHA: the row's rung), the retrained loss after the final training's epochs.
No torch here: ``evoae runs show`` must start at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from evoae.errors import EvoaeError
from evoae.runs import folder as rf
from evoae.runs.journal import Row
from evoae.runs.reader import RunView, best_row


@dataclass
class Best:
    """The run's best candidate and the journal's leader when that differs."""

    #: The best candidate's journal row (None: nothing trained successfully yet).
    row: Row | None
    #: Its search fitness (the summary's, for a finished run).
    fitness: float | None
    #: Epochs behind the search fitness, in words ("1 epoch", "rung of 9 epochs").
    search_fidelity: str
    #: The final training's epochs and validation loss (None until the run finished).
    final_epochs: int | None
    final_val_loss: float | None
    #: The journal's lowest-fitness row when it is not ``row`` (e.g. the PCA seed).
    leader: Row | None
    #: Why ``leader`` is not the best, in words (None when there is no leader).
    leader_note: str | None

    @property
    def evaluation(self) -> int | None:
        return None if self.row is None else self.row.id

    def search_text(self) -> str:
        """``"evaluation 7: 0.04880 (search, 1 epoch)"``: one line for every view."""
        if self.row is None or self.fitness is None or not math.isfinite(self.fitness):
            return "-"
        return f"evaluation {self.row.id}: {self.fitness:.5f} (search, {self.search_fidelity})"

    def final_text(self) -> str:
        """``"0.04120 (final training, 48 epochs)"``, or ``-`` before the final stage."""
        if self.final_val_loss is None or not math.isfinite(self.final_val_loss):
            return "-"
        return f"{self.final_val_loss:.5f} (final training, {epochs_text(self.final_epochs or 0)})"


def is_pca_seed(row: Row) -> bool:
    """The PCA-initialised linear candidate (it starts where others must train to)."""
    return isinstance(row.spec, dict) and row.spec.get("init") == "pca"


def best_of(view: RunView) -> Best:
    """The best candidate of ``view`` (see the module docstring)."""
    summary = view.summary or {}
    final = summary.get("final") if isinstance(summary.get("final"), dict) else {}
    leader = best_row(view.rows)
    row = _returned_row(view) if view.finished else leader
    if row is None:
        row = leader
    fitness = summary.get("best_fitness") if view.finished else None
    if not isinstance(fitness, int | float):
        fitness = None if row is None else row.fitness
    other = leader if leader is not None and row is not None and leader.id != row.id else None
    val = final.get("val_loss")
    return Best(
        row=row,
        fitness=fitness,
        search_fidelity=search_fidelity(view.settings, row),
        final_epochs=final.get("epochs") if isinstance(final.get("epochs"), int) else None,
        final_val_loss=float(val) if isinstance(val, int | float) else None,
        leader=other,
        leader_note=None if other is None else _leader_note(other, final),
    )


def search_fidelity(settings: dict[str, Any], row: Row | None) -> str:
    """The epochs behind ``row``'s search fitness, in words."""
    rung = None if row is None else row.terms.get("epochs")
    if isinstance(rung, int | float) and math.isfinite(rung):
        return f"rung of {epochs_text(int(rung))}"
    epochs = settings.get("epochs")
    text = epochs_text(int(epochs)) if isinstance(epochs, int) else "? epochs"
    steps = settings.get("min_steps")
    return f"{text}, at least {steps} steps" if steps else text


def _returned_row(view: RunView) -> Row | None:
    """The journal row of the model a finished run returns."""
    summary = view.summary or {}
    by_id = {r.id: r for r in view.rows}
    ev = summary.get("best_evaluation")  # validated by the summary's schema
    if isinstance(ev, int) and ev in by_id:
        return by_id[ev]
    path = view.path / rf.BEST_GENOME
    if path.is_file():
        try:
            ev = rf.read_json(path, "best genome").get("evaluation")
        except EvoaeError:
            ev = None
        if isinstance(ev, int) and ev in by_id:
            return by_id[ev]
    spec, fit = summary.get("best_spec"), summary.get("best_fitness")
    same = [r for r in view.rows if r.spec == spec and not r.cached and r.status != "failed"]
    return next((r for r in same if r.fitness == fit), same[0] if same else None)


def _leader_note(leader: Row, final: dict[str, Any]) -> str:
    what = "the PCA seed" if is_pca_seed(leader) else f"evaluation {leader.id}"
    if final.get("fallback") == "pca":
        return f"{what} led the search; the final stage fell back to PCA"
    if is_pca_seed(leader):
        return (
            f"{what} (evaluation {leader.id}) had the lowest search fitness, "
            f"{leader.fitness:.5f}, but it starts from PCA's solution; the final training "
            "kept the from-scratch candidate, which validated better"
        )
    return f"{what} had the lowest search fitness, {leader.fitness:.5f}"


def epochs_text(n: int) -> str:
    """``"1 epoch"``, ``"3 epochs"``."""
    return f"{n} epoch" if n == 1 else f"{n} epochs"
