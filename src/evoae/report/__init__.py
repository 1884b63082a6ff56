"""Plots and reports of runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: model family -> extra plot functions ``f(model, splits, plots_dir)`` run after a search
#: (e.g. prior samples and latent maps for VAEs). Families register here.
PLOT_HOOKS: dict[str, list[Callable[..., Any]]] = {}
