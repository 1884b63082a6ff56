"""Training one candidate and measuring its fitness.

Fitness is the objective's score of the trained model on held-out data (by default the
validation reconstruction loss; the published code used the last training loss
instead). The batch order comes from a generator seeded with the candidate's seed, and
the weights from the same seed, so a candidate's training is a pure function of (spec,
seed, epochs, data, objective) on one machine.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from evoae.families import build_model, training_kernel
from evoae.models import count_params
from evoae.models.pca import PCA_INITS, PCABasis, cached_pca_basis
from evoae.objectives import EvalSplit, Objective, Reconstruction, Score, evaluate
from evoae.objectives.reconstruction import EVAL_BATCH
from evoae.runs.curves import Curve, make_curve
from evoae.training.budget import EPOCH_CAP, PLATEAU, TIME_CAP
from evoae.training.optim import make_optimizer

__all__ = [
    "EVAL_BATCH",
    "TRAINERS",
    "Result",
    "as_split",
    "epoch_runner",
    "evaluate",
    "fit",
    "make_result",
    "train_candidate",
]


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
    #: Epochs trained, and (with a patience) the epoch whose weights were kept (0: the
    #: initial weights). Not journaled.
    epochs: int | None = None
    best_epoch: int | None = None
    #: Why a final training stopped (:mod:`evoae.training.budget`): "plateau"
    #: (converged), "epochs" or "time budget" (capped); None for a candidate.
    stop: str | None = None
    #: The learning curve (:mod:`evoae.runs.curves`): the training loss of every epoch
    #: trained here, the validation loss where measured. Journaled with the row.
    curve: Curve = field(default_factory=list)

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
    first_epoch: int = 1,
    val_curve: dict[int, float] | None = None,
) -> Result:
    """The one place a :class:`Result` is assembled, for every trainer.

    ``train_losses[i]`` is the loss of epoch ``first_epoch + i`` (a continued training
    starts past 1); ``val_curve`` the validation losses measured during training (epoch
    -> loss); the result's ``val_loss`` is added at the last epoch when it has none.
    A diverged training (``error``) or a non-finite score is a failed result; otherwise
    ``fitness`` is the objective's score, ``val_loss`` the model's validation loss when
    the objective is that loss (less a VAE's ``collapse_penalty`` term; else the ``loss``
    term if the objective reports one).
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
        failed = Result.failed(params, seconds, error or "no score")
        failed.curve = make_curve(train_losses, first_epoch=first_epoch, val=val_curve)
        return failed
    val = score.terms.get("loss")
    if objective.model_loss:  # the model's loss, without a collapse penalty on the fitness
        penalty = score.terms.get("collapse_penalty", 0.0)
        val = score.fitness - penalty if penalty else score.fitness
    val_curve = dict(val_curve or {})
    if val is not None:
        val_curve.setdefault(first_epoch + len(train_losses) - 1, val)
    return Result(
        fitness=float(score.fitness),
        train_loss=train_losses[-1] if train_losses else None,
        val_loss=val,
        params=params,
        seconds=seconds,
        terms=dict(score.terms),
        curve=make_curve(train_losses, first_epoch=first_epoch, val=val_curve),
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


#: How a candidate is trained: ``kernel`` (the family's hand-written training step where
#: it covers the model, e.g. :mod:`evoae.families.dense.kernel`; autograd otherwise) or
#: ``autograd`` (the reference path: ``loss.backward()`` and a ``torch.optim`` step).
TRAINERS = ("kernel", "autograd")


def epoch_runner(
    model: nn.Module, opt: torch.optim.Optimizer, batch_size: int, trainer: str = "autograd"
) -> Callable[[torch.Tensor, torch.Tensor], float]:
    """``run(x, perm) -> mean loss``: one training epoch over ``x`` in the row order
    ``perm`` at ``batch_size``, by ``trainer`` (see :data:`TRAINERS`). The loss is summed
    over rows in float64 and divided by the row count, the same for every trainer."""
    if trainer not in TRAINERS:
        raise ValueError(f"unknown trainer {trainer!r}: choose from {', '.join(TRAINERS)}")
    kernel = training_kernel(model, opt, batch_size) if trainer == "kernel" else None
    if kernel is not None:
        return kernel.epoch

    def run(x: torch.Tensor, perm: torch.Tensor) -> float:
        total = torch.zeros((), dtype=torch.float64)
        for start in range(0, x.shape[0], batch_size):
            xb = x[perm[start : start + batch_size]]
            out = model(xb)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            total += out.loss.detach() * xb.shape[0]
        return float(total) / x.shape[0]

    return run


def fit(
    model: nn.Module,
    x: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    optimizer: str,
    lr: float,
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
    after_epoch: Callable[[int], bool] | None = None,
    start_epoch: int = 0,
    opt: torch.optim.Optimizer | None = None,
    trainer: str = "autograd",
) -> list[float]:
    """Train in place; returns the mean training loss of each epoch.

    ``on_epoch(epochs_done, loss)`` is called after every epoch (progress bars).

    Stops early (returning the losses so far, the last one non-finite) when the loss
    becomes NaN or infinite, or when ``after_epoch(epochs_done)`` returns True.
    ``start_epoch`` and ``opt`` continue a training stopped after ``start_epoch`` epochs
    (with its optimizer): epochs ``start_epoch..epochs-1`` then see exactly the batches
    an uninterrupted run would (multi-fidelity rungs). ``trainer`` picks the training
    step (:data:`TRAINERS`); the optimizer state is the same ``torch.optim`` state
    either way, so a training may continue with the other trainer.
    """
    opt = opt if opt is not None else make_optimizer(optimizer, model.parameters(), lr)
    model.train()
    run = epoch_runner(model, opt, batch_size, trainer)
    losses: list[float] = []
    for perm in batch_order(x.shape[0], epochs, seed)[start_epoch:]:
        epoch_loss = run(x, perm)
        losses.append(epoch_loss)
        if on_epoch is not None:
            on_epoch(len(losses), epoch_loss)
        if not math.isfinite(epoch_loss):
            break
        if after_epoch is not None and after_epoch(len(losses)):
            break
    return losses


def initial_state(spec: dict[str, Any], train_x: torch.Tensor) -> PCABasis | None:
    """What a spec is initialised from besides its seed: PCA of the training rows for
    ``"init": "pca"`` and ``"pca-residual"`` (computed here, from the split every
    executor trains on, once per split and code size)."""
    if spec.get("init") in PCA_INITS:
        return cached_pca_basis(train_x, int(spec["code_size"]))
    return None


class _Plateau:
    """Keeps the best weights by validation score; says stop after ``patience`` epochs
    without improvement once ``min_steps`` optimizer steps are done. With ``lr_cuts``
    the first ``lr_cuts`` plateaus halve ``opt``'s learning rate instead (training goes
    on from the current weights) and the next one stops, whatever ``min_steps`` says:
    having converged is then what ends a training, and the step floor only raises the
    epoch cap."""

    def __init__(
        self,
        model: nn.Module,
        score: Callable[[], float],
        *,
        patience: int,
        min_steps: int,
        steps_per_epoch: int,
        opt: torch.optim.Optimizer | None = None,
        lr_cuts: int = 0,
    ) -> None:
        self.model, self.score = model, score
        self.patience, self.min_steps, self.steps = patience, min_steps, steps_per_epoch
        self.opt, self.lr_cuts, self.cuts = opt, lr_cuts if opt is not None else 0, 0
        self.best = score()  # the initial weights count: training never makes them worse
        self.best_epoch = 0
        # With cuts, a better loss by less than PLATEAU_RTOL keeps the weights but does
        # not end the plateau; the plateau is counted from the last real improvement or cut.
        self.rtol = PLATEAU_RTOL if self.lr_cuts else 0.0
        self.improved = self.since = 0
        self.state = copy.deepcopy(model.state_dict())
        #: The score after every epoch (0: the initial weights): the learning curve.
        self.values: dict[int, float] = {0: self.best}

    def __call__(self, epoch: int) -> bool:
        value = self.score()
        self.values[epoch] = value
        if math.isfinite(value) and value < self.best:
            if value < self.best * (1 - self.rtol):
                self.improved = epoch
            self.best, self.best_epoch = value, epoch
            self.state = copy.deepcopy(self.model.state_dict())
        if epoch - max(self.improved, self.since) < self.patience:
            return False
        if self.cuts < self.lr_cuts and self.opt is not None:
            self.cuts += 1
            self.since = epoch
            for group in self.opt.param_groups:
                group["lr"] = float(group["lr"]) * LR_CUT
            return False
        return self.lr_cuts > 0 or epoch * self.steps >= self.min_steps

    def restore(self) -> None:
        self.model.load_state_dict(self.state)


#: A better validation loss by less than this fraction does not end a plateau.
PLATEAU_RTOL = 1e-4
#: The factor a final training's learning rate is cut by on a plateau (``lr_cuts``).
LR_CUT = 0.5


def train_candidate(
    spec: dict[str, Any],
    train: torch.Tensor | EvalSplit,
    val: torch.Tensor | EvalSplit,
    *,
    epochs: int,
    seed: int,
    objective: Objective | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    patience: int = 0,
    min_steps: int = 0,
    deadline: float | None = None,
    trainer: str = "autograd",
    lr_cuts: int = 0,
    start: Callable[[nn.Module, torch.optim.Optimizer], None] | None = None,
) -> tuple[Result, nn.Module]:
    """Build, train and score one candidate; never raises for a diverging model.

    ``train`` and ``val`` are tensors or :class:`EvalSplit` (inputs plus labels);
    ``objective`` scores the trained model on ``val`` (default: reconstruction loss).
    A spec with an ``"init"`` starts from PCA of ``train`` (:func:`initial_state`).
    With ``patience > 0`` (the final training) the model is scored on ``val`` after
    every epoch and before the first, the best weights are kept and training stops
    after ``patience`` epochs without improvement once ``min_steps`` steps are done;
    with ``lr_cuts`` the first ``lr_cuts`` such plateaus halve the learning rate instead
    (:class:`_Plateau`). With a ``deadline`` (a :func:`time.perf_counter` time) it also
    stops after the epoch that ends past it. ``Result.stop`` says which of these ended it.
    ``start`` sets the built model and optimizer before training (e.g. from a saved state,
    :func:`evoae.training.rungs.continue_candidate`); what it raises propagates.
    """
    t0 = time.perf_counter()
    objective = objective if objective is not None else Reconstruction()
    train, val = as_split(train), as_split(val)
    model = build_model(spec, seed, init=initial_state(spec, train.x)).to(train.x.device)
    params = count_params(model)
    losses: list[float] = []
    score: Score | None = None
    plateau: _Plateau | None = None
    batch = int(spec["batch_size"])
    stop: str | None = None

    # The validation loss after every epoch but the last (which the score measures), when
    # the objective is the model's loss (the row's val_loss); a plateau measures its own.
    track = ValTrack(model, val, epochs) if objective.model_loss and patience <= 0 else None

    def after_epoch(done: int) -> bool:
        nonlocal stop
        if track is not None:
            track(done)
        if plateau is not None and plateau(done):
            stop = PLATEAU
        elif deadline is not None and done < epochs and time.perf_counter() >= deadline:
            stop = TIME_CAP
        return stop is not None

    try:
        opt = make_optimizer(spec["optimizer"], model.parameters(), float(spec["lr"]))
        if start is not None:
            start(model, opt)
        if patience > 0:
            plateau = _Plateau(
                model,
                lambda: _val_score(model, val, objective),
                patience=patience,
                min_steps=min_steps,
                steps_per_epoch=math.ceil(train.x.shape[0] / batch),
                opt=opt,
                lr_cuts=lr_cuts,
            )
        losses = fit(
            model,
            train.x,
            epochs=epochs,
            batch_size=batch,
            optimizer=spec["optimizer"],
            lr=float(spec["lr"]),
            seed=seed,
            on_epoch=on_epoch,
            after_epoch=after_epoch,
            opt=opt,
            trainer=trainer,
        )
        if plateau is not None and (not losses or math.isfinite(losses[-1])):
            plateau.restore()
        if not losses or math.isfinite(losses[-1]):
            model.eval()
            score = objective.score(model, val)
    except torch.OutOfMemoryError:
        return Result.failed(params, time.perf_counter() - t0, "out of memory"), model
    # The plateau's scores are validation losses when the objective is the model's loss
    # (else no validation loss per epoch is known: the kept weights are the best epoch's).
    watched = plateau.values if plateau is not None and objective.model_loss else None
    watched = track.values if track is not None else watched
    result = make_result(
        score, losses, params, time.perf_counter() - t0, objective=objective, val_curve=watched
    )
    result.epochs = len(losses)
    result.best_epoch = plateau.best_epoch if plateau is not None else len(losses)
    if patience > 0 or deadline is not None:
        result.stop = stop if stop is not None else EPOCH_CAP
    return result, model


class ValTrack:
    """Records the model's validation loss after each epoch ``done < epochs`` (the
    learning curve; the last epoch is the result's own score). Evaluation draws no
    training randomness, so the training is the same with or without it."""

    def __init__(self, model: nn.Module, val: EvalSplit, epochs: int, offset: int = 0) -> None:
        self.model, self.val, self.epochs, self.offset = model, val, epochs, offset
        self.values: dict[int, float] = {}

    def __call__(self, done: int) -> None:
        epoch = self.offset + done
        if epoch < self.epochs:
            try:
                self.values[epoch] = float(evaluate(self.model, self.val.x)["loss"])
            finally:
                self.model.train()


def _val_score(model: nn.Module, val: EvalSplit, objective: Objective) -> float:
    model.eval()
    try:
        # A collapse penalty ranks search candidates; the final training keeps the weights
        # with the best loss (a collapsed final model is flagged, not swapped for another).
        score = objective.score(model, val)
        return float(score.fitness - score.terms.get("collapse_penalty", 0.0))
    finally:
        model.train()
