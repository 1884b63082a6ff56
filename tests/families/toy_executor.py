"""A toy executor written as a contributor would: one module, one registration.

``backwards`` trains a batch's tasks last to first in this process and yields each
result under its task's index; the loop must journal them in ask order all the same.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from evoae.objectives import Objective, Reconstruction
from evoae.training.evaluator import Evaluator, Task, resolve_device, train_task
from evoae.training.trainer import Result, as_split


class BackwardsEvaluator(Evaluator):
    """Every task of a batch, trained in reverse order."""

    def __init__(
        self,
        train: Any,
        val: Any,
        *,
        device: str = "cpu",
        objective: Objective | None = None,
        **options: Any,
    ) -> None:
        self.device = resolve_device(device)
        self.train, self.val = as_split(train, self.device), as_split(val, self.device)
        self.objective = objective if objective is not None else Reconstruction()
        self.trained = 0

    def evaluate(self, tasks: Sequence[Task]) -> Iterator[tuple[int, Result]]:
        for i in reversed(range(len(tasks))):
            self.trained += 1
            yield i, train_task(tasks[i], self.train, self.val, self.objective)
