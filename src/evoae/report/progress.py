"""Reporters: side concerns that watch the search loop without cluttering it."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from evoae.runs.best import epochs_text
from evoae.runs.journal import Row


class Reporter:
    """Hooks called by the search loop; every hook is optional."""

    def opened(self, run_dir: Path, resumed: bool) -> None:
        """The run folder is ready (``resumed``: an earlier run continues); before start."""

    def start(
        self,
        total: int,
        done: int,
        settings: dict[str, Any],
        unit: str = "generations",
        evaluations: int = 0,
    ) -> None:
        """The search begins (or resumes) with ``done`` of ``total`` ``unit`` and
        ``evaluations`` journaled evaluations behind it."""

    def evaluated(self, row: Row) -> None:
        """One evaluation was journaled."""

    def generation(self, done: int, best: float) -> None:
        """A batch was told: ``done`` units of progress, best fitness so far."""

    def final_start(self, epochs: int) -> None:
        """The best candidate's final training begins."""

    def final_epoch(self, done: int, loss: float) -> None:
        """One epoch of the final training finished (mean training loss)."""

    def finished(self, result: Any, splits: Any) -> None:
        """The best model is retrained and saved (``result``: a SearchResult)."""

    def end(self) -> None:
        """The search is over (normally or not)."""


class ProgressReporter(Reporter):
    """Progress on stderr: rich bars on a terminal, else one plain line at a steady interval.

    The search bar counts the strategy's own unit (tournaments, evaluations) and shows
    evaluations and the best fitness; the final training has a bar of its own that
    counts epochs, with the training loss, its own clock and an ETA (at the epoch cap: a
    plateau may end it sooner). Counters continue from where a resumed run stopped.
    ``clock`` (seconds, monotonic) times the lines, bars and ETAs.
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        interval: float = 10.0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console or Console(stderr=True)
        self.interval = float(interval)
        self.stream = stream
        self.clock = clock
        self._progress: Progress | None = None
        self._task: Any = None
        self._final: Any = None
        self._best = math.inf
        self._evals = 0
        self._done = self._total = 0
        self._unit = "generations"
        self._t0 = clock()
        self._last = -math.inf
        self._final_epochs = 0
        self._final_t0 = self._t0

    @property
    def plain(self) -> bool:
        """No terminal: plain lines instead of redrawn bars."""
        return self.stream is not None or not self.console.is_terminal

    def start(
        self,
        total: int,
        done: int,
        settings: dict[str, Any],
        unit: str = "generations",
        evaluations: int = 0,
    ) -> None:
        self._t0 = self.clock()
        self._done, self._total, self._unit, self._evals = done, total, unit, evaluations
        if self.plain:
            self._line("search started" if done == 0 and evaluations == 0 else "search resumed")
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            _EtaColumn(),
            console=self.console,
            transient=False,
            get_time=self.clock,
        )
        self._progress.start()
        self._task = self._progress.add_task(
            unit, total=total, completed=done, info=self._info(), eta=False
        )

    def _info(self) -> str:
        return f"evaluations {self._evals}  best {_fmt(self._best)}"

    def evaluated(self, row: Row) -> None:
        self._best = min(self._best, row.fitness)
        self._evals = max(self._evals, row.id + 1)
        if self._progress is not None:
            self._progress.update(self._task, info=self._info())
        elif self.plain:
            self._maybe_line()

    def generation(self, done: int, best: float) -> None:
        self._done, self._best = done, min(self._best, best)
        if self._progress is not None:
            self._progress.update(self._task, completed=done, info=self._info())
        elif self.plain:
            self._maybe_line()

    def final_start(self, epochs: int) -> None:
        self._final_epochs = epochs
        self._final_t0 = self.clock()
        if self.plain:
            self._line(f"search done; final training of the best for {epochs_text(epochs)}")
            return
        if self._progress is None:
            return
        if self._final is not None:  # a second final training (the best other candidate)
            self._progress.reset(self._final, total=max(epochs, 1), info="train loss -")
            return
        self._final = self._progress.add_task(
            "final training (epochs)", total=max(epochs, 1), info="train loss -", eta=True
        )
        # The search bar's clock stops: the final training has its own.
        self._progress.stop_task(self._task)

    def final_epoch(self, done: int, loss: float) -> None:
        if self._progress is not None and self._final is not None:
            self._progress.update(self._final, completed=done, info=f"train loss {_fmt(loss)}")
        elif self.plain and (done == self._final_epochs or self._due()):
            self._line(
                f"final training: epoch {done}/{self._final_epochs}, loss {_fmt(loss)}"
                + self._eta_text(done)
            )

    def _eta_text(self, done: int) -> str:
        """``, eta 12 s`` at the pace of the epochs so far ("" once the cap is reached)."""
        left = self._final_epochs - done
        if done <= 0 or left <= 0:
            return ""
        per_epoch = (self.clock() - self._final_t0) / done
        return f", eta {per_epoch * left:.0f} s"

    def end(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    # ---------------------------------------------------------------- plain lines

    def _due(self) -> bool:
        return self.clock() - self._last >= self.interval

    def _maybe_line(self) -> None:
        if self._due():
            self._line()

    def _line(self, text: str | None = None) -> None:
        self._last = self.clock()
        elapsed = self._last - self._t0
        body = text or (
            f"{self._done}/{self._total} {self._unit}, {self._evals} evaluations, "
            f"best {_fmt(self._best)}"
        )
        print(f"evoae: {body} [{elapsed:.0f} s]", file=self.stream or sys.stderr, flush=True)


class _EtaColumn(ProgressColumn):
    """``eta 0:01:05`` for a bar that counts epochs (tasks with ``eta=True``), from the
    pace of its recent epochs; blank for the search's bar, whose end a time budget or a
    strategy's own stop may move."""

    def render(self, task: Task) -> Text:
        if not task.fields.get("eta") or task.finished:
            return Text("")
        left = task.time_remaining
        if left is None:
            return Text("eta -:--:--", style="progress.remaining")
        minutes, seconds = divmod(int(math.ceil(left)), 60)
        hours, minutes = divmod(minutes, 60)
        return Text(f"eta {hours}:{minutes:02d}:{seconds:02d}", style="progress.remaining")


def _fmt(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.5g}"
