"""Training candidates and the evaluators that run many of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from evoae import execution
from evoae.errors import EvoaeError
from evoae.training.evaluator import Evaluator, SequentialEvaluator, Task, resolve_device
from evoae.training.population import make_population_evaluator
from evoae.training.trainer import Result, evaluate, fit, train_candidate

#: executor name -> factory(x_train, x_val, *, device, **options). Other backends register here.
EVALUATORS: dict[str, Callable[..., Evaluator]] = {
    "inline": lambda x_train, x_val, *, device="cpu", **_: SequentialEvaluator(
        x_train, x_val, device
    ),
    "population": make_population_evaluator,
    "process": execution.process_evaluator,
    "ray": execution.ray_evaluator,
}


def make_evaluator(
    name: str, x_train: Any, x_val: Any, *, device: str = "cpu", **options: Any
) -> Evaluator:
    """The evaluator registered under ``name``, holding the training and validation data."""
    if name not in EVALUATORS:
        raise EvoaeError(f"unknown executor {name!r}: choose from {', '.join(EVALUATORS)}")
    return EVALUATORS[name](x_train, x_val, device=device, **options)


__all__ = [
    "EVALUATORS",
    "Evaluator",
    "Result",
    "SequentialEvaluator",
    "Task",
    "evaluate",
    "fit",
    "make_evaluator",
    "resolve_device",
    "train_candidate",
]
