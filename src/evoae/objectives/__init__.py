"""Objectives: what the search minimises, and their registry.

``recon`` (the validation reconstruction loss) is the default. To add one, subclass
:class:`Objective` and :func:`register` it; ``search(objective=instance)`` also takes
a ready objective of any class.
"""

from __future__ import annotations

from evoae.errors import EvoaeError
from evoae.objectives.base import EvalSplit, Objective, Score
from evoae.objectives.probe import AUROC, KNN, Mix, Probe
from evoae.objectives.reconstruction import Reconstruction, evaluate

#: name -> Objective subclass (built with no arguments).
OBJECTIVES: dict[str, type[Objective]] = {}


def register(cls: type[Objective]) -> type[Objective]:
    """Make ``cls`` available as ``--objective cls.name``; usable as a class decorator."""
    if not cls.name:
        raise EvoaeError(f"objective class {cls.__name__} needs a name")
    OBJECTIVES[cls.name] = cls
    return cls


def make_objective(objective: str | Objective | None) -> Objective:
    """An objective from its registered name (None: ``recon``), ``NAME:ARG`` for those
    that take an argument (``mix:0.3``, ``knn:10``), or as given."""
    if objective is None:
        return Reconstruction()
    if isinstance(objective, Objective):
        return objective
    if isinstance(objective, str) and ":" in objective:
        name, _, arg = (part.strip() for part in objective.partition(":"))
        try:
            return _registered(name).from_arg(arg)
        except ValueError as e:
            if isinstance(e, EvoaeError):
                raise
            raise EvoaeError(f"bad argument {arg!r} in objective {objective!r}: {e}") from None
    return _registered(objective)()


def _registered(objective: object) -> type[Objective]:
    if not isinstance(objective, str) or objective not in OBJECTIVES:
        raise EvoaeError(
            f"unknown objective {objective!r}: choose from {', '.join(OBJECTIVES)} "
            "or pass an Objective instance"
        )
    return OBJECTIVES[objective]


register(Reconstruction)
for _hybrid in (Probe, KNN, Mix, AUROC):
    register(_hybrid)

__all__ = [
    "OBJECTIVES",
    "EvalSplit",
    "Objective",
    "Reconstruction",
    "Score",
    "evaluate",
    "make_objective",
    "register",
]
