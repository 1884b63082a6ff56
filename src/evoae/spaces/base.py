"""What every search space offers the strategies: genes to draw, a genome, a decoder.

A genome is a tuple of gene values aligned with :attr:`Space.genes`. Gene values are
JSON-able (numbers, strings, or tuples of them), so a genome round-trips through JSON
and two equal genomes are equal tuples. Strategies know nothing about what a gene
means: they draw (:meth:`Gene.sample`), copy and replace whole genes. The space turns a
genome into a *spec* (the decoded architecture plus training settings) that the model
builders and trainers understand.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy only types the samplers: reading specs stays light
    import numpy as np

from evoae.errors import EvoaeError

Genome = tuple[Any, ...]

#: Every optimizer a spec may name, the one list (trainers, stackers and help use it).
OPTIMIZERS = ("sgd", "adam", "adamw")
#: Every activation a layer can be built with (:func:`evoae.models.layers.activation`).
#: The ``"init"`` of a spec whose linear path starts as PCA and whose evolved layers are
#: zero-started branches beside it (dense: :mod:`evoae.families.dense.model`).
PCA_RESIDUAL = "pca-residual"
#: Every ``"init"`` a trainer initialises from PCA of the training split.
PCA_INITS = ("pca", PCA_RESIDUAL)
#: Every activation a layer can be built with (see evoae.models.layers.activation).
ACTIVATION_NAMES = ("linear", "relu", "tanh", "sigmoid", "elu", "gelu", "leaky_relu", "softmax")


@dataclass(frozen=True)
class Float:
    """A real number in ``[low, high]``, drawn log-uniformly when ``log``."""

    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class Int:
    """An integer in ``[low, high]``, drawn log-uniformly when ``log``."""

    low: int
    high: int
    log: bool = False


@dataclass(frozen=True)
class Choice:
    """One of ``options`` (numbers, strings or booleans)."""

    options: tuple[Any, ...]


@dataclass(frozen=True)
class Parts:
    """A tuple-valued gene: one domain per part (e.g. a hidden layer's ratio and activation)."""

    parts: tuple[Float | Int | Choice, ...]


#: What a gene's values may be, for strategies that model the space (e.g. Optuna's).
Domain = Float | Int | Choice | Parts


@dataclass(frozen=True)
class Gene:
    """One gene: a name, how to draw a fresh value for it and, optionally, its domain.

    ``domain`` is only needed by strategies that model each gene (``tpe``); strategies
    that only draw, copy and replace genes ignore it.
    """

    name: str
    sample: Callable[[np.random.Generator], Any]
    domain: Domain | None = None


class Space(ABC):
    """A search space: a fixed list of genes and a decoder to a spec."""

    #: Short name used in run folders and saved models ("dense", "conv").
    family: str = ""

    #: The genes in genome order; a subclass sets it in ``__init__``.
    _genes: Sequence[Gene] = ()

    @property
    def genes(self) -> Sequence[Gene]:
        """The genes, in genome order."""
        return self._genes

    def named(self, genome: Genome) -> dict[str, Any]:
        """A validated genome as gene name -> value, for decoders."""
        return dict(zip((g.name for g in self._genes), self.validate(genome), strict=True))

    @abstractmethod
    def decode(self, genome: Genome) -> dict[str, Any]:
        """The spec (architecture and training settings, JSON-able) a genome stands for."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this space with :func:`evoae.spaces.space_from_config`."""

    def seed_genomes(self) -> list[Genome]:
        """Genomes a search should include from the start (e.g. the PCA seed); none here."""
        return []

    def morph(self, genome: Genome, rng: np.random.Generator) -> Genome | None:
        """``genome`` changed by one function-preserving step drawn with ``rng`` (network
        morphism: the child can start from the parent's trained weights), or None when
        the space has none for it; the strategy then mutates as usual. None here."""
        return None

    @property
    def n_genes(self) -> int:
        return len(self.genes)

    def sample(self, rng: np.random.Generator) -> Genome:
        """A random genome: every gene drawn independently."""
        return tuple(g.sample(rng) for g in self.genes)

    def validate(self, genome: Genome) -> Genome:
        """Check a genome's length and normalise JSON lists back to tuples."""
        if len(genome) != self.n_genes:
            from evoae.errors import EvoaeError

            raise EvoaeError(
                f"genome has {len(genome)} genes but the {self.family} space has {self.n_genes}: "
                "was it saved by a run with another space configuration?"
            )
        return tuple(_tuplify(v) for v in genome)

    def check_genes(self, genome: Genome) -> Genome:
        """A validated genome whose every gene lies in its domain (floats within rounding)
        or equals that gene of a seed genome (crossover passes the PCA seed's genes on);
        for genomes read back from a checkpoint. ``ValueError`` names the gene."""
        genome = self.validate(genome)
        seeds = [self.validate(s) for s in self.seed_genomes()]
        for i, (gene, value) in enumerate(zip(self.genes, genome, strict=True)):
            if gene.domain is None or _in_domain(gene.domain, value):
                continue
            if any(s[i] == value for s in seeds):
                continue
            raise ValueError(f"gene {gene.name} = {_short(value)} lies outside its domain")
        return genome

    def to_json(self, genome: Genome) -> dict[str, Any]:
        """A readable genome: gene name -> value."""
        return {g.name: v for g, v in zip(self.genes, genome, strict=True)}

    def from_json(self, data: dict[str, Any]) -> Genome:
        """The inverse of :meth:`to_json`."""
        missing = [g.name for g in self.genes if g.name not in data]
        if missing:
            from evoae.errors import EvoaeError

            raise EvoaeError(f"genome JSON lacks genes {missing}: it does not belong to this space")
        return self.validate(tuple(data[g.name] for g in self.genes))


def spec_key(spec: dict[str, Any]) -> str:
    """A canonical string for a spec: equal phenotypes give equal keys."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def _tuplify(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return tuple(_tuplify(x) for x in v)
    return v


def check_names(kind: str, names: Sequence[str], allowed: Sequence[str]) -> None:
    """Refuse an empty list, a lone string or a name outside ``allowed`` in one line."""
    if isinstance(names, str):  # a lone name would be read letter by letter
        raise EvoaeError(f"{kind}s must be a list of names, got the string {names!r}")
    bad = [n for n in names if n not in allowed]
    if bad:
        raise EvoaeError(f"unknown {kind} {bad[0]!r}: choose from {', '.join(allowed)}")
    if not names:
        raise EvoaeError(f"at least one {kind} is needed")


def _in_domain(domain: Domain, value: Any) -> bool:
    """Whether ``value`` is one ``domain`` can give (floats with a relative 1e-9 slack)."""
    if isinstance(domain, Parts):
        return (
            isinstance(value, tuple)
            and len(value) == len(domain.parts)
            and all(_in_domain(d, v) for d, v in zip(domain.parts, value, strict=True))
        )
    if isinstance(domain, Choice):
        return any(type(value) is type(o) and value == o for o in domain.options) or (
            not isinstance(value, bool) and value in domain.options
        )
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(domain, Int) and not float(value).is_integer():
        return False
    if not math.isfinite(value):
        return False
    slack = 1e-9 * max(abs(domain.low), abs(domain.high), 1.0)
    return domain.low - slack <= value <= domain.high + slack


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
