"""What a worker process does: hold the data once, train one task at a time."""

from __future__ import annotations

import numpy as np
import torch

from evoae.runs.killpoints import arm_forward
from evoae.training.evaluator import Task, as_tensor
from evoae.training.trainer import Result, train_candidate

#: Threads per worker: parallelism comes from the number of workers, not from torch.
WORKER_THREADS = 1

_data: tuple[torch.Tensor, torch.Tensor] | None = None


def init_worker(x_train: np.ndarray, x_val: np.ndarray) -> None:
    """Prepare this process: one torch thread, the data as CPU tensors."""
    global _data
    torch.set_num_threads(WORKER_THREADS)
    arm_forward()  # a no-op outside the kill tests
    cpu = torch.device("cpu")
    # np.array copies read-only shared buffers (Ray's object store) into writable memory.
    _data = (as_tensor(np.array(x_train), cpu), as_tensor(np.array(x_val), cpu))


def run_task(task: Task) -> Result:
    """Train ``task`` on the data given to :func:`init_worker`."""
    if _data is None:
        raise RuntimeError("run_task called in a process that init_worker did not prepare")
    result, _ = train_candidate(task.spec, _data[0], _data[1], epochs=task.epochs, seed=task.seed)
    return result


def worker_died(task: Task, attempts: int, why: str) -> Result:
    """The failed result of a task whose worker died ``attempts`` times."""
    from evoae.models import build_model, count_params

    params = count_params(build_model(task.spec, task.seed))
    return Result.failed(params, 0.0, f"worker died {attempts} times ({why})")
