"""Regularized (aging) evolution (Real et al., AAAI 2019).

The population is a queue ordered by age. Until it holds ``population`` members, every
candidate is drawn at random. Then each child comes from a tournament: ``sample``
members are drawn without replacement, the fittest of them (lowest loss; the older on a
tie) is copied and mutated (each gene redrawn with probability ``mutation``, default
``1 / n_genes``; at least one gene always changes), the child is evaluated and joins the
queue, and the *oldest* member leaves it, however fit. Ageing out good members is the
regularization: a lineage survives only by producing good children again.

Batched (asynchronous-friendly) mode: each :meth:`~AgingEvolution.ask` returns ``batch``
children whose tournaments all draw from the current population, so a parallel executor
always has ``batch`` candidates to train; ``batch = 1`` is the sequential algorithm. The
default, 2, keeps both cores of a 2-core machine busy under the ``auto`` executor (a
process pool of 2) and gives the same journal on any machine for the same seed (runs
stored before it had 1, and resume with it).
The published NAS runs used P = 100, S = 25 for thousands of evaluations; the defaults
(P = 20, S = 5) suit budgets of about a hundred evaluations (the seed preset's 120).

``inherit=True`` (Lamarckian): a child starts from the trained weights of the winner it
mutates (:meth:`AgingEvolution.parents`; the search loop does the rest).

``morph=True`` (the default of new runs; stored runs without the option read False):
Lamarckian growth by network morphism, which implies inheritance (a morph only pays
when the child starts from its parent's weights). Instead of per-gene redraws, each child is its
tournament winner changed by one function-preserving step drawn with the strategy's
random generator (:meth:`evoae.spaces.Space.morph`; dense: widen, deepen, change an
activation on a zero-started branch, or change a training gene, see
:mod:`evoae.families.dense.morph`), and the search hands the inheritance the parent's
spec so the child starts computing what its parent did. A parent no morph applies to
(or a space without morphs, such as conv) is mutated as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evoae.errors import EvoaeError
from evoae.evolution.base import enc, load_population
from evoae.evolution.steady import SteadyState
from evoae.options import option
from evoae.spaces import Genome, Space

#: Tries to redraw a gene to a different value before accepting an unchanged child.
_CHANGE_TRIES = 20


@dataclass
class AgingOptions:
    """Settings of aging evolution."""

    population: int = option(20, "population size P (the published NAS runs: 100)", low=2)
    sample: int = option(5, "tournament size S: members sampled per child (published: 25)", low=1)
    evaluations: int = option(
        120,
        "candidates to evaluate, initial population included (120 = the seed preset's)",
        low=1,
        high=10_000_000,
        grows=True,
        short="-e",
    )
    batch: int = option(
        2,
        "children asked for at once, each from a tournament of the same population (the "
        "auto executor trains them on both cores of a 2-core machine; 1 = the sequential "
        "algorithm)",
        low=1,
        legacy=1,
    )
    mutation: float | None = option(
        None,
        "per-gene mutation probability (at least one gene always changes)",
        low=0.0,
        high=1.0,
        default_text="1/genes",
        kind=float,
    )
    inherit: bool = option(
        False,
        "start each offspring from its parent's trained weights (Lamarckian; Net2Net "
        "widening where a layer grew)",
        legacy=False,
    )
    morph: bool = option(
        True,
        "each offspring is its parent changed by one function-preserving step (widen, "
        "deepen, an activation on a zero-started branch, a training gene) and starts "
        "from the parent's trained weights (implies inheritance; --no-morph: per-gene "
        "mutation, from scratch unless --inherit; off under --fidelity asha)",
        legacy=False,
    )


class AgingEvolution(SteadyState):
    """Aging evolution: tournament of ``sample``, mutate the best, retire the oldest."""

    name = "aging"
    Options = AgingOptions

    def __init__(
        self, space: Space, options: AgingOptions | None = None, *, seed: int = 0, **kw: Any
    ) -> None:
        super().__init__(space, options, seed=seed, **kw)
        options = self.options
        if options.sample > options.population:
            raise EvoaeError(
                f"sample ({options.sample}) must be at most the population ({options.population})"
            )
        #: The fitness of each member.
        self.fitness: list[float] = []
        self._parents: list[Genome] = []  # the tournament winners of the last offspring

    @property
    def inherits(self) -> bool:
        """Offspring start from their parents' trained weights: ``inherit``, or ``morph``
        in a space that has morphisms (a conv space has none: its offspring are mutated
        and trained from scratch as without the option)."""
        morphs = type(self.space).morph is not Space.morph
        return bool(self.options.inherit or (self.options.morph and morphs))

    def population_fitness(self) -> list[float] | None:
        return list(self.fitness) if self.population else None

    def offspring(self, n: int) -> list[Genome]:
        self._parents = []
        children = []
        for _ in range(n):  # tournament then mutation, one child at a time
            parent = self.population[self._tournament()]
            self._parents.append(parent)
            child = self.space.morph(parent, self.rng) if self.options.morph else None
            children.append(self._mutate(parent) if child is None else child)
        return children

    def parents(self, genomes: Sequence[Genome]) -> list[Genome | None]:
        """An offspring's parent is the tournament winner it mutates; the random initial
        population has none."""
        if len(self.population) < self.options.population or len(genomes) != len(self._parents):
            return [None] * len(genomes)
        return list(self._parents)

    def _tournament(self) -> int:
        """Index of the fittest of ``sample`` members drawn without replacement."""
        picks = self.rng.choice(len(self.population), size=self.options.sample, replace=False)
        return min((int(i) for i in picks), key=lambda i: (self.fitness[i], i))

    def _mutate(self, parent: Genome) -> Genome:
        child = list(parent)
        genes = self.space.genes
        changed = False
        for i, gene in enumerate(genes):
            if self.rng.random() < self.mutation:
                child[i] = gene.sample(self.rng)
                changed = changed or child[i] != parent[i]
        if not changed:  # a copy teaches nothing: change one gene
            i = int(self.rng.integers(len(genes)))
            for _ in range(_CHANGE_TRIES):
                child[i] = genes[i].sample(self.rng)
                if child[i] != parent[i]:
                    break
        return tuple(child)

    def remember(self, fitness: Sequence[Any]) -> None:
        self.fitness += [float(f) for f in fitness]

    def survive(self) -> None:
        """Retire the oldest, however fit."""
        excess = len(self.population) - self.options.population
        del self.population[:excess], self.fitness[:excess]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "fitness": [enc(f) for f in self.fitness]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.population, self.fitness = load_population(self.space, state)
