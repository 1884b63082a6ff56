"""What a candidate is scored on: the :class:`Objective` interface.

An objective turns a trained model and a held-out split into a fitness (always
minimised) and named terms that the journal keeps. Objectives are sent to worker
processes and Ray tasks, so they must be picklable (a module-level class whose
attributes are plain values).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from evoae.errors import EvoaeError


@dataclass(frozen=True)
class EvalSplit:
    """One split as tensors: inputs ``x`` and, when the data has them, labels ``y``."""

    x: torch.Tensor
    y: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class Score:
    """An objective's verdict: ``fitness`` (lower is better) and terms to journal."""

    fitness: float
    terms: dict[str, float] = field(default_factory=dict)


class Objective(ABC):
    """Scores a trained model on a split; the search minimises :attr:`Score.fitness`."""

    #: Registry name (``--objective NAME``).
    name: ClassVar[str] = ""
    #: True when :meth:`score` reads ``split.y``: data without labels is refused up front.
    needs_labels: ClassVar[bool] = False
    #: True when the fitness is the model's own mean loss on the split, so stacked
    #: trainers may score a whole population in one pass instead of calling :meth:`score`.
    model_loss: ClassVar[bool] = False

    @abstractmethod
    def score(self, model: nn.Module, split: EvalSplit) -> Score:
        """Fitness and terms of ``model`` (in eval mode, trained) on ``split``."""

    @classmethod
    def from_arg(cls, arg: str) -> Objective:
        """The objective ``NAME:ARG`` names (``knn:10``); objectives taking an argument
        override this (a ``ValueError`` becomes a one-line error naming the argument)."""
        raise EvoaeError(f"objective {cls.name!r} takes no argument: pass it as {cls.name}")

    def check_labels(self, y: Any) -> None:
        """Refuse, with an :class:`~evoae.errors.EvoaeError`, evaluation labels ``y`` (an
        array, or None) that :meth:`score` could not use; called before a run starts."""

    def config(self) -> dict[str, Any]:
        """JSON-able identity: stored in the journal and part of the phenotype cache key."""
        return {"name": self.name}

    def describe(self) -> str:
        """A short label with its unit, for summaries and plots."""
        return self.name
