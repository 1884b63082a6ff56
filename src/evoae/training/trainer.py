"""Training one candidate and measuring its fitness.

Fitness is the objective's score of the trained model on held-out data (by default the
validation reconstruction loss; the published code used the last training loss
instead). The batch order comes from a generator seeded with the candidate's seed, and
the weights from the same seed, so a candidate's training is a pure function of (spec,
seed, epochs, data, objective) on one machine.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from evoae.families import build_model
from evoae.models import count_params
from evoae.objectives import EvalSplit, Objective, Reconstruction, Score, evaluate
from evoae.objectives.reconstruction import EVAL_BATCH
from evoae.training.optim import make_optimizer

__all__ = ["EVAL_BATCH", "Result", "as_split", "evaluate", "fit", "make_result", "train_candidate"]


@dataclass
class Result:
    """What one training run produced. ``fitness`` is ``inf`` when it failed."""

    fitness: float
    train_loss: float | None
    val_loss: float | None
    params: int
    seconds: float
    status: str = "ok"
    terms: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def failed(cls, params: int, seconds: float, error: str) -> Result:
        return cls(math.inf, None, None, params, seconds, "failed", {}, error)


def make_result(
    score: Score | None,
    train_losses: list[float],
    params: int,
    seconds: float,
    *,
    objective: Objective,
    error: str | None = None,
) -> Result:
    """The one place a :class:`Result` is assembled, for every trainer.

    A diverged training (``error``) or a non-finite score is a failed result; otherwise
    ``fitness`` is the objective's score, ``val_loss`` the model's validation loss when
    the objective is that loss (else the ``loss`` term if the objective reports one).
    """
    if error is None and train_losses and not math.isfinite(train_losses[-1]):
        error = "training loss diverged"
    if error is None and (score is None or not math.isfinite(score.fitness)):
        error = (
            "validation loss diverged"
            if objective.model_loss
            else f"objective {objective.name} is not finite"
        )
    if error is not None or score is None:
        return Result.failed(params, seconds, error or "no score")
    val = score.fitness if objective.model_loss else score.terms.get("loss")
    return Result(
        fitness=float(score.fitness),
        train_loss=train_losses[-1] if train_losses else None,
        val_loss=val,
        params=params,
        seconds=seconds,
        terms=dict(score.terms),
    )


def as_split(data: Any, device: torch.device | None = None) -> EvalSplit:
    """An :class:`EvalSplit` on ``device`` from a tensor, an array, a Dataset or a split."""
    if isinstance(data, EvalSplit):
        x, y = data.x, data.y
    elif hasattr(data, "x") and hasattr(data, "y"):  # a data.Dataset
        x, y = data.x, data.y
    else:
        x, y = data, None
    x = torch.as_tensor(x, dtype=torch.float32, device=device)
    if y is not None:
        y = torch.as_tensor(y, device=device)
    return EvalSplit(x, y)


def batch_order(n: int, epochs: int, seed: int) -> list[torch.Tensor]:
    """The shuffled row order of every epoch, from ``seed`` alone."""
    g = torch.Generator().manual_seed(int(seed) + 1)
    return [torch.randperm(n, generator=g) for _ in range(epochs)]


def fit(
    model: nn.Module,
    x: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    optimizer: str,
    lr: float,
    seed: int,
    start_epoch: int = 0,
    opt: torch.optim.Optimizer | None = None,
) -> list[float]:
    """Train in place; returns the mean training loss of each epoch.

    Stops early (returning the losses so far, the last one non-finite) when the loss
    becomes NaN or infinite. ``start_epoch`` and ``opt`` continue a training stopped
    after ``start_epoch`` epochs (with its optimizer): epochs ``start_epoch..epochs-1``
    then see exactly the batches an uninterrupted run would (multi-fidelity rungs).
    """
    opt = opt if opt is not None else make_optimizer(optimizer, model.parameters(), lr)
    model.train()
    losses: list[float] = []
    for perm in batch_order(x.shape[0], epochs, seed)[start_epoch:]:
        total = torch.zeros((), dtype=torch.float64)
        for start in range(0, x.shape[0], batch_size):
            xb = x[perm[start : start + batch_size]]
            out = model(xb)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            total += out.loss.detach() * xb.shape[0]
        epoch_loss = float(total) / x.shape[0]
        losses.append(epoch_loss)
        if not math.isfinite(epoch_loss):
            break
    return losses


def train_candidate(
    spec: dict[str, Any],
    train: torch.Tensor | EvalSplit,
    val: torch.Tensor | EvalSplit,
    *,
    epochs: int,
    seed: int,
    objective: Objective | None = None,
) -> tuple[Result, nn.Module]:
    """Build, train and score one candidate; never raises for a diverging model.

    ``train`` and ``val`` are tensors or :class:`EvalSplit` (inputs plus labels);
    ``objective`` scores the trained model on ``val`` (default: reconstruction loss).
    """
    t0 = time.perf_counter()
    objective = objective if objective is not None else Reconstruction()
    train, val = as_split(train), as_split(val)
    model = build_model(spec, seed).to(train.x.device)
    params = count_params(model)
    losses: list[float] = []
    score: Score | None = None
    try:
        losses = fit(
            model,
            train.x,
            epochs=epochs,
            batch_size=int(spec["batch_size"]),
            optimizer=spec["optimizer"],
            lr=float(spec["lr"]),
            seed=seed,
        )
        if not losses or math.isfinite(losses[-1]):
            model.eval()
            score = objective.score(model, val)
    except torch.OutOfMemoryError:
        return Result.failed(params, time.perf_counter() - t0, "out of memory"), model
    result = make_result(score, losses, params, time.perf_counter() - t0, objective=objective)
    return result, model
