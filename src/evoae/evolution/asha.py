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

The scheduler is a pure, JSON-checkpointable bookkeeping object. :class:`Asha` wraps any
strategy with it (``--fidelity asha``): the inner strategy proposes the new candidates
and is told each one's rung-0 result as soon as it exists (every result it learns from
has the same fidelity); promotions are the scheduler's. The search's budget is in
training epochs (default: the inner strategy's evaluations x ``--epochs``, the compute
the strategy alone would spend); a promotion costs only its extra epochs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evoae.errors import EvoaeError
from evoae.evolution.base import Plan, Strategy
from evoae.spaces import Genome


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
        due = self.promotions(1)
        if due:
            self.promoted[due[0].rung - 1].add(due[0].candidate)
            return due[0]
        return self.start()

    def promotions(self, n: int, budget: float = math.inf) -> list[Job]:
        """Up to ``n`` due promotions, highest rung first, while their extra epochs fit in
        ``budget``; nothing is marked (the caller marks what it runs)."""
        out: list[Job] = []
        cost = 0
        for k in range(len(self.rungs) - 2, -1, -1):
            results = self.results[k]
            ranked = sorted(results.items(), key=lambda kv: (kv[1], kv[0]))[
                : len(results) // self.eta
            ]
            for cand, loss in ranked:
                if len(out) == n:
                    return out
                if cand in self.promoted[k] or not math.isfinite(loss):
                    continue
                extra = self.rungs[k + 1] - self.rungs[k]
                if cost + extra > budget:
                    return out
                cost += extra
                out.append(Job(cand, k + 1, self.rungs[k + 1], self.rungs[k]))
        return out

    def start(self) -> Job:
        """A new candidate at rung 0."""
        cand = self.started
        self.started += 1
        return Job(cand, 0, self.rungs[0], 0)

    def hopeless(self, k: int, budget: float) -> set[int]:
        """Candidates of rung ``k`` (not promoted out of it) that no promotion can reach
        any more: even if every epoch of ``budget`` added results to rung ``k``, they
        would not rank in its top ``1/eta``."""
        if not math.isfinite(budget):
            return set()
        results = self.results[k]
        step = self.rungs[k] - (self.rungs[k - 1] if k else 0)
        more = int(max(budget, 0) // step)
        ranked = sorted(results.items(), key=lambda kv: (kv[1], kv[0]))
        reach = (len(results) + more) // self.eta
        return {
            c
            for i, (c, loss) in enumerate(ranked)
            if c not in self.promoted[k] and (i >= reach or not math.isfinite(loss))
        }

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


def evaluations_of(options: Any) -> int | None:
    """How many candidates a strategy's own budget evaluates (None: not known)."""
    if isinstance(getattr(options, "evaluations", None), int):
        return int(options.evaluations)
    if isinstance(getattr(options, "generations", None), int):  # the microbial GA
        return int(getattr(options, "population", 0)) + int(options.generations)
    return None


def _raised(options: Any, at_least: int) -> Any:
    """``options`` with every budget (a ``grows`` integer option) at least ``at_least``."""
    if not dataclasses.is_dataclass(options):
        return options
    changes = {
        f.name: max(getattr(options, f.name), at_least)
        for f in dataclasses.fields(options)
        if f.metadata.get("grows") and isinstance(getattr(options, f.name), int)
    }
    return dataclasses.replace(options, **changes)


class Asha(Strategy):
    """ASHA around ``inner``: new candidates from ``inner``, promotions by the scheduler.

    One :meth:`ask` returns either the due promotions (at most ``inner.parallelism``,
    highest rung first, as long as their extra epochs fit in the budget) or one batch of
    the inner strategy's, at rung 0. Each planned training saves its state unless it is
    at the top rung; a promotion continues the state of its candidate's previous row.
    The best candidate is the best at the highest rung reached.
    """

    name = "asha"
    unit = "epochs"

    def __init__(
        self,
        inner: Strategy,
        scheduler: SuccessiveHalving,
        *,
        epoch_budget: int,
        options: Any = None,
    ) -> None:
        super().__init__(inner.space, options if options is not None else inner.options)
        self.inner = inner
        self.sh = scheduler
        self.budget = int(epoch_budget)
        self.objectives = inner.objectives  # type: ignore[misc]
        self.spent = 0
        #: candidate -> genome; candidate -> journal id of its latest row.
        self.genomes: dict[int, Genome] = {}
        self.rows: dict[int, int] = {}
        self._pending: list[Job] = []
        self._ids: list[int] = []

    @classmethod
    def around(
        cls,
        inner: Strategy,
        *,
        seed: int,
        epochs: int,
        min_epochs: int = 1,
        eta: int = 3,
        max_epochs: int = 4,
        epoch_budget: int | None = None,
        rebuild: bool = True,
    ) -> Asha:
        """Wrap ``inner``; ``epoch_budget`` defaults to its evaluations x ``epochs``.

        With ``rebuild`` (a registered strategy) the inner strategy is rebuilt with its
        own budget raised so that it never runs out of candidates before the epoch
        budget does; the options stored with the run stay the user's.
        """
        sh = SuccessiveHalving(min_epochs, eta, max_epochs)
        if epoch_budget is None:
            n = evaluations_of(inner.options)
            if n is None:
                who = inner.name or type(inner).__name__
                raise EvoaeError(
                    f"cannot tell how many candidates strategy {who} evaluates: give ASHA's "
                    "budget with --epoch-budget"
                )
            epoch_budget = n * int(epochs)
        if epoch_budget < sh.rungs[0]:
            raise EvoaeError(
                f"an epoch budget of {epoch_budget} cannot pay for one first-rung training "
                f"({sh.rungs[0]} epochs): raise --epoch-budget (or the strategy's budget) or "
                "lower --min-epochs"
            )
        user = inner.options
        if rebuild:
            most = -(-int(epoch_budget) // sh.rungs[0])  # rung-0 trainings the budget allows
            inner = type(inner)(inner.space, _raised(user, most), seed=seed)
        return cls(inner, sh, epoch_budget=epoch_budget, options=user)

    # ------------------------------------------------------------ ask / tell

    def add_seeds(self, genomes: Sequence[Genome]) -> None:
        self.inner.add_seeds(genomes)

    @property
    def parallelism(self) -> int:
        return self.inner.parallelism

    @property
    def done(self) -> bool:
        left = self.budget - self.spent
        if self.sh.promotions(1, left):
            return False
        return left < self.sh.rungs[0] or self.inner.done

    def progress(self) -> tuple[int, int]:
        return self.spent, self.budget

    def ask(self) -> list[Genome]:
        jobs = self.sh.promotions(self.parallelism, self.budget - self.spent)
        if jobs:
            for job in jobs:
                self.sh.promoted[job.rung - 1].add(job.candidate)
            genomes = [self.genomes[job.candidate] for job in jobs]
        else:
            genomes = list(self.inner.ask())
            jobs = [self.sh.start() for _ in genomes]
            for job, g in zip(jobs, genomes, strict=True):
                self.genomes[job.candidate] = g
        self._pending, self._ids = jobs, []
        return genomes

    def plan(self, genomes: Sequence[Genome], first_id: int) -> list[Plan]:
        top = len(self.sh.rungs) - 1
        self._ids = [first_id + i for i in range(len(self._pending))]
        return [
            Plan(
                epochs=job.epochs,
                resume=self.rows.get(job.candidate) if job.rung > 0 else None,
                save=job.rung < top,
                rung=job.rung,
            )
            for job in self._pending
        ]

    def tell(self, genomes: Sequence[Genome], fitness: Sequence[Any]) -> None:
        jobs = self._pending
        if len(genomes) != len(jobs) or len(fitness) != len(jobs):
            raise ValueError("one fitness value per asked genome is needed")
        for i, (job, value) in enumerate(zip(jobs, fitness, strict=True)):
            loss = value[0] if isinstance(value, tuple | list) else value
            self.sh.report(job, float(loss))
            self.spent += job.epochs - job.resume_epochs
            if self._ids:
                self.rows[job.candidate] = self._ids[i]
        if jobs and jobs[0].rung == 0:  # a batch of the inner strategy's own
            self.inner.tell(genomes, fitness)
        self._pending, self._ids = [], []

    def live_states(self) -> set[int]:
        if self.done:
            return set()
        left = self.budget - self.spent
        live = set()
        for k in range(len(self.sh.rungs) - 1):
            waiting = set(self.sh.results[k]) - self.sh.promoted[k]
            for cand in waiting - self.sh.hopeless(k, left):
                if cand in self.rows:
                    live.add(self.rows[cand])
        return live

    def population_fitness(self) -> list[float] | None:
        return self.inner.population_fitness()

    # ------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        return {
            "inner": self.inner.state_dict(),
            "scheduler": self.sh.state_dict(),
            "spent": self.spent,
            "genomes": [[c, self.space.to_json(g)] for c, g in sorted(self.genomes.items())],
            "rows": sorted([c, i] for c, i in self.rows.items()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state["inner"])
        self.sh.load_state_dict(state["scheduler"])
        self.spent = int(state["spent"])
        self.genomes = {int(c): self.space.from_json(g) for c, g in state["genomes"]}
        self.rows = {int(c): int(i) for c, i in state["rows"]}
        if set(self.rows) - set(self.genomes) or self.sh.started != len(self.genomes):
            raise ValueError("ASHA state: candidates without genomes")
