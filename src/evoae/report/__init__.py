"""Reporting on runs: progress reporters, the plot reporter, TensorBoard and MLflow
reporters (their packages imported when one is made) and the HTML report."""

from __future__ import annotations

from evoae.report.plotting import PlotReporter
from evoae.report.progress import ProgressReporter, Reporter
from evoae.report.trackers import MLflowReporter, TensorBoardReporter

__all__ = ["MLflowReporter", "PlotReporter", "ProgressReporter", "Reporter", "TensorBoardReporter"]
