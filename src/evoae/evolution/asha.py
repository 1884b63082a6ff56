"""Asynchronous successive halving (ASHA, Li et al. 2018) over training epochs.

Rungs train a candidate ``min_epochs``, ``min_epochs * eta``, ... epochs in total, the
last one capped at ``max_epochs`` (1, 3, 4 with the defaults). Whenever a worker is
free, :meth:`SuccessiveHalving.next_job` promotes a candidate from the highest rung
where one is promotable (in the best ``floor(n / eta)`` of the ``n`` results of its
rung and not yet promoted), else starts a new candidate at rung 0 (the caller asks its
inner strategy for one). Rungs never wait to fill: that is the asynchronous rule. A
promoted candidate continues from its saved weights and optimizer state
(:func:`evoae.training.rungs.train_rung` with ``resume``), so a promotion costs only
the extra epochs.

The scheduler is a pure, JSON-checkpointable bookkeeping object; the search loop does
not drive it yet (see ``docs/search_quality.md``, "what is left").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from evoae.errors import EvoaeError


@dataclass(frozen=True)
class Job:
    """Train ``candidate`` to ``epochs`` epochs in total, continuing from ``resume_epochs``
    (0 = from scratch) — the checkpoint its previous rung saved."""

    candidate: int
    rung: int
    epochs: int
    resume_epochs: int


def rung_epochs(min_epochs: int, eta: int, max_epochs: int) -> list[int]:
    """The rungs' total epochs: ``min_epochs * eta**k`` below ``max_epochs``, then it."""
    if not 1 <= min_epochs <= max_epochs or eta < 2:
        raise EvoaeError(
            f"successive halving needs 1 <= min epochs ({min_epochs}) <= max epochs "
            f"({max_epochs}) and eta >= 2 (got {eta})"
        )
    out, e = [], min_epochs
    while e < max_epochs:
        out.append(e)
        e *= eta
    return [*out, max_epochs]


class SuccessiveHalving:
    """ASHA's promotion rule over rungs of epochs."""

    def __init__(self, min_epochs: int = 1, eta: int = 3, max_epochs: int = 4) -> None:
        self.eta = int(eta)
        self.rungs = rung_epochs(int(min_epochs), self.eta, int(max_epochs))
        #: Per rung: candidate -> loss (insertion = completion order).
        self.results: list[dict[int, float]] = [{} for _ in self.rungs]
        #: Per rung: candidates promoted out of it.
        self.promoted: list[set[int]] = [set() for _ in self.rungs]
        self.started = 0

    def next_job(self) -> Job:
        """A promotion if one is due (highest rung first), else a new candidate."""
        for k in range(len(self.rungs) - 2, -1, -1):
            results = self.results[k]
            n_top = len(results) // self.eta
            ranked = sorted(results.items(), key=lambda kv: (kv[1], kv[0]))[:n_top]
            for cand, loss in ranked:
                if cand not in self.promoted[k] and math.isfinite(loss):
                    self.promoted[k].add(cand)
                    return Job(cand, k + 1, self.rungs[k + 1], self.rungs[k])
        cand = self.started
        self.started += 1
        return Job(cand, 0, self.rungs[0], 0)

    def report(self, job: Job, loss: float) -> None:
        """The loss of ``job``'s candidate at its rung (``inf`` when it failed)."""
        self.results[job.rung][job.candidate] = float(loss)

    def best(self) -> tuple[int, int, float] | None:
        """(candidate, rung, loss) of the best result at the highest rung reached."""
        for k in range(len(self.rungs) - 1, -1, -1):
            if self.results[k]:
                cand, loss = min(self.results[k].items(), key=lambda kv: (kv[1], kv[0]))
                return cand, k, loss
        return None

    def epochs_spent(self) -> int:
        """Training epochs used so far (promotions cost only their extra epochs)."""
        total = 0
        for k, res in enumerate(self.results):
            total += len(res) * (self.rungs[k] - (self.rungs[k - 1] if k else 0))
        return total

    def state_dict(self) -> dict[str, Any]:
        return {
            "rungs": self.rungs,
            "eta": self.eta,
            "results": [
                [[c, "inf" if math.isinf(v) else v] for c, v in r.items()] for r in self.results
            ],
            "promoted": [sorted(p) for p in self.promoted],
            "started": self.started,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state["rungs"]) != self.rungs or int(state["eta"]) != self.eta:
            raise EvoaeError("the checkpoint's rungs differ from these settings")
        self.results = [{int(c): float(v) for c, v in r} for r in state["results"]]
        self.promoted = [set(int(c) for c in p) for p in state["promoted"]]
        self.started = int(state["started"])
