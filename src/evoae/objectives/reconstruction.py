"""The default objective: the model's own reconstruction loss on held-out data.

MSE per value for deterministic autoencoders, the negative ELBO per image in nats for
VAEs (the loss the model was trained on, with beta = 1 at evaluation).

A VAE whose spec sets a ``collapse_penalty`` is judged for posterior collapse: its
active latent units are counted on the split (:func:`evoae.models.vae.active_units`)
and, with fewer than half active, the penalty (nats) is added to its fitness, so the
search ranks it behind every working candidate whose negative ELBO is within the penalty.
The terms ``active_units`` and ``collapse_penalty`` are journaled; the model's own loss
stays the unpenalised ``neg_elbo`` term.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from evoae.models.vae import HEALTH_ROWS, active_units, collapse_penalty
from evoae.objectives.base import EvalSplit, Objective, Score

#: Rows per forward pass when scoring.
EVAL_BATCH = 2048


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Mean loss and terms over ``x``, weighted by batch size."""
    model.eval()
    sums: dict[str, float] = {}
    for start in range(0, x.shape[0], EVAL_BATCH):
        xb = x[start : start + EVAL_BATCH]
        out = model(xb)
        for k, v in {"loss": out.loss, **out.terms}.items():
            sums[k] = sums.get(k, 0.0) + float(v) * xb.shape[0]
    return {k: v / x.shape[0] for k, v in sums.items()}


class Reconstruction(Objective):
    """Validation reconstruction loss (MSE, or negative ELBO for VAEs)."""

    name: ClassVar[str] = "recon"
    model_loss: ClassVar[bool] = True

    def score(self, model: nn.Module, split: EvalSplit) -> Score:
        terms = evaluate(model, split.x)
        loss = terms.pop("loss")
        penalty = float(getattr(model, "collapse_penalty", 0.0) or 0.0)
        if penalty > 0 and getattr(model, "variational", False):
            active = active_units(model, split.x[:HEALTH_ROWS])
            terms["active_units"] = float(active)
            terms["collapse_penalty"] = collapse_penalty(active, model.code_size, penalty)
            loss += terms["collapse_penalty"]
        return Score(loss, terms)

    def describe(self) -> str:
        return "validation reconstruction loss"
