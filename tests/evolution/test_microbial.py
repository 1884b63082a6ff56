"""Tests for the microbial GA: tournaments, demes, crossover and mutation rates, batching."""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pytest
from conftest import one_line_error

from evoae.errors import EvoaeError
from evoae.evolution import MicrobialGA
from evoae.families.dense.space import DenseSpace

#: Ten continuous hidden genes make every sampled genome unique, so a genome names its
#: population slot; 13 genes in all.
SPACE = DenseSpace(64, 4, max_depth=10)
N_HIDDEN = 10


def started(population: int, fitness=None, **kwargs) -> MicrobialGA:
    """A GA whose initial population has been asked for and told ``fitness`` (one
    tournament a batch unless ``overlap`` is given)."""
    kwargs.setdefault("generations", 10_000)
    kwargs.setdefault("overlap", 1)
    ga = MicrobialGA(SPACE, population=population, **kwargs)
    genomes = ga.ask()
    assert len(genomes) == population and len(set(genomes)) == population
    ga.tell(genomes, list(range(population)) if fitness is None else fitness)
    return ga


def slot(ga: MicrobialGA, genome) -> int:
    """The population index holding ``genome`` (genomes are unique in these tests)."""
    hits = [i for i, g in enumerate(ga.population) if g == genome]
    assert len(hits) == 1, hits
    return hits[0]


def offset(a: int, b: int, n: int) -> int:
    return (b - a) % n


# ------------------------------------------------------------------ basics


def test_first_ask_is_the_random_initial_population():
    ga = MicrobialGA(SPACE, population=5, generations=3, seed=1)
    assert not ga.done and ga.generation == 0
    init = ga.ask()
    assert len(init) == 5 and all(len(g) == SPACE.n_genes for g in init)
    ga.tell(init, [3.0, 1.0, 4.0, 1.5, 9.0])
    assert ga.population == init
    assert ga.population_fitness() == [3.0, 1.0, 4.0, 1.5, 9.0]
    assert ga.generation == 0 and not ga.done


def test_budget_counts_tournaments_and_then_asks_nothing():
    ga = started(6, generations=5, seed=0)
    sizes = []
    while not ga.done:
        batch = ga.ask()
        sizes.append(len(batch))
        ga.tell(batch, [0.5] * len(batch))
    assert sizes == [1] * 5 and ga.generation == 5
    assert ga.ask() == []
    zero = started(4, generations=0)
    assert zero.done and zero.ask() == []


def test_ask_and_tell_must_alternate():
    ga = MicrobialGA(SPACE, population=4, generations=2)
    batch = ga.ask()
    with pytest.raises(RuntimeError):
        ga.ask()
    with pytest.raises(ValueError):
        ga.tell(batch, [1.0])
    with pytest.raises(RuntimeError):
        ga.tell(batch, [1.0] * 4)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"population": 1}, "population"),
        ({"generations": -1}, "generations"),
        ({"deme": 0}, "deme"),
        ({"recombination": 1.5}, "recombination"),
        ({"recombination": -0.1}, "recombination"),
        ({"mutation": 2.0}, "mutation"),
        ({"concurrent": 0}, "concurrent"),
        ({"population": 6, "concurrent": 4}, "concurrent"),
    ],
)
def test_bad_settings_raise_one_line_errors(kwargs, fragment):
    with pytest.raises(EvoaeError) as info:
        MicrobialGA(SPACE, **kwargs)
    assert fragment in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------ demes


def parent_pairs(ga: MicrobialGA, rounds: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Run ``rounds`` re-evaluating tournaments; the (a, b) slots of every pair asked."""
    pairs = []
    for _ in range(rounds):
        parents = ga.ask()
        assert len(parents) == 2 * ga.concurrent
        idx = [slot(ga, g) for g in parents]
        assert len(set(idx)) == len(idx), "concurrent tournaments must use disjoint pairs"
        pairs += list(zip(idx[0::2], idx[1::2], strict=True))
        ga.tell(parents, rng.uniform(size=len(parents)).tolist())
        children = ga.ask()
        ga.tell(children, rng.uniform(size=len(children)).tolist())
    return pairs


def test_b_is_drawn_from_the_deme_after_a_with_wrap_around():
    n, d = 7, 3
    # mutation=1 redraws every gene, so offspring stay unique and slots stay identifiable.
    ga = started(n, deme=d, reevaluate=True, mutation=1.0, seed=4)
    pairs = parent_pairs(ga, 1400, np.random.default_rng(0))
    offsets = np.array([offset(a, b, n) for a, b in pairs])
    assert set(offsets) == {1, 2, 3}
    np.testing.assert_allclose(np.bincount(offsets)[1:] / len(pairs), 1 / d, atol=0.05)
    firsts = np.bincount([a for a, _ in pairs], minlength=n) / len(pairs)
    np.testing.assert_allclose(firsts, 1 / n, atol=0.04)
    # Pairs that cross the end of the population exist: (5, 1), (6, 0), ...
    assert any(a + o >= n for (a, _), o in zip(pairs, offsets, strict=True))


def test_deme_larger_than_population_never_pairs_an_individual_with_itself():
    # The default deme (5) is capped quietly for 4 members.
    ga = started(4, deme=5, reevaluate=True, mutation=1.0, seed=2)
    pairs = parent_pairs(ga, 300, np.random.default_rng(1))
    assert {offset(a, b, 4) for a, b in pairs} == {1, 2, 3}


def test_a_deme_the_population_cannot_hold_is_refused():
    one_line_error(lambda: started(4, deme=10, seed=2), "--deme at most 3")


@pytest.mark.parametrize(("n", "k", "d"), [(20, 4, 5), (10, 5, 5), (4, 2, 1), (12, 6, 6)])
def test_concurrent_tournaments_use_k_disjoint_pairs(n, k, d):
    ga = started(n, deme=d, concurrent=k, reevaluate=True, mutation=1.0, seed=n + k)
    # parent_pairs checks that each batch holds 2k distinct slots.
    pairs = parent_pairs(ga, 60, np.random.default_rng(2))
    assert len(pairs) == 60 * k
    assert all(1 <= offset(a, b, n) <= d for a, b in pairs)


def test_concurrent_batches_fill_the_budget_exactly():
    ga = started(10, generations=11, concurrent=4, seed=3)
    sizes = []
    while not ga.done:
        before = list(ga.population_fitness())
        batch = ga.ask()
        new = [100.0 + ga.generation + i for i in range(len(batch))]
        ga.tell(batch, new)
        changed = [i for i, (x, y) in enumerate(zip(before, ga.fitness, strict=True)) if x != y]
        # Every offspring replaced a different loser.
        assert sorted(ga.fitness[i] for i in changed) == new
        sizes.append(len(batch))
    assert sizes == [4, 4, 3] and ga.generation == 11


# ------------------------------------------------------------------ selection and replacement


def one_tournament(seed: int, fitness: list[float], **kwargs):
    """One tournament with recombination 1 and no mutation: the child is the winner's copy.

    Returns (winner slot, loser slot, population before, fitness before, ga after).
    """
    n = len(fitness)
    ga = started(n, fitness=fitness, seed=seed, recombination=1.0, mutation=0.0, **kwargs)
    pop, fit = list(ga.population), list(ga.fitness)
    (child,) = ga.ask()
    w = pop.index(child)
    ga.tell([child], [-1.0])
    changed = [i for i in range(n) if ga.fitness[i] != fit[i] or ga.population[i] != pop[i]]
    assert len(changed) == 1
    return w, changed[0], pop, fit, ga


def test_loser_is_replaced_by_the_offspring_and_the_winner_is_untouched():
    n, d = 10, 3
    for seed in range(150):
        fitness = np.random.default_rng(seed).permutation(n).astype(float).tolist()
        w, loser, pop, fit, ga = one_tournament(seed, fitness, deme=d)
        assert w != loser
        assert ga.population[loser] == pop[w] and ga.fitness[loser] == -1.0
        assert ga.population[w] == pop[w] and ga.fitness[w] == fit[w]
        assert fit[w] < fit[loser]  # the fitter (lower loss) one won
        # The pair came from one deme: the loser is a or b, the winner the other.
        assert 1 <= offset(w, loser, n) <= d or 1 <= offset(loser, w, n) <= d


def test_ties_go_to_the_first_drawn_individual():
    n, d = 10, 3
    for seed in range(100):
        w, loser, *_ = one_tournament(seed, [1.0] * n, deme=d)
        # a wins a tie, so the loser is b = a + 1..D.
        assert 1 <= offset(w, loser, n) <= d


def test_failed_candidates_always_lose_to_finite_ones():
    fitness = [math.inf, 0.5, math.inf, 0.7, math.inf, 0.2]
    for seed in range(100):
        w, loser, _, fit, _ = one_tournament(seed, fitness, deme=2)
        assert not (math.isinf(fit[w]) and math.isfinite(fit[loser]))


def test_reevaluate_asks_for_the_parents_then_the_offspring_and_uses_fresh_fitness():
    n = 6
    stored = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    ga = started(n, fitness=stored, reevaluate=True, recombination=1.0, mutation=0.0, seed=8)
    pop = list(ga.population)
    parents = ga.ask()
    assert len(parents) == 2
    a, b = pop.index(parents[0]), pop.index(parents[1])
    assert 1 <= offset(a, b, n) <= 5
    # Fresh fitness reverses the stored ranking: b now wins.
    fresh_a, fresh_b = stored[b] + 10.0, stored[a] + 5.0
    ga.tell(parents, [fresh_a, fresh_b])
    assert ga.generation == 0 and ga.fitness[a] == fresh_a and ga.fitness[b] == fresh_b
    (child,) = ga.ask()
    assert child == pop[b]
    ga.tell([child], [0.25])
    assert ga.generation == 1
    assert ga.population[a] == pop[b] and ga.fitness[a] == 0.25
    assert ga.population[b] == pop[b] and ga.fitness[b] == fresh_b


def test_reevaluate_with_concurrent_tournaments():
    ga = started(8, reevaluate=True, concurrent=3, deme=4, generations=6, seed=1)
    sizes = []
    while not ga.done:
        batch = ga.ask()
        sizes.append(len(batch))
        ga.tell(batch, [1.0] * len(batch))
    assert sizes == [6, 3, 6, 3] and ga.generation == 6


# ------------------------------------------------------------------ crossover and mutation rates


def offspring_samples(count: int, **kwargs):
    """(winner, loser, child) triples from ``count`` independent two-member populations."""
    out = []
    for seed in range(count):
        # Slot 0 has the lower loss, so it wins whichever slot is drawn first.
        ga = started(2, fitness=[0.0, 1.0], seed=seed, deme=1, **kwargs)
        (child,) = ga.ask()
        out.append((ga.population[0], ga.population[1], child))
    return out


def test_uniform_crossover_copies_half_of_the_winner_genes():
    copied = differing = 0
    for winner, loser, child in offspring_samples(2000, recombination=0.5, mutation=0.0):
        for gw, gl, gc in zip(winner, loser, child, strict=True):
            assert gc in (gw, gl)  # no mutation: every gene comes from a parent
            if gw != gl:
                differing += 1
                copied += gc == gw
    assert differing > 20_000
    assert 0.48 < copied / differing < 0.52


def test_recombination_probability_is_honoured():
    samples = offspring_samples(1000, recombination=0.2, mutation=0.0)
    hidden = [(w[i], c[i]) for w, _, c in samples for i in range(N_HIDDEN)]
    rate = np.mean([c == w for w, c in hidden])
    assert 0.18 < rate < 0.22
    assert all(c == w for w, _, c in offspring_samples(50, recombination=1.0, mutation=0.0))
    assert all(c == ls for _, ls, c in offspring_samples(50, recombination=0.0, mutation=0.0))


def test_default_mutation_rate_is_one_over_the_number_of_genes():
    ga = MicrobialGA(SPACE, population=4)
    assert ga.mutation == pytest.approx(1 / SPACE.n_genes)
    samples = offspring_samples(4000, recombination=0.0)
    # Hidden genes are continuous: a redrawn one always differs from both parents.
    mutated = [c[i] != ls[i] for _, ls, c in samples for i in range(N_HIDDEN)]
    rate = float(np.mean(mutated))
    # 40,000 draws: a standard error of 0.0013, so 1/12 (0.0833) would fail the bound.
    assert abs(rate - 1 / SPACE.n_genes) < 0.004, rate
    for w, ls, c in samples:
        for i in range(N_HIDDEN):
            if c[i] != ls[i]:
                assert c[i] != w[i]  # a fresh draw, not a copy
                assert 0.0 <= c[i][0] < 1.0


def test_mutation_one_redraws_every_gene():
    for w, ls, c in offspring_samples(50, recombination=0.5, mutation=1.0):
        assert all(c[i] not in (w[i], ls[i]) for i in range(N_HIDDEN))


# ------------------------------------------------------------------ determinism and state


def drive(ga: MicrobialGA, steps: int, seed: int, p_fail: float = 0.2) -> list:
    """Run ``steps`` ask/tell rounds with fitness from ``seed``, a ``p_fail`` share of them
    failures (inf); returns the asks."""
    rng = np.random.default_rng(seed)
    asked = []
    for _ in range(steps):
        batch = ga.ask()
        asked.append(batch)
        fit = rng.uniform(size=len(batch))
        fit[rng.uniform(size=len(batch)) < p_fail] = math.inf
        ga.tell(batch, fit.tolist())
    return asked


@pytest.mark.parametrize("reevaluate", [False, True])
def test_same_seed_same_search_and_different_seed_differs(reevaluate):
    def run(seed):
        kw = dict(population=6, generations=50, concurrent=2, reevaluate=reevaluate, seed=seed)
        return drive(MicrobialGA(SPACE, **kw), 20, 0)

    assert run(3) == run(3)
    assert run(3) != run(4)


@pytest.mark.parametrize("reevaluate", [False, True])
def test_state_dict_is_json_and_restores_the_search_exactly(reevaluate):
    kw = dict(population=6, generations=40, concurrent=2, reevaluate=reevaluate)
    ga = MicrobialGA(SPACE, seed=11, **kw)
    # An odd number of rounds stops a re-evaluating GA between parents and offspring.
    drive(ga, 7, 5, p_fail=0.6)
    assert math.inf in ga.fitness
    # Strict JSON (no Infinity literal), as checkpoints need.
    state = json.loads(json.dumps(ga.state_dict(), allow_nan=False))
    twin = MicrobialGA(SPACE, seed=999, **kw)
    twin.load_state_dict(state)
    assert twin.population == ga.population and twin.fitness == ga.fitness
    assert twin.generation == ga.generation
    assert drive(twin, 9, 6) == drive(ga, 9, 6)
    assert twin.state_dict() == ga.state_dict()


# ------------------------------------------------------------------ overlapped batches


def tournaments(ga: MicrobialGA, seed: int, p_fail: float = 0.2) -> tuple[list, list]:
    """Drive ``ga`` to the end with a fitness that is a function of the genome (and
    ``seed``), so a sequential and an overlapped run meet the same values; returns every
    offspring asked, in order, and each batch's size."""

    def fitness(g) -> float:
        r = np.random.default_rng([seed, zlib.crc32(json.dumps(SPACE.to_json(g)).encode())])
        return math.inf if r.uniform() < p_fail else float(r.uniform())

    asked, sizes = [], []
    while not ga.done:
        batch = ga.ask()
        if ga.population:
            asked += batch
            sizes.append(len(batch))
        ga.tell(batch, [fitness(g) for g in batch])
    return asked, sizes


@pytest.mark.parametrize(("population", "deme", "overlap"), [(20, 5, 2), (6, 2, 2), (8, 7, 3)])
def test_overlapped_batches_run_the_published_tournaments(population, deme, overlap):
    kw = dict(population=population, deme=deme, generations=120, seed=7)
    one = MicrobialGA(SPACE, overlap=1, **kw)
    many = MicrobialGA(SPACE, overlap=overlap, **kw)
    assert many.parallelism == overlap and one.parallelism == 1
    seq, seq_sizes = tournaments(one, 3)
    ovl, sizes = tournaments(many, 3)
    assert seq_sizes == [1] * 120 and sum(sizes) == 120
    # The same offspring in the same order, the same final population and fitness.
    assert ovl == seq
    assert many.population == one.population and many.fitness == one.fitness
    assert many.rng.random() == one.rng.random()  # the same random draws consumed
    assert max(sizes) == overlap and len(sizes) < 120  # batches did overlap
    if population == 20:
        assert 1 in sizes  # a dependent pair was held for the next batch


def test_overlapped_rows_keep_their_tournament_numbers():
    ga = started(10, overlap=2, generations=30, seed=2)
    seen = []
    while not ga.done:
        batch = ga.ask()
        gens = ga.row_generations(len(batch))
        assert gens == list(range(ga.generation, ga.generation + len(batch)))
        seen += gens
        ga.tell(batch, [0.5] * len(batch))
    assert seen == list(range(30))


def test_overlap_is_off_with_concurrent_or_reevaluate():
    """By default 4 tournaments overlap, none beside concurrent tournaments or
    re-evaluated parents (stored as 1 there); asking for both is a one-line error."""
    assert MicrobialGA(SPACE, population=6).parallelism == 4
    off = MicrobialGA(SPACE, population=6, concurrent=2)
    assert off.parallelism == 2 and off.options_dict()["overlap"] == 1
    assert MicrobialGA(SPACE, population=6, reevaluate=True).parallelism == 2
    assert MicrobialGA(SPACE, population=6, overlap=3).parallelism == 3
    assert MicrobialGA(SPACE, population=6, concurrent=2, overlap=1).parallelism == 2
    for kw in ({"concurrent": 2}, {"reevaluate": True}):
        one_line_error(
            lambda kw=kw: MicrobialGA(SPACE, population=6, overlap=2, **kw),
            "overlap 2",
            "drop --overlap",
        )


def test_a_held_pair_survives_a_checkpoint():
    kw = dict(population=20, generations=200, overlap=2)
    ga = MicrobialGA(SPACE, seed=5, **kw)
    drive(ga, 1, 0)  # the initial population
    for _ in range(200):  # until a batch ends on a held pair
        drive(ga, 1, 1)
        if ga._held is not None:
            break
    assert ga._held is not None
    state = json.loads(json.dumps(ga.state_dict(), allow_nan=False))
    twin = MicrobialGA(SPACE, seed=999, **kw)
    twin.load_state_dict(state)
    assert twin._held == ga._held
    assert drive(twin, 9, 6) == drive(ga, 9, 6)
    for bad in ([0], [0, 99], ["a", 1], [True, 1]):
        with pytest.raises(ValueError, match="held pair"):
            MicrobialGA(SPACE, seed=1, **kw).load_state_dict(state | {"held": bad})
