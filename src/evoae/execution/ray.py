"""Evaluations as Ray tasks (``--executor ray``), on this machine or on a cluster.

Without ``ray_address`` a local Ray instance is started with ``workers`` CPUs (default:
the machine's cores); with it, evoae joins that cluster (``auto`` for the one this node
belongs to). The data is put into the object store once; each task receives only a
reference to it, and a worker process converts it to tensors once and keeps it for the
tasks that follow. Ray resubmits a task whose worker died (``max_retries``, bounded);
after that the candidate is reported as failed and the search goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import ray

from evoae.errors import EvoaeError
from evoae.execution import worker
from evoae.training.evaluator import Evaluator, Task, resolve_device
from evoae.training.trainer import Result

#: Resubmissions of a task whose worker died, before it is marked failed.
MAX_RETRIES = 2

_data_key: str | None = None
_lock = threading.Lock()


def _train(refs: list[ray.ObjectRef], task: Task) -> Result:
    """The Ray task: load the data once per worker process, then train."""
    global _data_key
    key = refs[0].hex()
    with _lock:
        if _data_key != key:
            worker.init_worker(*ray.get(refs))
            _data_key = key
    return worker.run_task(task)


def _verbose() -> bool:
    return os.environ.get("EVOAE_VERBOSE", "").strip() not in ("", "0")


@contextlib.contextmanager
def _captured_stderr(enabled: bool) -> Iterator[list[str]]:
    """Send what Ray's libraries write to fd 2 into a buffer (its last lines are kept).

    Ray's C++ core logs straight to the file descriptor, around Python's ``sys.stderr``.
    """
    tail: list[str] = []
    if not enabled:
        yield tail
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield tail
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read(1 << 20).decode("utf-8", "replace")
            tail.extend(ln.strip() for ln in text.splitlines() if ln.strip())


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast, with one line, when ``HOST:PORT`` (or ``ray://HOST:PORT``) does not answer."""
    if address == "auto" or address.startswith("local"):
        return
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise EvoaeError(
            f"--ray-address {address!r} is not auto, HOST:PORT or ray://HOST:PORT: check it"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise EvoaeError(
            f"cannot reach the Ray cluster at {address} ({why}): check --ray-address and "
            "that the cluster is running (ray start --head)"
        ) from None


class RayEvaluator(Evaluator):
    """Trains tasks as Ray tasks, at most ``workers`` in flight (default: the cluster's CPUs).

    Parameters
    ----------
    train, val
        The data (inputs and labels; arrays or :class:`evoae.data.Dataset`), put into the
        object store once with the objective.
    workers
        Tasks in flight at once; also the CPUs of a local Ray instance started here.
    ray_address
        Join this cluster instead of starting a local instance.
    max_retries
        Ray's resubmissions of a task whose worker process died.
    runtime_env
        Ray runtime environment for the tasks (environment variables, ``py_modules``).
    """

    def __init__(
        self,
        train: Any,
        val: Any,
        *,
        device: str = "cpu",
        objective: Any = None,
        workers: int | None = None,
        ray_address: str | None = None,
        max_retries: int = MAX_RETRIES,
        runtime_env: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        if resolve_device(device).type != "cpu":
            raise EvoaeError("executor ray trains on CPUs: use --device cpu")
        if workers is not None and workers < 1:
            raise EvoaeError(f"workers must be at least 1, got {workers}")
        self._started = False
        if not ray.is_initialized():
            verbose = _verbose()
            options: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "logging_level": logging.INFO if verbose else logging.ERROR,
            }
            if ray_address:
                check_reachable(ray_address)
            try:
                with _captured_stderr(not verbose):
                    if ray_address:
                        ray.init(address=ray_address, **options)
                    else:
                        ray.init(num_cpus=workers or os.cpu_count() or 1, **options)
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
                where = f"the Ray cluster at {ray_address}" if ray_address else "a local Ray"
                msg = " ".join(str(e).split())[:200]
                raise EvoaeError(
                    f"cannot start or join {where} ({msg}): check --ray-address "
                    "(EVOAE_VERBOSE=1 shows Ray's own log lines)"
                ) from None
            self._started = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = workers or max(1, cpus)
        self._refs = [ray.put(part) for part in worker.payload(train, val, objective)]
        remote = ray.remote(num_cpus=1, max_retries=int(max_retries))(_train)
        self._remote = remote.options(runtime_env=runtime_env) if runtime_env else remote
        self.max_retries = int(max_retries)

    def evaluate(self, tasks: Sequence[Task]) -> Iterator[tuple[int, Result]]:
        queue = list(range(len(tasks)))
        in_flight: dict[ray.ObjectRef, int] = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < self.workers:
                    i = queue.pop(0)
                    in_flight[self._remote.remote(self._refs, tasks[i])] = i
                done, _ = ray.wait(list(in_flight), num_returns=1)
                i = in_flight.pop(done[0])
                yield i, self._result(done[0], tasks[i])
        finally:
            for ref in in_flight:  # the consumer stopped early (an error, a kill)
                ray.cancel(ref, force=True)

    def _result(self, ref: ray.ObjectRef, task: Task) -> Result:
        try:
            return ray.get(ref)
        except (
            ray.exceptions.WorkerCrashedError,
            ray.exceptions.OutOfMemoryError,
            ray.exceptions.NodeDiedError,
        ) as e:
            return worker.worker_died(task, self.max_retries + 1, type(e).__name__)
        except ray.exceptions.RayTaskError as e:
            msg = " ".join(str(e.cause if e.cause is not None else e).split())[:200]
            return Result.failed(0, 0.0, f"task raised {msg}")

    def close(self) -> None:
        if self._started and ray.is_initialized():
            ray.shutdown()
        self._started = False
