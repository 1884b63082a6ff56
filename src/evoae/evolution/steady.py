"""The common frame of strategies that keep a population and spend ``evaluations``.

Until the population holds ``population`` members, candidates are drawn at random (the
space's seed genomes, e.g. the PCA seed, first); then every ask returns ``batch``
offspring from :meth:`SteadyState.offspring`. Aging evolution and NSGA-II differ only in
how offspring are made and which members survive.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evoae.evolution.base import Strategy
from evoae.spaces import Genome, Space


class SteadyState(Strategy):
    """A population strategy with an evaluation budget; subclasses make the offspring.

    ``options`` must have ``population``, ``evaluations``, ``batch`` and ``mutation``
    (None: ``1 / n_genes``).
    """

    unit = "evaluations"

    def __init__(self, space: Space, options: Any = None, *, seed: int = 0, **kw: Any) -> None:
        super().__init__(space, options, seed=seed, **kw)
        mutation = self.options.mutation
        self.mutation = 1.0 / space.n_genes if mutation is None else float(mutation)
        #: Members, oldest first.
        self.population: list[Genome] = []
        self.told = 0
        self._asked: int | None = None

    @property
    def done(self) -> bool:
        return self.told >= self.options.evaluations

    @property
    def parallelism(self) -> int:
        """A batch of offspring trains at once (the ``auto`` executor's pool size)."""
        return int(self.options.batch)

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

    def tell(self, genomes: Sequence[Genome], fitness: Sequence[Any]) -> None:
        if self._asked is None:
            raise RuntimeError("tell() called without ask()")
        if len(genomes) != len(fitness) or len(genomes) != self._asked:
            raise ValueError("one fitness value per asked genome is needed")
        self._asked = None
        self.population += [tuple(g) for g in genomes]
        self.remember(fitness)
        self.told += len(genomes)
        if len(self.population) > self.options.population:
            self.survive()

    def offspring(self, n: int) -> list[Genome]:
        """``n`` children of the current population."""
        raise NotImplementedError

    def remember(self, fitness: Sequence[Any]) -> None:
        """Keep the told values of the members just appended to the population."""
        raise NotImplementedError

    def survive(self) -> None:
        """Cut the population back to ``population`` members."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "told": self.told,
            "population": [list(g) for g in self.population],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        told = state["told"]
        if isinstance(told, bool) or not isinstance(told, int) or told < 0:
            raise ValueError(f"told must be an integer >= 0, got {told!r}")
        self.told = told
        self.population = [self.space.validate(g) for g in state["population"]]
        self._asked = None
