"""Run storage: the SQLite journal, atomic checkpoints and the run folder layout."""

from evoae.runs.journal import Journal, Row

__all__ = ["Journal", "Row"]
