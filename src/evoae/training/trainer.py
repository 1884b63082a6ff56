"""Training one candidate and measuring its fitness.

Fitness is the validation loss after training (held-out data; the published code used
the last training loss instead). The batch order comes from a generator seeded with the
candidate's seed, and the weights from the same seed, so a candidate's training is a
pure function of (spec, seed, epochs, data) on one machine.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from evoae.models import build_model, count_params
from evoae.training.optim import make_optimizer

EVAL_BATCH = 2048


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
) -> list[float]:
    """Train in place; returns the mean training loss of each epoch.

    Stops early (returning the losses so far, the last one non-finite) when the loss
    becomes NaN or infinite.
    """
    opt = make_optimizer(optimizer, model.parameters(), lr)
    model.train()
    losses: list[float] = []
    for perm in batch_order(x.shape[0], epochs, seed):
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


def train_candidate(
    spec: dict[str, Any],
    x_train: torch.Tensor,
    x_val: torch.Tensor,
    *,
    epochs: int,
    seed: int,
) -> tuple[Result, nn.Module]:
    """Build, train and score one candidate; never raises for a diverging model."""
    t0 = time.perf_counter()
    model = build_model(spec, seed).to(x_train.device)
    params = count_params(model)
    try:
        losses = fit(
            model,
            x_train,
            epochs=epochs,
            batch_size=int(spec["batch_size"]),
            optimizer=spec["optimizer"],
            lr=float(spec["lr"]),
            seed=seed,
        )
        if losses and not math.isfinite(losses[-1]):
            return Result.failed(params, time.perf_counter() - t0, "training loss diverged"), model
        terms = evaluate(model, x_val)
    except torch.OutOfMemoryError:
        return Result.failed(params, time.perf_counter() - t0, "out of memory"), model
    val = terms.pop("loss")
    if not math.isfinite(val):
        return Result.failed(params, time.perf_counter() - t0, "validation loss diverged"), model
    result = Result(
        fitness=val,
        train_loss=losses[-1] if losses else None,
        val_loss=val,
        params=params,
        seconds=time.perf_counter() - t0,
        terms=terms,
    )
    return result, model
