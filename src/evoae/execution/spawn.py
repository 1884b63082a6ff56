"""A process pool worker's initializer, in a module that imports nothing heavy.

A spawned worker unpickles what its parent sent in order: the initializer (importing
its module) and then the initializer's arguments, the data. The parent's write of
that message blocks until the worker has read it, so an initializer in a module that
imports torch held the search up ~1.4 s per worker while each worker imported torch,
one worker after another. From here the worker reads the whole message first, and the
workers import torch together while the search goes on.
"""

from __future__ import annotations

import ast
import os
import sys
from typing import Any


def init(parent: int, *data: Any) -> None:
    """Pool initializer: :func:`evoae.execution.process.init_process` in this worker."""
    from evoae.execution.process import init_process

    init_process(parent, *data)


def _guarded(source: str) -> bool:
    """Whether module ``source`` runs nothing but definitions unless it is ``__main__``:
    it has a top-level ``if __name__ == "__main__":`` (either order of the comparison)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            parts = [node.test.left, *node.test.comparators]
            names = {p.id for p in parts if isinstance(p, ast.Name)}
            consts = {p.value for p in parts if isinstance(p, ast.Constant)}
            if "__name__" in names and "__main__" in consts:
                return True
    return False


def spawn_unsafe() -> str | None:
    """Why spawned worker processes would fail in this process, or None.

    A spawned worker first re-imports the parent's main script (as ``__mp_main__``). A
    script that calls evoae at its top level, with no ``if __name__ == "__main__":``
    guard, would start the search again in every worker; and a script read from standard
    input cannot be re-imported at all. Either way the workers die before they read
    their data, and the parent, writing it, would wait forever.
    """
    main = sys.modules.get("__main__")
    if main is None:
        return None
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    if name is not None:  # python -m NAME: workers import NAME, except a package's __main__
        if name == "__main__" or name.endswith(".__main__"):
            return None
        path = getattr(spec, "origin", None)
    else:
        path = getattr(main, "__file__", None)
        if path is None:  # python -c, an interactive session, a notebook
            return None
    if path is None or not os.path.isfile(path):
        return f"the main script ({path or 'standard input'}) cannot be re-imported by workers"
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read(1 << 22)
    except (OSError, UnicodeDecodeError):
        return None  # unreadable here: let the workers try, as before
    if _guarded(source):
        return None
    return f'{path} has no `if __name__ == "__main__":` guard, which worker processes need'
