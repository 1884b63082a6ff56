"""Learning curves: per-epoch training and validation loss of one training.

A curve is a list of ``(epoch, train_loss, val_loss)`` points sorted by epoch, where
``epoch`` counts the epochs done (0: the initial weights, before any training) and a
loss is a finite float or None (not measured at that epoch, or not finite). The search
measures the training loss every epoch and the validation loss at the end of each
evaluation; the final training measures both every epoch when it watches for a plateau.

Curves are bounded: a training longer than :data:`MAX_CURVE` epochs keeps
:data:`MAX_CURVE` evenly spaced points, its first and last included, so a journal
stays small whatever the epoch counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: Most points of one curve (per evaluation, and for the final stage).
MAX_CURVE = 1000
#: Largest epoch number a stored curve may name (settings cap epochs far below it).
MAX_EPOCH = 10**7
#: The stages a curve belongs to: a search evaluation, or the final training.
STAGES = ("search", "final")

Point = tuple[int, float | None, float | None]
Curve = list[Point]


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def make_curve(
    train_losses: Sequence[float],
    *,
    first_epoch: int = 1,
    val: Mapping[int, float | None] | None = None,
) -> Curve:
    """The bounded curve of a training whose epoch ``first_epoch + i`` had training loss
    ``train_losses[i]``, with validation losses ``val`` (epoch -> loss) where measured."""
    points: dict[int, list[float | None]] = {}
    for i, t in enumerate(train_losses):
        points[first_epoch + i] = [_finite(t), None]
    for e, v in (val or {}).items():
        points.setdefault(int(e), [None, None])[1] = _finite(v)
    return downsample([(e, t, v) for e, (t, v) in sorted(points.items())])


def downsample(curve: Sequence[Point], limit: int = MAX_CURVE) -> Curve:
    """At most ``limit`` points of ``curve``, evenly spaced, the first and last kept."""
    n = len(curve)
    if n <= limit:
        return list(curve)
    if limit == 1:
        return [curve[-1]]
    keep = sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})
    return [curve[i] for i in keep]


def check_point(epoch: Any, train: Any, val: Any) -> Point:
    """One stored point, validated: raises ValueError saying what is wrong."""
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch <= MAX_EPOCH:
        raise ValueError(f"epoch {epoch!r} is not an integer in [0, {MAX_EPOCH}]"[:120])
    out: list[float | None] = []
    for name, x in (("train_loss", train), ("val_loss", val)):
        if x is not None and (
            not isinstance(x, int | float) or isinstance(x, bool) or not math.isfinite(x)
        ):
            raise ValueError(f"{name} at epoch {epoch} is not a finite number or null")
        out.append(None if x is None else float(x))
    return epoch, out[0], out[1]


def as_jsonable(curve: Iterable[Point]) -> list[list[Any]]:
    """A curve as JSON-ready lists ``[epoch, train, val]``."""
    return [[e, t, v] for e, t, v in curve]
