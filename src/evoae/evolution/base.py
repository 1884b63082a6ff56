"""The ask/tell interface every search strategy implements.

A strategy owns its population (if it has one), its counters and its random
generator, and nothing else: it never trains anything. The search loop calls
:meth:`Strategy.ask` for a batch of genomes, evaluates them, journals the results and
calls :meth:`Strategy.tell` with their fitness, in the same order, always minimised
(``inf`` for failed candidates). :meth:`Strategy.state_dict` is JSON-able and
restores the strategy exactly, random generator included, so a run resumes to the
same journal as an uninterrupted one.

To write a strategy: subclass :class:`Strategy`, declare its settings as an
``Options`` dataclass (fields made with :func:`evoae.options.option`), implement
``ask``, ``tell``, ``done`` and ``progress``, extend ``state_dict`` /
``load_state_dict`` with whatever determines future asks, and register it with
:func:`evoae.evolution.register`. A multi-objective strategy names what it minimises
in ``objectives`` (fields of an evaluation: ``fitness``, ``params``, or a loss term);
it is then told one tuple per genome.

Seed genomes: before the first :meth:`Strategy.ask` the search hands the strategy the
space's seed genomes (:meth:`Strategy.add_seeds`; for dense spaces the PCA-initialised
linear autoencoder). A strategy includes them in its first batch; the built-ins put
them in place of their first random draws (the draws are still made, so the rest of
the batch is the one an unseeded search asks for). :meth:`Strategy.seeded` does that.

Multi-fidelity (optional): :meth:`Strategy.plan` tells the search how to train each
asked genome (epochs, and the journal row whose saved training state it continues);
:meth:`Strategy.live_states` names the saved states later plans may still continue. A
strategy that does not override them trains every genome the settings' epochs from
scratch, as before. :class:`evoae.evolution.asha.Asha` (``--fidelity asha``) uses both.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from evoae.options import check
from evoae.spaces import Genome, Space


@dataclass(frozen=True)
class Plan:
    """How the search trains one asked genome (multi-fidelity).

    ``epochs`` in total; continuing from the training state saved with journal row
    ``resume`` (None: from scratch; a missing or damaged state also trains from
    scratch, to the same result); ``save`` keeps this training's state for a later
    plan; ``rung`` is recorded in the row's ``terms["rung"]``.
    """

    epochs: int
    resume: int | None = None
    save: bool = False
    rung: int = 0


@dataclass
class NoOptions:
    """A strategy without settings of its own."""


class Strategy(ABC):
    """A search strategy over one :class:`~evoae.spaces.Space`.

    ``options`` is an instance of the class's ``Options`` dataclass; ``seed`` seeds
    :attr:`rng`, the only source of randomness a strategy may use.
    """

    #: Registry name (``--strategy NAME``).
    name: ClassVar[str] = ""
    #: What :meth:`progress` counts ("tournaments", "evaluations", ...).
    unit: ClassVar[str] = "evaluations"
    #: The settings dataclass; its fields become ``--flags`` of ``evoae search``.
    Options: ClassVar[type] = NoOptions
    #: What the strategy minimises, in order; one name = a single fitness per genome.
    objectives: ClassVar[tuple[str, ...]] = ("fitness",)

    def __init__(self, space: Space, options: Any = None, *, seed: int = 0, **kw: Any) -> None:
        """``options`` (else ``Options(**kw)``) is checked against its declarations."""
        self.space = space
        self.options = options if options is not None else self.Options(**kw)
        if dataclasses.is_dataclass(self.options):
            check(self.options)
        self.rng = np.random.default_rng(int(seed))
        self.seeds: list[Genome] = []

    def add_seeds(self, genomes: Sequence[Genome]) -> None:
        """Genomes to include in the first batch (called by the search before any ask)."""
        self.seeds = [tuple(g) for g in genomes]

    def seeded(self, genomes: list[Genome]) -> list[Genome]:
        """``genomes`` (a first batch) with its first members replaced by the seeds."""
        n = min(len(self.seeds), len(genomes))
        return [*self.seeds[:n], *genomes[n:]]

    @abstractmethod
    def ask(self) -> list[Genome]:
        """The next batch of genomes to evaluate (empty only when :attr:`done`)."""

    @abstractmethod
    def tell(self, genomes: Sequence[Genome], fitness: Sequence[Any]) -> None:
        """Fitness of the genomes returned by the last :meth:`ask`, in order."""

    @property
    @abstractmethod
    def done(self) -> bool:
        """True when the budget is spent."""

    @abstractmethod
    def progress(self) -> tuple[int, int]:
        """``(done, total)`` in :attr:`unit`, for progress bars and the journal."""

    @property
    def parallelism(self) -> int:
        """Most candidates one :meth:`ask` returns: how many can train at once."""
        return 1

    def row_generations(self, n: int) -> list[int]:
        """The generation journaled with each of the ``n`` rows just asked (default:
        :meth:`progress` before the batch, for every row)."""
        return [self.progress()[0]] * n

    def plan(self, genomes: Sequence[Genome], first_id: int) -> list[Plan] | None:
        """How to train the genomes of the last :meth:`ask` (called once per ask).

        ``first_id`` is the journal id the first genome's row gets; the others follow in
        order. None (the default): the settings' epochs, from scratch, nothing saved.
        """
        return None

    def live_states(self) -> set[int] | None:
        """Journal ids whose saved states later plans may continue from; the search
        deletes the other saved states after each batch. None: the strategy saves none."""
        return None

    def parents(self, genomes: Sequence[Genome]) -> list[Genome | None]:
        """The parent of each genome of the last :meth:`ask`, in order (None: none):
        with weight inheritance on, a child starts from its parent's trained weights.
        Called between ask and tell; the default names no parents."""
        return [None] * len(genomes)

    def population_fitness(self) -> list[float] | None:
        """The current population's fitness, for spread plots; None without a population."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """Everything that determines future asks, JSON-able."""
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]

    def options_dict(self) -> dict[str, Any]:
        return asdict(self.options)


def enc(x: float) -> float | str:
    """JSON has no infinity: store it as a string."""
    return "inf" if x == float("inf") else float(x)


def dec(x: float | str) -> float:
    return float(x)


def load_population(space: Space, state: dict[str, Any]) -> tuple[list[Genome], list[float]]:
    """A checkpoint's ``population`` (genomes of ``space``) and its ``fitness`` (one
    number or ``"inf"`` each); ``ValueError`` names what does not fit."""
    pop, fit = state["population"], state["fitness"]
    if not isinstance(pop, list) or not isinstance(fit, list):
        raise ValueError("strategy.population and strategy.fitness must be lists")
    if len(pop) != len(fit):
        raise ValueError(f"strategy.fitness has {len(fit)} values for {len(pop)} genomes")
    values = []
    for i, f in enumerate(fit):
        if not (isinstance(f, int | float) and not isinstance(f, bool) or f == "inf"):
            raise ValueError(f"strategy.fitness[{i}] must be a number, got {f!r}")
        values.append(dec(f))
    return [space.check_genes(g) for g in pop], values
