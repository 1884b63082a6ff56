"""Training budgets in compute: a floor in optimizer steps on top of an epoch count.

An epoch of a few hundred rows is a handful of optimizer steps, so "2 epochs" means
very different training on small and large data. ``min_steps`` (a training setting)
puts a floor under it: a candidate trains ``max(epochs, ceil(min_steps / steps per
epoch))`` epochs, where an epoch takes ``ceil(rows / batch_size)`` steps. With
``min_steps=0`` the budget is the epoch count alone (evoae 0.1). Every trainer and
strategy that needs a budget in steps uses :func:`epochs_for`.
"""

from __future__ import annotations

import math


def steps_per_epoch(n_rows: int, batch_size: int) -> int:
    """Optimizer steps in one epoch of ``n_rows`` rows (the last batch may be short)."""
    return max(1, math.ceil(int(n_rows) / max(1, int(batch_size))))


def epochs_for(epochs: int, min_steps: int, n_rows: int, batch_size: int) -> int:
    """Epochs that give at least ``epochs`` epochs and at least ``min_steps`` steps."""
    if min_steps <= 0:
        return int(epochs)
    return max(int(epochs), math.ceil(int(min_steps) / steps_per_epoch(n_rows, batch_size)))
