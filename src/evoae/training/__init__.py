"""Training candidates and scoring them: the trainer and the in-process evaluators."""

from __future__ import annotations

from evoae.training.evaluator import Evaluator, SequentialEvaluator, Task, resolve_device
from evoae.training.trainer import (
    Result,
    as_split,
    evaluate,
    fit,
    make_result,
    train_candidate,
)

__all__ = [
    "Evaluator",
    "Result",
    "SequentialEvaluator",
    "Task",
    "as_split",
    "evaluate",
    "fit",
    "make_result",
    "resolve_device",
    "train_candidate",
]
