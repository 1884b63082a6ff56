"""Evaluators: the one call that turns a batch of tasks into results.

The search loop hands an evaluator a batch of :class:`Task` objects and receives
``(index, Result)`` pairs as they finish, in any order. In-process training, the
population-parallel trainer and distributed executors all sit behind this interface;
the data (inputs and optional labels of the training and validation splits) and the
objective live in the evaluator, sent to workers once, never per task.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from evoae.errors import EvoaeError
from evoae.objectives import EvalSplit, Objective, Reconstruction
from evoae.training.rungs import BadState, train_rung
from evoae.training.threads import torch_threads
from evoae.training.trainer import Result, as_split, train_candidate


@dataclass(frozen=True)
class Task:
    """Train ``spec`` for ``epochs`` epochs with weights and batch order from ``seed``.

    The optional paths are checkpoint stems (:func:`evoae.training.rungs.save_rung`):
    ``resume`` continues a training saved there (multi-fidelity promotion), ``save``
    keeps the trained state there, ``inherit`` starts from a parent's saved weights
    where the shapes allow (weight inheritance), ``inherit_spec`` being the parent's
    spec in morph mode. A task with none of them is *plain*. ``trainer`` picks the
    training step (:data:`evoae.training.trainer.TRAINERS`).
    """

    spec: dict[str, Any]
    seed: int
    epochs: int
    resume: str | None = None
    save: str | None = None
    inherit: str | None = None
    trainer: str = "autograd"
    inherit_spec: dict[str, Any] | None = None

    @property
    def plain(self) -> bool:
        """True when the task neither resumes, saves nor inherits."""
        return self.resume is None and self.save is None and self.inherit is None


def train_task(task: Task, train: EvalSplit, val: EvalSplit, objective: Objective) -> Result:
    """Train and score one task: every evaluator's single-candidate path."""
    if task.plain:
        result, _ = train_candidate(
            task.spec,
            train,
            val,
            epochs=task.epochs,
            seed=task.seed,
            objective=objective,
            trainer=task.trainer,
        )
        return result
    common: dict[str, Any] = dict(
        epochs=task.epochs,
        seed=task.seed,
        objective=objective,
        save=task.save,
        inherit=task.inherit,
        inherit_spec=task.inherit_spec,
        trainer=task.trainer,
    )
    try:
        result, _ = train_rung(task.spec, train, val, resume=task.resume, **common)
    except BadState:
        if task.resume is None:
            raise
        # Continuing replays the batches of an uninterrupted training, so training from
        # scratch to the same epochs with the same seed gives the same result.
        result, _ = train_rung(task.spec, train, val, **common)
    return result


class ExecutorLost(EvoaeError):
    """The executor itself is gone mid-search (a Ray cluster's head died): nothing more
    can be evaluated with it. The search loop adds how to continue the run."""


class Evaluator(ABC):
    """Trains and scores candidates on the data it was built with."""

    #: What was chosen, in words (set by the executor registry; shown in summaries).
    choice: str = ""

    @abstractmethod
    def evaluate(self, tasks: Sequence[Task]) -> Iterator[tuple[int, Result]]:
        """Yield ``(position in tasks, result)`` for every task, in completion order."""

    def call_workers(self, ready_only: bool = False) -> int:
        """How many :meth:`submit_call` calls run at once in other processes (0: this
        evaluator has no worker processes, and its callers run such work themselves);
        with ``ready_only``, only workers already started (starting one costs seconds)."""
        return 0

    def submit_call(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(train, val, objective, *args)`` in a worker, on the data the workers
        hold (``fn`` a module-level function; it and ``args`` are pickled). Only for
        evaluators whose :meth:`call_workers` is positive."""
        raise NotImplementedError(f"{type(self).__name__} runs no calls in other processes")

    def close(self) -> None:
        """Release workers or devices; the default holds none."""

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise EvoaeError(
            "--device cuda was asked for but no CUDA GPU is available: use cpu or auto"
        )
    if name not in ("cpu", "cuda"):
        raise EvoaeError(f"unknown device {name!r}: choose auto, cpu or cuda")
    return torch.device(name)


def as_tensor(x: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """Float32 tensor on ``device`` without copying when it already is one."""
    return torch.as_tensor(
        np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x,
        dtype=torch.float32,
        device=device,
    )


class SequentialEvaluator(Evaluator):
    """Trains one candidate after another in this process.

    ``train`` and ``val`` are arrays, tensors, :class:`evoae.data.Dataset` objects or
    :class:`EvalSplit` (labels travel with the latter two); ``objective`` scores each
    trained candidate on ``val`` (default: reconstruction loss); ``threads`` is torch's
    intra-op thread count while training (None: torch's own setting).
    """

    def __init__(
        self,
        train: Any,
        val: Any,
        device: str = "cpu",
        objective: Objective | None = None,
        threads: int | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.threads = threads
        self.train: EvalSplit = as_split(train, self.device)
        self.val: EvalSplit = as_split(val, self.device)
        self.objective = objective if objective is not None else Reconstruction()

    @property
    def x_train(self) -> torch.Tensor:
        return self.train.x

    @property
    def x_val(self) -> torch.Tensor:
        return self.val.x

    def evaluate(self, tasks: Sequence[Task]) -> Iterator[tuple[int, Result]]:
        for i, task in enumerate(tasks):
            with torch_threads(self.threads):
                result = train_task(task, self.train, self.val, self.objective)
            yield i, result
