"""Training budgets: step floors under epoch counts, and the run's time budget.

An epoch of a few hundred rows is a handful of optimizer steps, so "2 epochs" means
very different training on small and large data. ``min_steps`` (a training setting)
puts a floor under it: a candidate trains ``max(epochs, ceil(min_steps / steps per
epoch))`` epochs, where an epoch takes ``ceil(rows / batch_size)`` steps. With
``min_steps=0`` the budget is the epoch count alone (evoae 0.1). Every trainer and
strategy that needs a budget in steps uses :func:`epochs_for`.

A floor never raises a count the user set (:func:`honour_counts`): a command or call
that sets ``epochs`` (or ``final_epochs``) without setting its floor stores that floor
as 0, so the stored settings themselves say "this count is the user's" and every later
resume, ``finish`` and retraining trains exactly that count. A floor the user sets
alongside its count is the user's own and applies.

``time_budget`` bounds the whole run: the search stops asking for candidates once
``1 - FINAL_SHARE`` of it has passed, and the final stage stops after the epoch in
which the budget ends (at least one epoch). A separate ``final_time_budget`` gives the
final stage its own seconds and the search all of ``time_budget``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

#: Each epoch count and the step floor that may raise it while the user has not set it.
FLOORS = (("epochs", "min_steps"), ("final_epochs", "final_min_steps"))

#: The share of ``time_budget`` kept for the final stage when it has no budget of its own.
FINAL_SHARE = 0.25

#: Why a final training stopped: a validation plateau (converged), or a cap.
PLATEAU, EPOCH_CAP, TIME_CAP = "plateau", "epochs", "time budget"

#: With learning-rate cuts, a final training's plateau lasts at least this many optimizer
#: steps: "5 epochs" of a small data set is a few dozen noisy steps, too few to tell a
#: plateau from noise (on digits it stopped at 87 epochs while still improving).
PLATEAU_STEPS = 300


def steps_per_epoch(n_rows: int, batch_size: int) -> int:
    """Optimizer steps in one epoch of ``n_rows`` rows (the last batch may be short)."""
    return max(1, math.ceil(int(n_rows) / max(1, int(batch_size))))


def epochs_for(epochs: int, min_steps: int, n_rows: int, batch_size: int) -> int:
    """Epochs that give at least ``epochs`` epochs and at least ``min_steps`` steps."""
    if min_steps <= 0:
        return int(epochs)
    return max(int(epochs), math.ceil(int(min_steps) / steps_per_epoch(n_rows, batch_size)))


def honour_counts(
    given: dict[str, Any], floors: Sequence[tuple[str, str]] = FLOORS
) -> dict[str, Any]:
    """``given`` (flat settings the user set) with the floor of every epoch count it sets
    turned off (0), unless it sets that floor too."""
    out = dict(given)
    for count, floor in floors:
        if out.get(count) is not None and out.get(floor) is None:
            out[floor] = 0
    return out


def plateau_epochs(patience: int, lr_cuts: int, n_rows: int, batch_size: int) -> int:
    """Epochs without a better validation loss that make a plateau: ``patience``, and
    with learning-rate cuts at least :data:`PLATEAU_STEPS` optimizer steps."""
    if patience <= 0 or lr_cuts <= 0:
        return int(patience)
    return max(int(patience), math.ceil(PLATEAU_STEPS / steps_per_epoch(n_rows, batch_size)))


def search_seconds(time_budget: float | None, final_time_budget: float | None) -> float | None:
    """Seconds the search may ask for candidates (None: no time limit)."""
    if time_budget is None:
        return None
    return time_budget if final_time_budget is not None else time_budget * (1 - FINAL_SHARE)


def final_deadline(
    start: float, now: float, time_budget: float | None, final_time_budget: float | None
) -> float | None:
    """When the final stage must end, on the clock of ``start`` (the run's start) and
    ``now`` (the final stage's start); None: no time limit."""
    if final_time_budget is not None:
        return now + final_time_budget
    if time_budget is not None:
        return start + time_budget
    return None
