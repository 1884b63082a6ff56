"""Reporters: side concerns that watch the search loop without cluttering it."""

from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from evoae.runs.journal import Row


class Reporter:
    """Hooks called by the search loop; every hook is optional."""

    def start(
        self, total: int, done: int, settings: dict[str, Any], unit: str = "generations"
    ) -> None:
        """The search begins (or resumes) with ``done`` of ``total`` ``unit`` behind it."""

    def evaluated(self, row: Row) -> None: ...

    def generation(self, done: int, best: float) -> None: ...

    def phase(self, text: str) -> None: ...

    def finished(self, result: Any, splits: Any) -> None:
        """The best model is retrained and saved (``result``: a SearchResult)."""

    def end(self) -> None: ...


class ProgressReporter(Reporter):
    """A rich progress bar: tournaments done, current best, elapsed time."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: Any = None
        self._best = math.inf
        self._t0 = time.perf_counter()

    def start(
        self, total: int, done: int, settings: dict[str, Any], unit: str = "generations"
    ) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("best {task.fields[best]}"),
            TextColumn("evals {task.fields[evals]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(unit, total=total, completed=done, best="-", evals=0)

    def evaluated(self, row: Row) -> None:
        if self._progress is not None:
            self._best = min(self._best, row.fitness)
            evals = row.id + 1
            self._progress.update(self._task, evals=evals, best=_fmt(self._best))

    def generation(self, done: int, best: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, best=_fmt(best))

    def phase(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text)

    def end(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _fmt(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.5g}"
