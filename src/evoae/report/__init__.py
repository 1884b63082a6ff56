"""Reporting on runs: progress reporters, the plot reporter and the HTML report."""

from __future__ import annotations

from evoae.report.plotting import PlotReporter
from evoae.report.progress import ProgressReporter, Reporter

__all__ = ["PlotReporter", "ProgressReporter", "Reporter"]
