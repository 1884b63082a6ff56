"""Random search: every candidate drawn independently from the space.

The control every comparison needs (a strong baseline in architecture search). Each
:meth:`~RandomSearch.ask` draws ``batch`` genomes (fewer at the end of the budget), so
parallel executors always have work. The space's seed genomes (the PCA seed) take
the place of the first draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evoae.evolution.base import Strategy
from evoae.options import option
from evoae.spaces import Genome, Space


@dataclass
class RandomOptions:
    """Settings of random search."""

    evaluations: int = option(
        120,
        "candidates to evaluate (120 = the seed preset's compute)",
        low=1,
        high=10_000_000,
        grows=True,
        short="-e",
    )
    batch: int = option(1, "candidates drawn per batch (for parallel executors)", low=1)


class RandomSearch(Strategy):
    """Draw ``evaluations`` genomes uniformly from the space, ``batch`` at a time."""

    name = "random"
    unit = "evaluations"
    Options = RandomOptions

    def __init__(
        self, space: Space, options: RandomOptions | None = None, *, seed: int = 0, **kw: Any
    ) -> None:
        super().__init__(space, options, seed=seed, **kw)
        self.told = 0
        self._asked = 0

    @property
    def done(self) -> bool:
        return self.told >= self.options.evaluations

    @property
    def parallelism(self) -> int:
        return self.options.batch

    def progress(self) -> tuple[int, int]:
        return self.told, self.options.evaluations

    def ask(self) -> list[Genome]:
        n = min(self.options.batch, self.options.evaluations - self.told)
        self._asked = n
        genomes = [self.space.sample(self.rng) for _ in range(n)]
        return self.seeded(genomes) if self.told == 0 else genomes

    def tell(self, genomes: Sequence[Genome], fitness: Sequence[Any]) -> None:
        if len(genomes) != len(fitness):
            raise ValueError("one fitness value per genome is needed")
        self.told += len(genomes)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "told": self.told}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.told = int(state["told"])
