"""Executors: how a batch of candidates is trained, and their registry.

``inline`` (one after another in this process), ``population`` (stacked training of a
batch, :mod:`evoae.training.population`), ``process`` (a local pool of worker
processes) and ``ray`` (tasks on a Ray cluster) all implement
:class:`evoae.training.Evaluator`. ``process`` and ``ray`` are imported only when
chosen, so importing evoae never imports Ray.

Every worker trains with one torch thread (the executor supplies the parallelism),
receives the data and the objective once, and runs a task with the seed the search
derived for it, so a result depends neither on the worker nor on the completion order.
To add an executor: write an Evaluator and :func:`register` a factory
``factory(train, val, *, device, objective, **options)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from evoae.errors import EvoaeError
from evoae.execution import spawn

if TYPE_CHECKING:
    from evoae.training import Evaluator

# Importing this package imports nothing heavier than evoae.errors: a process pool's
# worker unpickles its initializer (evoae.execution.spawn) and its data before it
# imports torch, so starting a worker does not hold up the search (see spawn.py).


def _inline(
    train: Any,
    val: Any,
    *,
    device: str = "cpu",
    objective: Any = None,
    threads: int | None = None,
    **_: Any,
) -> Evaluator:
    from evoae.training import SequentialEvaluator

    return SequentialEvaluator(train, val, device, objective, threads=threads or 1)


def _population(train: Any, val: Any, **options: Any) -> Evaluator:
    from evoae.training.population import make_population_evaluator

    return make_population_evaluator(train, val, **options)


def _auto(
    train: Any,
    val: Any,
    *,
    device: str = "cpu",
    parallelism: int = 1,
    workers: int | None = None,
    threads: int | None = None,
    steps: int | None = None,
    **options: Any,
) -> Evaluator:
    """Every core used, none oversubscribed: a process pool of one-thread workers when the
    strategy asks for several candidates at once, else one candidate at a time in this
    process with ``threads`` (default 1) intra-op threads. A search of fewer than
    :data:`MIN_POOL_STEPS` optimizer steps in all (``steps``, the caller's estimate)
    trains in this process: starting workers would cost it more than they save."""
    from evoae.training.evaluator import resolve_device
    from evoae.training.threads import available_cores

    cores = available_cores()
    n = min(workers or cores, max(1, parallelism))
    pool = n > 1 and resolve_device(device).type == "cpu"
    why = f"{cores} cores"
    if pool and workers is None and steps is not None and steps < MIN_POOL_STEPS:
        pool = False
        why += f"; about {steps:,} optimizer steps in all, too few to pay for starting workers"
    elif pool and (unsafe := spawn.spawn_unsafe()) is not None:
        pool, why = False, unsafe
    if pool:
        ev = _process(train, val, device=device, workers=n, **options)
        ev.choice = f"process pool: {n} workers x 1 thread ({cores} cores)"
        return ev
    ev = _inline(train, val, device=device, threads=threads, **options)
    ev.choice = f"inline: 1 candidate at a time x {threads or 1} thread ({why})"
    return ev


#: The fewest optimizer steps (the whole search's) for which ``auto`` starts a process
#: pool. Each worker imports torch (about 2 s of CPU) before it trains, and a batch waits
#: for its slowest candidate. Measured on 2 cores (benchmarks/cores.py): the quick start
#: (aging, 24,000 steps) took 13.0 s on a pool against 13.3 s inline when quiet, 14.8 s
#: against 13.4 s beside a busy process, for half again the CPU; a microbial search of
#: 6,400 steps 13.9 s against 9.9 s; the seed preset (75,000) 73.9 s against 128.3 s.
MIN_POOL_STEPS = 30_000


def _process(train: Any, val: Any, **options: Any) -> Evaluator:
    from evoae.execution.process import ProcessEvaluator

    unsafe = spawn.spawn_unsafe()
    if unsafe is not None:
        raise EvoaeError(
            f"executor process cannot start its workers: {unsafe}; put the call under "
            "that guard, or use the inline executor"
        )

    return ProcessEvaluator(train, val, **options)


def _ray(train: Any, val: Any, **options: Any) -> Evaluator:
    from evoae.execution.ray import RayEvaluator

    return RayEvaluator(train, val, **options)


#: executor name -> factory(train, val, *, device, objective, **options).
EXECUTORS: dict[str, Callable[..., Evaluator]] = {
    "auto": _auto,
    "inline": _inline,
    "population": _population,
    "process": _process,
    "ray": _ray,
}
#: One line per executor, for help texts.
EXECUTOR_HELP = {
    "auto": "every core, no oversubscription: a process pool when the strategy asks for "
    "several candidates at once, else inline with one thread",
    "inline": "one candidate after another",
    "population": "a batch of candidates as one stacked computation",
    "process": "a local process pool",
    "ray": "Ray tasks, locally or on a cluster",
}


def register(name: str, factory: Callable[..., Evaluator], help: str = "") -> None:
    """Make ``factory`` available as ``--executor name``."""
    EXECUTORS[name] = factory
    EXECUTOR_HELP[name] = help or name


def make_evaluator(
    name: str, train: Any, val: Any, *, device: str = "cpu", **options: Any
) -> Evaluator:
    """The evaluator registered under ``name``, holding the training and validation data."""
    if name not in EXECUTORS:
        raise EvoaeError(f"unknown executor {name!r}: choose from {', '.join(EXECUTORS)}")
    if name not in ("auto",):
        options.pop("parallelism", None)
        options.pop("steps", None)
    ev = EXECUTORS[name](train, val, device=device, **options)
    if not getattr(ev, "choice", None):
        ev.choice = name
    return ev


__all__ = ["EXECUTORS", "EXECUTOR_HELP", "make_evaluator", "register"]
