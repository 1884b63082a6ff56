"""Reporting on runs: progress reporters, the plot reporter, TensorBoard and MLflow
reporters (their packages imported when one is made) and the HTML report.

The reporters are imported on first use, so a light submodule (the dashboard mirror)
does not bring matplotlib and torch with it.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["MLflowReporter", "PlotReporter", "ProgressReporter", "Reporter", "TensorBoardReporter"]

_LAZY = {
    "MLflowReporter": "evoae.report.trackers",
    "PlotReporter": "evoae.report.plotting",
    "ProgressReporter": "evoae.report.progress",
    "Reporter": "evoae.report.progress",
    "TensorBoardReporter": "evoae.report.trackers",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
