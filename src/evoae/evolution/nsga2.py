"""NSGA-II (Deb et al. 2002) over validation loss and parameter count.

Two objectives, both minimised: the candidate's fitness and its number of parameters
(``objectives = ("fitness", "params")``; a failed candidate is ``(inf, inf)``). The
first ``population`` candidates are drawn at random. Then each :meth:`~NSGA2.ask`
breeds ``batch`` children: two parents by binary tournament (lower non-domination rank,
then larger crowding distance), uniform crossover (each gene from the second parent
with probability ``crossover``) and mutation (each gene redrawn with probability
``mutation``, default ``1 / n_genes``). When told, parents and children are merged and
the ``population`` best survive by rank, then crowding distance ((mu + lambda)
survival). ``batch = population`` is the generational algorithm; smaller batches make
it steady-state.

The Pareto front of a run is read from its journal (``evoae runs show RUN``), and any
member can be retrained and exported (``evoae export RUN --pick N``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evoae.evolution.base import dec, enc
from evoae.evolution.steady import SteadyState
from evoae.options import option
from evoae.spaces import Genome, Space

Point = tuple[float, ...]


@dataclass
class NSGA2Options:
    """Settings of NSGA-II."""

    population: int = option(20, "population size (mu)", low=2)
    evaluations: int = option(
        120,
        "candidates to evaluate, initial population included",
        low=1,
        high=10_000_000,
        grows=True,
        short="-e",
    )
    batch: int = option(
        10, "children per generation (lambda; also the batch for parallel executors)", low=1
    )
    crossover: float = option(
        0.5, "probability of taking each gene from the second parent", low=0.0, high=1.0
    )
    mutation: float | None = option(
        None,
        "per-gene mutation probability",
        low=0.0,
        high=1.0,
        default_text="1/genes",
        kind=float,
    )


def dominates(a: Point, b: Point) -> bool:
    """``a`` is no worse than ``b`` in every objective and better in one."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def nondominated_sort(points: Sequence[Point]) -> list[list[int]]:
    """Indices grouped into fronts, best first (fast non-dominated sort)."""
    n = len(points)
    dominated_by: list[list[int]] = [[] for _ in range(n)]
    count = [0] * n
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(points[i], points[j]):
                dominated_by[i].append(j)
                count[j] += 1
            elif dominates(points[j], points[i]):
                dominated_by[j].append(i)
                count[i] += 1
    fronts: list[list[int]] = []
    current = [i for i in range(n) if count[i] == 0]
    while current:
        fronts.append(current)
        nxt = []
        for i in current:
            for j in dominated_by[i]:
                count[j] -= 1
                if count[j] == 0:
                    nxt.append(j)
        current = sorted(nxt)
    return fronts


def crowding(points: Sequence[Point], front: Sequence[int]) -> dict[int, float]:
    """Crowding distance of each member of one front (boundaries: infinite)."""
    dist = {i: 0.0 for i in front}
    if any(not math.isfinite(v) for i in front for v in points[i]):
        return dist  # the front of failed candidates: no spread to keep
    for m in range(len(points[front[0]])):
        order = sorted(front, key=lambda i: (points[i][m], i))
        lo, hi = points[order[0]][m], points[order[-1]][m]
        dist[order[0]] = dist[order[-1]] = math.inf
        if hi == lo:
            continue
        for k in range(1, len(order) - 1):
            dist[order[k]] += (points[order[k + 1]][m] - points[order[k - 1]][m]) / (hi - lo)
    return dist


def rank_and_crowding(points: Sequence[Point]) -> tuple[list[int], list[float]]:
    """Each point's front index and crowding distance."""
    rank = [0] * len(points)
    crowd = [0.0] * len(points)
    for r, front in enumerate(nondominated_sort(points)):
        for i, d in crowding(points, front).items():
            rank[i], crowd[i] = r, d
    return rank, crowd


class NSGA2(SteadyState):
    """NSGA-II on (fitness, params): a Pareto front of small and accurate autoencoders."""

    name = "nsga2"
    Options = NSGA2Options
    objectives = ("fitness", "params")

    def __init__(
        self, space: Space, options: NSGA2Options | None = None, *, seed: int = 0, **kw: Any
    ) -> None:
        super().__init__(space, options, seed=seed, **kw)
        #: The (fitness, params) point of each member.
        self.values: list[Point] = []

    def population_fitness(self) -> list[float] | None:
        return [v[0] for v in self.values] if self.population else None

    def offspring(self, n: int) -> list[Genome]:
        rank, crowd = rank_and_crowding(self.values)
        genomes = []
        for _ in range(n):
            a = self._tournament(rank, crowd)
            b = self._tournament(rank, crowd)
            genomes.append(self._child(self.population[a], self.population[b]))
        return genomes

    def _tournament(self, rank: list[int], crowd: list[float]) -> int:
        i, j = (int(k) for k in self.rng.integers(len(self.population), size=2))
        key = {k: (rank[k], -crowd[k], k) for k in (i, j)}
        return min((i, j), key=key.__getitem__)

    def _child(self, a: Genome, b: Genome) -> Genome:
        child = list(a)
        for i in range(len(child)):
            if self.rng.random() < self.options.crossover:
                child[i] = b[i]
        for i, gene in enumerate(self.space.genes):
            if self.rng.random() < self.mutation:
                child[i] = gene.sample(self.rng)
        return tuple(child)

    def remember(self, fitness: Sequence[Any]) -> None:
        self.values += [_point(v) for v in fitness]

    def survive(self) -> None:
        """(mu + lambda): the best fronts, the last one cut by crowding distance.

        Copies (the same (fitness, params) point: the same phenotype, as when offspring
        of one strong member, e.g. the PCA seed, repeat it) compete only for the places
        left once every distinct point is ranked, so they cannot crowd the population
        down to one front member.
        """
        mu = self.options.population
        first: dict[tuple[float, ...], int] = {}
        for i, v in enumerate(self.values):
            first.setdefault(v, i)
        distinct = sorted(first.values())
        is_first = set(distinct)
        copies = [i for i in range(len(self.values)) if i not in is_first]
        keep: list[int] = []
        for pool in (distinct, copies):
            if len(keep) >= mu:
                break
            values = [self.values[i] for i in pool]
            for front in nondominated_sort(values):
                members = [pool[j] for j in front]
                if len(keep) + len(members) <= mu:
                    keep += members
                    continue
                dist = crowding(values, front)
                ranked = sorted(front, key=lambda j: (-dist[j], j))
                keep += [pool[j] for j in ranked[: mu - len(keep)]]
                break
        keep.sort()  # survivors keep their age order
        self.population = [self.population[i] for i in keep]
        self.values = [self.values[i] for i in keep]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "values": [[enc(x) for x in v] for v in self.values]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.values = [tuple(dec(x) for x in v) for v in state["values"]]
        if len(self.values) != len(self.population) or any(
            len(v) != 2 or any(math.isnan(x) for x in v) for v in self.values
        ):
            raise ValueError("values must be one (fitness, params) pair of numbers per genome")


def _point(v: Any) -> Point:
    if isinstance(v, int | float):  # told a bare fitness (single-objective use)
        return (float(v), 0.0)
    return tuple(float(x) for x in v)
