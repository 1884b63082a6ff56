"""A process pool worker's initializer, in a module that imports nothing heavy.

A spawned worker unpickles what its parent sent in order: the initializer (importing
its module) and then the initializer's arguments, the data. The parent's write of
that message blocks until the worker has read it, so an initializer in a module that
imports torch held the search up ~1.4 s per worker while each worker imported torch,
one worker after another. From here the worker reads the whole message first, and the
workers import torch together while the search goes on.
"""

from __future__ import annotations

from typing import Any


def init(parent: int, *data: Any) -> None:
    """Pool initializer: :func:`evoae.execution.process.init_process` in this worker."""
    from evoae.execution.process import init_process

    init_process(parent, *data)
