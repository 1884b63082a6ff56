"""The plot reporter: a run's figures, drawn once the best model is retrained."""

from __future__ import annotations

from typing import Any

import torch

from evoae.families import family_of
from evoae.plots.figures import plot_fitness, plot_reconstructions
from evoae.report.progress import Reporter
from evoae.runs import folder as rf


class PlotReporter(Reporter):
    """Writes ``plots/fitness.png``, ``plots/reconstructions.png`` and the family's plots."""

    def finished(self, result: Any, splits: Any) -> None:
        s = result.settings
        plots = result.run_dir / rf.PLOTS_DIR
        plot_fitness(
            result.history,
            plots / "fitness.png",
            ylabel=f"validation loss ({s.training.epochs} epochs)",
        )
        model = result.model
        n = min(10, len(splits.val))
        with torch.no_grad():
            originals = splits.val.x[:n]
            # The posterior mean for VAEs: the plot shows what the model encodes.
            recons = model.reconstruct(torch.as_tensor(originals)).numpy()
        # The epochs the kept model actually trained (a plateau or time budget can stop
        # the final training before final_epochs; a step floor can raise it).
        epochs = result.final.get("epochs") or 0
        plot_reconstructions(
            originals,
            recons,
            plots / "reconstructions.png",
            image_shape=splits.val.image_shape,
            title=f"best model after {epochs} epoch{'' if epochs == 1 else 's'} of final training",
        )
        for extra in family_of(result.best_spec).plots:
            extra(model, splits, plots)
