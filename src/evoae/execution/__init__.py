"""Executors that train a batch of candidates outside the search loop's thread.

``process`` (a local pool of worker processes) and ``ray`` (tasks on a Ray cluster)
implement :class:`evoae.training.Evaluator` like the in-process ``inline`` one and are
registered in :data:`evoae.training.EVALUATORS`. They are imported only when chosen,
so importing evoae never imports Ray.

Every worker trains with one torch thread (the executor supplies the parallelism),
receives the data once, and runs a task with the seed the search derived for it, so a
result depends neither on the worker nor on the completion order.
"""

from __future__ import annotations

from typing import Any


def process_evaluator(x_train: Any, x_val: Any, **options: Any) -> Any:
    """Factory for ``--executor process`` (imports the pool only when chosen)."""
    from evoae.execution.process import ProcessEvaluator

    return ProcessEvaluator(x_train, x_val, **options)


def ray_evaluator(x_train: Any, x_val: Any, **options: Any) -> Any:
    """Factory for ``--executor ray`` (imports Ray only when chosen)."""
    from evoae.execution.ray import RayEvaluator

    return RayEvaluator(x_train, x_val, **options)
