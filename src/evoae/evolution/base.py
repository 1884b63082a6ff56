"""The ask/tell interface every search strategy implements.

A strategy owns its population, its counters and its random generator, and nothing
else: it never trains anything. ``ask`` returns a batch of genomes to evaluate (so
evaluators that train many candidates at once can be fed), ``tell`` receives their
fitness (lower is better, ``inf`` for failures) in the same order. ``state_dict`` is
JSON-able and restores the strategy exactly, random generator included.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from evoae.spaces import Genome, Space


class Strategy(ABC):
    """A search strategy over one :class:`~evoae.spaces.Space`."""

    name: str = ""

    def __init__(self, space: Space, seed: int) -> None:
        self.space = space
        self.rng = np.random.default_rng(int(seed))
        self.best_genome: Genome | None = None
        self.best_fitness = float("inf")

    @abstractmethod
    def ask(self) -> list[Genome]:
        """The next batch of genomes to evaluate (empty when :attr:`done`)."""

    @abstractmethod
    def tell(self, genomes: Sequence[Genome], fitness: Sequence[float]) -> None:
        """Fitness of the genomes returned by the last :meth:`ask`, in order."""

    @property
    @abstractmethod
    def done(self) -> bool:
        """True when the budget is spent."""

    @property
    @abstractmethod
    def generation(self) -> int:
        """Progress counter: completed generations (tournaments for the microbial GA)."""

    @abstractmethod
    def population_fitness(self) -> list[float]:
        """Current population's fitness values (for spread plots)."""

    def _track_best(self, genomes: Sequence[Genome], fitness: Sequence[float]) -> None:
        for g, f in zip(genomes, fitness, strict=True):
            if f < self.best_fitness:
                self.best_genome, self.best_fitness = tuple(g), float(f)

    def state_dict(self) -> dict[str, Any]:
        """Everything that determines future asks, JSON-able."""
        return {
            "rng": self.rng.bit_generator.state,
            "best_genome": None if self.best_genome is None else list(self.best_genome),
            "best_fitness": _enc(self.best_fitness),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        bg = state["best_genome"]
        self.best_genome = None if bg is None else self.space.validate(bg)
        self.best_fitness = _dec(state["best_fitness"])


def _enc(x: float) -> float | str:
    """JSON has no infinity: store it as a string."""
    return "inf" if x == float("inf") else float(x)


def _dec(x: float | str) -> float:
    return float(x)
