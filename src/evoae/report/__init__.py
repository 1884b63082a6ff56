"""Plots and reports of runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: model family -> extra plot functions ``f(model, splits, plots_dir)`` run after a search
#: (e.g. prior samples and latent maps for VAEs). Families register here.
PLOT_HOOKS: dict[str, list[Callable[..., Any]]] = {}


def _latent_plots(model: Any, splits: Any, plots_dir: Any) -> Any:
    from evoae.report.latent import latent_plots  # lazily: report.latent imports torch models

    return latent_plots(model, splits, plots_dir)


PLOT_HOOKS.update({"conv-vae": [_latent_plots], "conv-ae": [_latent_plots]})
