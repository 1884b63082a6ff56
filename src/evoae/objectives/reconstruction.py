"""The default objective: the model's own reconstruction loss on held-out data.

MSE per value for deterministic autoencoders, the negative ELBO per image in nats for
VAEs (the loss the model was trained on, with beta = 1 at evaluation).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

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
        return Score(terms.pop("loss"), terms)

    def describe(self) -> str:
        return "validation reconstruction loss"
