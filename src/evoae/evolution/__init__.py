"""Search strategies behind one ask/tell interface, and their registry.

A strategy is found by name (``--strategy NAME``, ``search(strategy=NAME)``); to add
one, write a module with a :class:`Strategy` subclass and call :func:`register` on it
(built-ins are registered below). ``search(strategy=instance)`` also takes a ready
strategy of any class, registered or not.
"""

from __future__ import annotations

from typing import Any

from evoae.errors import EvoaeError
from evoae.evolution.aging import AgingEvolution
from evoae.evolution.asha import Asha
from evoae.evolution.base import NoOptions, Plan, Strategy
from evoae.evolution.microbial import MicrobialGA
from evoae.evolution.nsga2 import NSGA2
from evoae.evolution.random import RandomSearch
from evoae.evolution.tpe import OptunaSearch
from evoae.options import build
from evoae.spaces import Space

#: name -> Strategy subclass.
STRATEGIES: dict[str, type[Strategy]] = {}
#: The strategy ``evoae search``, :func:`evoae.search` and the estimator use unless told
#: (chosen by the races in docs/search_quality.md).
DEFAULT_STRATEGY = "aging"
#: The published protocol's strategy: what ``--preset seed`` runs unless told otherwise.
PUBLISHED_STRATEGY = "microbial"
#: What runs of evoae 0.1, which stored no strategy, were searched with.
LEGACY_STRATEGY = "microbial"


def register(cls: type[Strategy]) -> type[Strategy]:
    """Make ``cls`` available as ``--strategy cls.name``; usable as a class decorator."""
    if not cls.name:
        raise EvoaeError(f"strategy class {cls.__name__} needs a name")
    STRATEGIES[cls.name] = cls
    return cls


def strategy_class(name: str) -> type[Strategy]:
    if name not in STRATEGIES:
        raise EvoaeError(f"unknown strategy {name!r}: choose from {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


def make_options(name: str, values: dict[str, Any]) -> Any:
    """The ``Options`` of strategy ``name`` from a dict; unknown or bad values are an error."""
    return build(strategy_class(name).Options, dict(values), f"{name} strategy")


def make_strategy(name: str, space: Space, options: Any = None, *, seed: int = 0) -> Strategy:
    """A fresh strategy of the registered class ``name``."""
    cls = strategy_class(name)
    if options is None or isinstance(options, dict):
        options = make_options(name, options or {})
    return cls(space, options, seed=seed)


for _cls in (MicrobialGA, RandomSearch, AgingEvolution, OptunaSearch, NSGA2):
    register(_cls)

__all__ = [
    "DEFAULT_STRATEGY",
    "PUBLISHED_STRATEGY",
    "LEGACY_STRATEGY",
    "NSGA2",
    "Asha",
    "STRATEGIES",
    "AgingEvolution",
    "MicrobialGA",
    "NoOptions",
    "OptunaSearch",
    "Plan",
    "RandomSearch",
    "Strategy",
    "make_options",
    "make_strategy",
    "register",
    "strategy_class",
]
