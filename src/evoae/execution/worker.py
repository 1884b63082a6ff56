"""What a worker process does: hold the data once, train one task at a time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from evoae.objectives import EvalSplit, Objective, Reconstruction
from evoae.runs.killpoints import arm_forward
from evoae.training.evaluator import Task, train_task
from evoae.training.trainer import Result, as_split

#: Threads per worker: parallelism comes from the number of workers, not from torch.
WORKER_THREADS = 1

_state: tuple[EvalSplit, EvalSplit, Objective | None] | None = None


def _arrays(data: Any) -> tuple[np.ndarray, np.ndarray | None]:
    x, y = (data.x, data.y) if hasattr(data, "x") and hasattr(data, "y") else (data, None)
    if isinstance(x, torch.Tensor):
        x = x.cpu().numpy()
    if isinstance(y, torch.Tensor):
        y = y.cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32), None if y is None else np.asarray(y)


def payload(train: Any, val: Any, objective: Objective | None) -> tuple[Any, ...]:
    """What a worker is initialised with, once: inputs, labels and the objective."""
    x_train, y_train = _arrays(train)
    x_val, y_val = _arrays(val)
    return x_train, x_val, y_train, y_val, objective


def init_worker(
    x_train: np.ndarray,
    x_val: np.ndarray,
    y_train: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    objective: Objective | None = None,
) -> None:
    """Prepare this process: one torch thread, the data as CPU tensors."""
    global _state
    torch.set_num_threads(WORKER_THREADS)
    arm_forward()  # a no-op outside the kill tests
    cpu = torch.device("cpu")
    # np.array copies read-only shared buffers (Ray's object store) into writable memory.
    train = as_split(EvalSplit(torch.as_tensor(np.array(x_train))), cpu)
    val = as_split(EvalSplit(torch.as_tensor(np.array(x_val))), cpu)
    if y_train is not None:
        train = EvalSplit(train.x, torch.as_tensor(np.array(y_train)))
    if y_val is not None:
        val = EvalSplit(val.x, torch.as_tensor(np.array(y_val)))
    _state = (train, val, objective)


def _data(what: str) -> tuple[EvalSplit, EvalSplit, Objective]:
    """The data and objective :func:`init_worker` gave this process."""
    if _state is None:
        raise RuntimeError(f"{what} called in a process that init_worker did not prepare")
    train, val, objective = _state
    return train, val, objective if objective is not None else Reconstruction()


def run_task(task: Task) -> Result:
    """Train ``task`` on the data given to :func:`init_worker`."""
    train, val, objective = _data("run_task")
    return train_task(task, train, val, objective)


def run_call(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """``fn(train, val, objective, *args)`` on the data given to :func:`init_worker`
    (:meth:`evoae.training.Evaluator.submit_call`)."""
    return fn(*_data("run_call"), *args)


def worker_died(task: Task, attempts: int, why: str) -> Result:
    """The failed result of a task whose worker died ``attempts`` times."""
    from evoae.families import build_model
    from evoae.models import count_params

    params = count_params(build_model(task.spec, task.seed))
    return Result.failed(params, 0.0, f"worker died {attempts} times ({why})")
