"""A strategy and an objective written as a user would: outside evoae, not registered.

tests/loop/test_open_core.py passes them to :func:`evoae.search` (in-process and from a child
process that is killed mid-search), which must journal, checkpoint, resume and report
them like built-ins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from evoae.evolution import Strategy
from evoae.objectives import EvalSplit, Objective, Score
from evoae.options import option
from evoae.spaces import Genome


@dataclass
class HillOptions:
    evaluations: int = option(10, "candidates to evaluate", low=1, grows=True)


class HillClimb(Strategy):
    """(1+1) hill climbing: mutate one gene of the best genome so far."""

    name = "hill"
    Options = HillOptions

    def __init__(self, space: Any = None, options: HillOptions | None = None, *, seed: int = 0):
        super().__init__(space, options, seed=seed)
        self.told = 0
        self.current: Genome | None = None
        self.current_fitness = float("inf")

    @property
    def done(self) -> bool:
        return self.told >= self.options.evaluations

    def progress(self) -> tuple[int, int]:
        return self.told, self.options.evaluations

    def ask(self) -> list[Genome]:
        if self.current is None:
            return [self.space.sample(self.rng)]
        child = list(self.current)
        i = int(self.rng.integers(self.space.n_genes))
        child[i] = self.space.genes[i].sample(self.rng)
        return [tuple(child)]

    def tell(self, genomes: Sequence[Genome], fitness: Sequence[Any]) -> None:
        for g, f in zip(genomes, fitness, strict=True):
            if f <= self.current_fitness:
                self.current, self.current_fitness = tuple(g), float(f)
        self.told += len(genomes)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "told": self.told,
            "current": None if self.current is None else list(self.current),
            "current_fitness": None if self.current is None else self.current_fitness,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.told = int(state["told"])
        cur = state["current"]
        self.current = None if cur is None else self.space.validate(cur)
        fit = state["current_fitness"]
        self.current_fitness = float("inf") if fit is None else float(fit)


class L1Objective(Objective):
    """Mean absolute reconstruction error on the validation split."""

    name = "l1"

    @torch.no_grad()
    def score(self, model: torch.nn.Module, split: EvalSplit) -> Score:
        recon = model.reconstruct(split.x)
        l1 = float((recon - split.x).abs().mean())
        return Score(l1, {"l1": l1})


class LabelSpread(Objective):
    """Needs labels: the mean code distance between classes, negated (to be minimised)."""

    name = "label_spread"
    needs_labels = True

    @torch.no_grad()
    def score(self, model: torch.nn.Module, split: EvalSplit) -> Score:
        if split.y is None:
            raise ValueError("labels did not reach the objective")
        codes = model.encode(split.x)
        means = torch.stack([codes[split.y == c].mean(0) for c in torch.unique(split.y)])
        spread = float(torch.cdist(means, means).mean())
        return Score(-spread, {"spread": spread})
