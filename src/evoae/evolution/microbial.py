"""The microbial genetic algorithm (Harvey) of the published autoencoder GA.

One tournament: pick individual ``a`` uniformly, then ``b = (a + 1 + U{0..D-1}) mod N``
from the deme of size D that follows it, wrapping around the population. The fitter one
(lower loss; ``a`` on a tie) wins and is left untouched. Each gene of the loser is
overwritten by the winner's with probability ``recombination`` (uniform crossover), then
each gene is redrawn with probability ``mutation`` (default ``1 / n_genes``). The
offspring replaces the loser and is evaluated.

Batched mode: with ``concurrent = K > 1`` each :meth:`ask` runs K tournaments on disjoint
pairs drawn from the same population snapshot, so their offspring can be trained
together (fewer only when no two free members share a deme, e.g. ``deme=1`` with K
close to N/2). K = 1 is exactly the published algorithm. With K > 1, an offspring cannot
compete until the whole batch has been told, so selection pressure per tournament is the
same but information spreads a batch later; the population changes by up to K members
at a time.

Overlapped mode (``overlap = K > 1``; 4 by default, 1 in runs stored before; with
``concurrent = 1`` and without ``reevaluate``): the published algorithm, unchanged, with up to K
consecutive tournaments trained together. Tournament t+1 needs nothing of tournament t
unless it draws the slot t's offspring is about to fill: its pair, winner, crossover
and mutation draw the same random numbers from the same population either way (the
draws never depend on a fitness). So :meth:`ask` runs tournaments in order and hands
out their offspring until the next pair names a slot of this batch's losers; that pair
is held (already drawn) and opens the next batch, after the offspring it waits for is
told. Every tournament, offspring, fitness and journal row equals the sequential run's;
only the batches (the history's rows, one per batch) differ. With a population of 20 and
a deme of 5 about nine tournaments in ten overlap their predecessor, and batches of up
to 4 hold 3.2 tournaments on average (the seed preset: 32 batches for 100 tournaments and
the initial population), so two workers rarely wait for each other at a batch's end.

``reevaluate=True`` reproduces the published code, which retrains both parents in every
tournament: each tournament then asks for the two parents first and compares their fresh
fitness. By default parents keep their stored fitness (the search loop's phenotype cache
makes re-evaluation of an unchanged phenotype a no-op anyway).

``inherit=True`` (Lamarckian): an offspring starts from the trained weights of its
tournament's winner (:meth:`MicrobialGA.parents`); not with ``reevaluate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evoae.errors import EvoaeError
from evoae.evolution.base import Strategy, enc, load_population
from evoae.options import option
from evoae.spaces import Genome, Space

_PAIR_TRIES = 100
#: Consecutive tournaments a batch may hold by default (option ``overlap``).
OVERLAP = 4
#: Largest population a strategy accepts (each member is a trained network).
MAX_POPULATION = 100_000


@dataclass
class MicrobialOptions:
    """Settings of the microbial GA (the published ones by default)."""

    population: int = option(20, "population size", low=2, high=MAX_POPULATION, short="-n")
    generations: int = option(
        100, "tournaments to run", low=0, high=10_000_000, grows=True, short="-g"
    )
    deme: int = option(5, "deme size: b is drawn from the D members after a", low=1)
    recombination: float = option(0.5, "probability of copying each winner gene", low=0.0, high=1.0)
    mutation: float | None = option(
        None,
        "per-gene mutation probability",
        low=0.0,
        high=1.0,
        default_text="1/genes",
        kind=float,
    )
    concurrent: int = option(
        1, "tournaments run together per batch (1 = published; at most population/2)", low=1
    )
    overlap: int | None = option(
        None,
        "consecutive tournaments trained at once when neither needs the other's "
        "offspring (the published order and results; the auto executor trains them on "
        "up to 4 cores; 1 = one at a time; not with concurrent > 1 or reevaluate)",
        low=1,
        high=1024,
        default_text="4 (1 with concurrent > 1 or reevaluate)",
        kind=int,
        legacy=1,
    )
    reevaluate: bool = option(
        False, "retrain both parents in every tournament, as the published code did"
    )
    inherit: bool = option(
        False,
        "start each offspring from its parent's trained weights (Lamarckian; Net2Net "
        "widening where a layer grew)",
        legacy=False,
    )


class MicrobialGA(Strategy):
    """Microbial GA: ``population`` individuals, ``generations`` tournaments."""

    name = "microbial"
    unit = "tournaments"
    Options = MicrobialOptions

    def __init__(
        self, space: Space, options: MicrobialOptions | None = None, *, seed: int = 0, **kw: Any
    ) -> None:
        super().__init__(space, options, seed=seed, **kw)
        options = self.options
        population, concurrent = options.population, options.concurrent
        if not 1 <= concurrent <= population // 2:
            raise EvoaeError(
                f"concurrent tournaments must be between 1 and population/2 "
                f"({population // 2}), got {concurrent}"
            )
        self.n = int(population)
        self.generations = int(options.generations)
        self.deme = int(options.deme)
        # The default (5) is capped quietly for small populations; a larger deme the user
        # asked for would be silently cut to population - 1.
        if self.deme > max(self.n - 1, MicrobialOptions.deme):
            raise EvoaeError(
                f"deme {self.deme} is larger than a population of {self.n} allows (b is drawn "
                f"from the {self.n - 1} other members): give --deme at most {self.n - 1}"
            )
        self.recombination = float(options.recombination)
        mutation = options.mutation
        self.mutation = 1.0 / space.n_genes if mutation is None else float(mutation)
        self.concurrent = int(concurrent)
        self.reevaluate = bool(options.reevaluate)
        if self.reevaluate and options.inherit:
            raise EvoaeError(
                "inherit and reevaluate do not go together: a retrained parent would "
                "inherit from itself; choose one"
            )
        overlapping = self.concurrent == 1 and not self.reevaluate
        if options.overlap is not None and options.overlap > 1 and not overlapping:
            raise EvoaeError(
                f"overlap {options.overlap} runs consecutive tournaments together in the "
                "published order, which concurrent tournaments or re-evaluated parents "
                "change: drop --overlap, or --concurrent / --reevaluate"
            )
        default = OVERLAP if overlapping else 1
        self.overlap = default if options.overlap is None else int(options.overlap)
        options.overlap = self.overlap  # stored (settings.json, runs show) as what runs
        self.population: list[Genome] = []
        self.fitness: list[float] = []
        self._tournaments = 0
        #: An overlapped batch's last pair drawn, which needs an offspring of that batch:
        #: the next batch's first tournament.
        self._held: tuple[int, int] | None = None
        # Between ask and tell: ("init"), ("parents", pairs) or ("offspring", [(loser, child)]).
        self._pending: tuple[str, Any] | None = None
        self._reeval_pairs: list[tuple[int, int]] | None = None
        self._winners: list[Genome] = []

    @property
    def done(self) -> bool:
        return bool(self.population) and self._tournaments >= self.generations

    @property
    def parallelism(self) -> int:
        return self.concurrent * (2 if self.reevaluate else 1) * self.overlap

    @property
    def generation(self) -> int:
        """Tournaments completed."""
        return self._tournaments

    def progress(self) -> tuple[int, int]:
        return self._tournaments, self.generations

    def population_fitness(self) -> list[float] | None:
        return list(self.fitness) if self.population else None

    def ask(self) -> list[Genome]:
        if self._pending is not None:
            raise RuntimeError("ask() called twice without tell()")
        if not self.population:
            genomes = self.seeded([self.space.sample(self.rng) for _ in range(self.n)])
            self._pending = ("init", genomes)
            return genomes
        if self._reeval_pairs:
            pairs, self._reeval_pairs = self._reeval_pairs, None
            return self._breed(pairs)
        if self.done:
            return []
        if self.overlap > 1:
            return self._overlapped()
        pairs = self._draw_pairs(min(self.concurrent, self.generations - self._tournaments))
        if self.reevaluate:
            self._pending = ("parents", pairs)
            return [self.population[i] for pair in pairs for i in pair]
        return self._breed(pairs)

    def _breed(self, pairs: list[tuple[int, int]]) -> list[Genome]:
        children = []
        winners = []
        for a, b in pairs:
            winner, loser = (a, b) if self.fitness[a] <= self.fitness[b] else (b, a)
            winners.append(winner)
            children.append(
                (loser, self._offspring(self.population[winner], self.population[loser]))
            )
        self._pending = ("offspring", children)
        self._winners = [self.population[w] for w in winners]
        return [c for _, c in children]

    def _overlapped(self) -> list[Genome]:
        """Up to ``overlap`` consecutive tournaments, each drawn and bred in the
        sequential order of random draws, stopping at a pair that names a slot one of
        them fills (held for the next batch: see the module)."""
        left = self.generations - self._tournaments
        children: list[tuple[int, Genome]] = []
        winners: list[Genome] = []
        filled: set[int] = set()
        while len(children) < min(self.overlap, left):
            pair = self._held if self._held is not None else self._draw_pair(set())
            self._held = None
            assert pair is not None  # nothing is used: a pair is always found
            if filled.intersection(pair):
                self._held = pair
                break
            a, b = pair
            winner, loser = (a, b) if self.fitness[a] <= self.fitness[b] else (b, a)
            winners.append(self.population[winner])
            children.append(
                (loser, self._offspring(self.population[winner], self.population[loser]))
            )
            filled.add(loser)
        self._pending = ("offspring", children)
        self._winners = winners
        return [c for _, c in children]

    def row_generations(self, n: int) -> list[int]:
        """An overlapped batch's offspring are tournaments t, t+1, ... (as run one at
        a time); otherwise every row of a batch has the tournaments done before it."""
        done, pending = self._tournaments, self._pending
        if self.overlap > 1 and pending is not None and pending[0] == "offspring":
            return [done + i for i in range(n)]
        return [done] * n

    def parents(self, genomes: Sequence[Genome]) -> list[Genome | None]:
        """Each offspring's parent is its tournament's winner (the loser it replaces
        only lends genes)."""
        if self._pending is not None and self._pending[0] == "offspring":
            return list(self._winners)
        return [None] * len(genomes)

    def tell(self, genomes: Sequence[Genome], fitness: Sequence[float]) -> None:
        if self._pending is None:
            raise RuntimeError("tell() called without ask()")
        kind, payload = self._pending
        self._pending = None
        fitness = [float(f) for f in fitness]
        if len(fitness) != len(genomes):
            raise ValueError("one fitness value per genome is needed")
        if kind == "init":
            self.population = [tuple(g) for g in genomes]
            self.fitness = fitness
        elif kind == "parents":
            for (a, b), fa, fb in zip(payload, fitness[0::2], fitness[1::2], strict=True):
                self.fitness[a], self.fitness[b] = fa, fb
            # The offspring of these tournaments is asked for next.
            self._reeval_pairs = payload
        else:
            for (loser, child), f in zip(payload, fitness, strict=True):
                self.population[loser], self.fitness[loser] = child, f
            self._tournaments += len(payload)

    def _draw_pairs(self, k: int) -> list[tuple[int, int]]:
        used: set[int] = set()
        pairs: list[tuple[int, int]] = []
        for _ in range(k):
            pair = self._draw_pair(used)
            if pair is None:  # no two free members share a deme: a smaller batch
                break
            used.update(pair)
            pairs.append(pair)
        return pairs

    def _draw_pair(self, used: set[int]) -> tuple[int, int] | None:
        """A tournament pair disjoint from ``used``, uniform over all such (a, b)."""
        span = min(self.deme, self.n - 1)
        for _try in range(_PAIR_TRIES):
            a = int(self.rng.integers(self.n))
            b = (a + 1 + int(self.rng.integers(span))) % self.n
            if a not in used and b not in used:
                return a, b
        # Rejection rarely succeeds once few members are free; picking uniformly among the
        # free pairs draws from the same distribution without giving up.
        free = [
            (a, (a + 1 + o) % self.n)
            for a in range(self.n)
            if a not in used
            for o in range(span)
            if (a + 1 + o) % self.n not in used
        ]
        return free[int(self.rng.integers(len(free)))] if free else None

    def _offspring(self, winner: Genome, loser: Genome) -> Genome:
        child = list(loser)
        for i in range(len(child)):
            if self.rng.random() < self.recombination:
                child[i] = winner[i]
        for i, gene in enumerate(self.space.genes):
            if self.rng.random() < self.mutation:
                child[i] = gene.sample(self.rng)
        return tuple(child)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            population=[list(g) for g in self.population],
            fitness=[enc(f) for f in self.fitness],
            tournaments=self._tournaments,
            reeval_pairs=self._reeval_pairs,
            held=None if self._held is None else list(self._held),
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.population, self.fitness = load_population(self.space, state)
        if self.population and len(self.population) != self.n:
            raise ValueError(f"population has {len(self.population)} members, not {self.n}")
        done = state["tournaments"]
        if isinstance(done, bool) or not isinstance(done, int) or not 0 <= done <= self.generations:
            raise ValueError(f"tournaments must be between 0 and {self.generations}, got {done!r}")
        self._tournaments = done
        pairs = state.get("reeval_pairs")
        self._reeval_pairs = None if pairs is None else [tuple(p) for p in pairs]
        n = len(self.population)
        for pair in self._reeval_pairs or ():
            ok = len(pair) == 2 and all(isinstance(i, int) and 0 <= i < n for i in pair)
            if not ok:
                raise ValueError(f"reeval_pairs names members outside the population: {pair}")
        held = state.get("held")  # absent in checkpoints made before overlapped batches
        self._held = None
        if held is not None:
            ok = isinstance(held, list) and len(held) == 2
            ok = ok and all(isinstance(i, int) and not isinstance(i, bool) for i in held)
            if not ok or not all(0 <= i < n for i in held) or self.overlap < 2:
                raise ValueError(f"held pair {held!r} is not a pair of members")
            self._held = (held[0], held[1])
        self._pending = None
