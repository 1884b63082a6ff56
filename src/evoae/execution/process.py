"""A pool of local worker processes (``--executor process``).

Workers are started with ``spawn`` (a fork of a process that already ran torch threads
can deadlock) and receive the training and validation data once, through the pool's
initializer; a task then carries only its spec, seed and epochs. A worker that dies
(killed, out of memory) breaks the whole pool: the pool is rebuilt and the unfinished
tasks are resubmitted, at most ``max_retries`` times each, after which a task is
reported as failed and the search goes on.

Workers die with their parent: each runs a watcher thread that ends the worker as soon
as its parent process is gone (its parent pid changes), so a search killed with SIGKILL
leaves no orphaned workers training on.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from evoae.errors import EvoaeError
from evoae.execution import spawn
from evoae.execution.worker import init_worker, payload, run_call, run_task, worker_died
from evoae.training.evaluator import Evaluator, Task, resolve_device
from evoae.training.optim import defer_dynamo
from evoae.training.trainer import Result

#: Resubmissions of a task whose worker died, before it is marked failed.
MAX_RETRIES = 2
#: How often a worker checks that its parent is alive (seconds).
PARENT_POLL = 0.2


def _watch_parent(parent: int, poll: float) -> None:
    """End this worker once its parent is gone (it was re-parented to init or a reaper)."""
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(poll)


def die_with_parent(parent: int, poll: float = PARENT_POLL) -> None:
    """Make this process exit when process ``parent`` dies (a daemon watcher thread).

    A thread rather than ``PR_SET_PDEATHSIG``: the kernel signal fires when the *thread*
    that started the worker exits, which in a pool need not be the search's own thread.
    """
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(
        target=_watch_parent, args=(parent, poll), name="evoae-parent-watch", daemon=True
    ).start()


def init_process(parent: int, *data: Any) -> None:
    """Pool initializer: tie the worker's life to the search process, then load the data
    (the :func:`evoae.execution.worker.payload` tuple)."""
    die_with_parent(parent)
    defer_dynamo()  # a worker is evoae's own process
    init_worker(*data)


class ProcessEvaluator(Evaluator):
    """Trains tasks in ``workers`` local processes (default: the machine's cores).

    ``train`` and ``val`` are arrays or :class:`evoae.data.Dataset` (labels travel
    with them); ``objective`` scores each trained candidate.
    """

    def __init__(
        self,
        train: Any,
        val: Any,
        *,
        device: str = "cpu",
        objective: Any = None,
        workers: int | None = None,
        max_retries: int = MAX_RETRIES,
        **_: Any,
    ) -> None:
        if resolve_device(device).type != "cpu":
            raise EvoaeError("executor process trains on the CPU: use --device cpu")
        if workers is not None and workers < 1:
            raise EvoaeError(f"workers must be at least 1, got {workers}")
        self.workers = workers or os.cpu_count() or 1
        self.max_retries = int(max_retries)
        self._data = payload(train, val, objective)
        self._pool: ProcessPoolExecutor | None = None
        self._calls: list[Future[Any]] = []  # submit_call's futures

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=spawn.init,
                initargs=(os.getpid(), *self._data),
            )
        return self._pool

    def evaluate(self, tasks: Sequence[Task]) -> Iterator[tuple[int, Result]]:
        attempts = [0] * len(tasks)
        todo = list(range(len(tasks)))
        while todo:
            pool = self._get_pool()
            futures: dict[Future[Result], int] = {pool.submit(run_task, tasks[i]): i for i in todo}
            todo = []
            broken = False
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=futures.__getitem__):
                    i = futures[fut]
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        # Which task killed its worker is unknown: every unfinished one
                        # spends an attempt, so a task that always kills is bounded too.
                        broken = True
                        attempts[i] += 1
                        if attempts[i] > self.max_retries:
                            yield i, worker_died(tasks[i], attempts[i], "process pool broke")
                        else:
                            todo.append(i)
                        continue
                    yield i, result
            if broken:
                self._shutdown()
            todo.sort()

    def call_workers(self, ready_only: bool = False) -> int:
        return 0 if ready_only and self._pool is None else self.workers

    def submit_call(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future = self._get_pool().submit(run_call, fn, args)
        self._calls.append(future)
        return future

    def _shutdown(self) -> None:
        if self._pool is not None:
            # A call still running when the pool closes was abandoned (an interrupted
            # final stage): end its worker rather than wait for a whole final training.
            if any(not f.done() for f in self._calls):
                for proc in list(getattr(self._pool, "_processes", {}).values()):
                    proc.terminate()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._calls = []

    def close(self) -> None:
        self._shutdown()
