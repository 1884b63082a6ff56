"""The common frame of strategies that keep a population and spend ``evaluations``.

Until the population holds ``population`` members, candidates are drawn at random (the
space's seed genomes, e.g. the PCA seed, first); then every ask returns ``batch``
offspring from :meth:`SteadyState.offspring`. Aging evolution and NSGA-II differ only in
how offspring are made and which members survive.
"""

from __future__ import annotations

from typing import Any

from evoae.evolution.base import Strategy
from evoae.spaces import Genome, Space


class SteadyState(Strategy):
    """A population strategy with an evaluation budget; subclasses make the offspring.

    ``options`` must have ``population``, ``evaluations``, ``batch`` and ``mutation``
    (None: ``1 / n_genes``).
    """

    unit = "evaluations"

    def __init__(self, space: Space, options: Any, *, seed: int = 0) -> None:
        super().__init__(space, options, seed=seed)
        self.mutation = 1.0 / space.n_genes if options.mutation is None else float(options.mutation)
        #: Members, oldest first.
        self.population: list[Genome] = []
        self.told = 0
        self._asked: int | None = None

    @property
    def done(self) -> bool:
        return self.told >= self.options.evaluations

    def progress(self) -> tuple[int, int]:
        return self.told, self.options.evaluations

    def ask(self) -> list[Genome]:
        if self._asked is not None:
            raise RuntimeError("ask() called twice without tell()")
        left = self.options.evaluations - self.told
        missing = self.options.population - len(self.population)
        if missing > 0:  # the random initial population, a batch at a time
            n = min(self.options.batch, missing, left)
            genomes = [self.space.sample(self.rng) for _ in range(n)]
            if self.told == 0:  # the space's seed genomes (the PCA seed) come first
                genomes = self.seeded(genomes)
        else:
            genomes = self.offspring(min(self.options.batch, left))
        self._asked = len(genomes)
        return genomes

    def offspring(self, n: int) -> list[Genome]:
        """``n`` children of the current population."""
        raise NotImplementedError
