"""Evaluations as Ray tasks (``--executor ray``), on this machine or on a cluster.

Without ``ray_address`` a local Ray instance is started with ``workers`` CPUs (default:
the machine's cores); with it, evoae joins that cluster (``auto`` for the one this node
belongs to). The data is put into the object store once; each task receives only a
reference to it, and a worker process converts it to tensors once and keeps it for the
tasks that follow. Ray resubmits a task whose worker died (``max_retries``, bounded);
after that the candidate is reported as failed and the search goes on.

Joining is checked first (:mod:`evoae.execution.raycluster`: a handshake with a
deadline, loopback pinned); while tasks run, the head's GCS is asked every few seconds,
and a head gone silent ends the search with :class:`ExecutorLost` instead of Ray's own
exit a minute later. What Ray's driver would print goes to the ``evoae.ray`` logger.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import ray

from evoae.errors import EvoaeError
from evoae.execution import raycluster, worker
from evoae.training.evaluator import Evaluator, ExecutorLost, Task, resolve_device
from evoae.training.trainer import Result

#: Resubmissions of a task whose worker died, before it is marked failed.
MAX_RETRIES = 2
#: Seconds between checks that the cluster's head still answers, while tasks run.
HEAD_POLL_S = 2.0
#: Seconds without an answer from the head before the search is stopped (well under
#: the 60 s after which Ray's own client kills the driver with its own message).
HEAD_LOST_S = 10.0
#: Seconds ``close`` waits for Ray to let go of a cluster whose head is gone (it takes
#: 10-20 s; a process that exits while Ray's C++ client still shuts down can abort).
SHUTDOWN_S = 30.0

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


_ray_log = logging.getLogger("evoae.ray")


def _to_log(data: dict[str, Any], ignore_prefix: bool = False) -> None:
    """Ray's messages for the driver (a dead raylet's log tail, on stdout by default),
    sent to the ``evoae.ray`` logger at DEBUG level instead."""
    for line in data.get("lines", []):
        _ray_log.debug("(%s) %s", data.get("pid", "ray"), line)


def _quiet_driver() -> None:
    """Keep what Ray's driver threads print off stdout and stderr (EVOAE_VERBOSE keeps it).

    ``log_to_driver=False`` stops the workers' output, but a thread that listens for
    cluster errors still prints each dead raylet's last log lines to stdout.
    """
    from ray._private import worker as ray_worker

    if hasattr(ray_worker, "print_to_stdstream"):
        ray_worker.print_to_stdstream = _to_log


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
        self._gcs: str | None = None  # the head's GCS, watched while tasks run
        self._lost = False
        self._checked = 0.0  # when the head was last asked
        self._silent_since: float | None = None  # since when it has not answered
        if not ray.is_initialized():
            self._init_ray(workers, ray_address)
            self._started = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = workers or max(1, cpus)
        self._refs = [ray.put(part) for part in worker.payload(train, val, objective)]
        remote = ray.remote(num_cpus=1, max_retries=int(max_retries))(_train)
        self._remote = remote.options(runtime_env=runtime_env) if runtime_env else remote
        self.max_retries = int(max_retries)

    def _init_ray(self, workers: int | None, ray_address: str | None) -> None:
        """Start a local Ray, or join ``ray_address`` after a handshake with it."""
        verbose = _verbose()
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.INFO if verbose else logging.ERROR,
        }
        node_ip = None
        joining = bool(ray_address) and ray_address != "local"  # nothing started here
        if ray_address:
            ray_address, node_ip = raycluster.check_cluster(ray_address)
            if not ray_address.startswith("ray://"):
                self._gcs = ray_address
            if node_ip:
                options["_node_ip_address"] = node_ip
        try:
            with (
                _captured_stderr(not verbose),
                raycluster.signals_end_process(),
                raycluster.loopback_pinned(node_ip is not None),
                raycluster.backend_quiet(joining and not verbose),
            ):
                if ray_address:
                    ray.init(address=ray_address, **options)
                else:  # "local": a new instance, never a cluster ray start left running
                    cpus = workers or os.cpu_count() or 1
                    ray.init(address="local", num_cpus=cpus, **options)
            if not verbose:
                _quiet_driver()
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
            where = f"the Ray cluster at {ray_address}" if ray_address else "a local Ray"
            msg = " ".join(str(e).split())[:200]
            raise EvoaeError(
                f"cannot start or join {where} ({msg}): check --ray-address "
                "(EVOAE_VERBOSE=1 shows Ray's own log lines)"
            ) from None

    def evaluate(self, tasks: Sequence[Task]) -> Iterator[tuple[int, Result]]:
        if self._lost:
            raise self._lost_error()
        queue = list(range(len(tasks)))
        in_flight: dict[ray.ObjectRef, int] = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < self.workers:
                    i = queue.pop(0)
                    in_flight[self._remote.remote(self._refs, tasks[i])] = i
                done = self._wait(list(in_flight))
                i = in_flight.pop(done)
                yield i, self._result(done, tasks[i])
        finally:
            # The consumer stopped early: an error cancels what is in flight. Not on
            # Ctrl-C / SIGTERM: the driver shuts down or disconnects next, which ends
            # the job's tasks, and a force-cancel racing a task's reply trips a check
            # in Ray's task manager that ends the process with status 1 (seen 1 run in
            # 8 under load: "Check failed: it != submissible_tasks_.end()").
            interrupted = isinstance(sys.exc_info()[1], KeyboardInterrupt)
            if not self._lost and not interrupted:
                for ref in in_flight:
                    # Cleanup must not replace the exception that got us here.
                    with contextlib.suppress(Exception):
                        ray.cancel(ref, force=True)

    def _wait(self, refs: list[ray.ObjectRef]) -> ray.ObjectRef:
        """The next finished task; raises :class:`ExecutorLost` once the head is gone.

        Workers that die are Ray's business (it resubmits their tasks); a head that dies
        takes the cluster with it, which only the GCS's silence tells. Raylets that
        survive it may still finish tasks, but Ray ends the driver once its GCS has been
        gone for a minute, so the search stops; a result that arrived is handed out
        first, so the journal keeps every finished task.
        """
        if self._lost:
            raise self._lost_error()
        while True:
            done, _ = ray.wait(refs, num_returns=1, timeout=HEAD_POLL_S)
            self._watch_head()
            if done:
                return done[0]
            if self._lost:
                raise self._lost_error()

    def _watch_head(self) -> None:
        """Ask the head's GCS, at most every ``HEAD_POLL_S`` s, whether it still answers."""
        now = time.monotonic()
        if self._gcs is None or now - self._checked < HEAD_POLL_S:
            return
        self._checked = now
        if raycluster.gcs_alive(self._gcs, timeout=HEAD_POLL_S):
            self._silent_since = None
            return
        self._silent_since = self._silent_since or now
        self._lost = now - self._silent_since >= HEAD_LOST_S

    def _lost_error(self) -> ExecutorLost:
        return ExecutorLost(
            f"the Ray cluster at {self._gcs} stopped answering for {HEAD_LOST_S:g} s "
            "(its head is gone)"
        )

    def _result(self, ref: ray.ObjectRef, task: Task) -> Result:
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # the task itself raised
            msg = " ".join(str(e.cause if e.cause is not None else e).split())[:200]
            return Result.failed(0, 0.0, f"task raised {msg}")
        except ray.exceptions.RayError as e:  # its worker, its node or the cluster died
            if self._gcs is not None and not self._head_answers():
                # Not the candidate's failure: nothing is journaled, a resume retrains it.
                self._lost = True
                raise self._lost_error() from None
            died = (
                ray.exceptions.WorkerCrashedError,
                ray.exceptions.OutOfMemoryError,
                ray.exceptions.NodeDiedError,
            )
            if isinstance(e, died):
                return worker.worker_died(task, self.max_retries + 1, type(e).__name__)
            raise

    def _head_answers(self) -> bool:
        """Whether the head's GCS answers within ``HEAD_LOST_S`` seconds (asked every
        ``HEAD_POLL_S``)."""
        assert self._gcs is not None
        deadline = time.monotonic() + HEAD_LOST_S
        while True:
            if raycluster.gcs_alive(self._gcs, timeout=HEAD_POLL_S):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(HEAD_POLL_S)

    def close(self) -> None:
        if self._started and ray.is_initialized() and self._lost:
            raycluster.shutdown_bounded(SHUTDOWN_S)
        elif self._started and ray.is_initialized():
            with _captured_stderr(not _verbose()):
                ray.shutdown()
        self._started = False
