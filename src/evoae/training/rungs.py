"""Training in rungs: stop a candidate after some epochs, save it, continue it later.

Multi-fidelity search (successive halving / ASHA, :mod:`evoae.evolution.asha`) trains
every candidate a few epochs and promotes the best to more. A promoted candidate
continues from its saved weights and optimizer state instead of restarting: the
checkpoint is ``<path>.safetensors`` (the model's tensors under ``model.``, the
optimizer's under ``opt.<param>.<name>``) plus ``<path>.json`` (epochs trained, the
optimizer's non-tensor state); nothing is pickled. Continuing from epoch ``e`` replays
exactly the batches an uninterrupted training would see from epoch ``e`` on, so a
candidate trained 1 then 2 more epochs equals one trained 3 epochs in one go.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from evoae.families import build_model
from evoae.models import count_params
from evoae.objectives import EvalSplit, Objective, Reconstruction, Score
from evoae.training.inherit import inherit_state
from evoae.training.optim import make_optimizer
from evoae.training.trainer import Result, as_split, fit, initial_state, make_result


def save_rung(
    path: str | Path, model: torch.nn.Module, opt: torch.optim.Optimizer, epochs: int
) -> None:
    """Write ``path.safetensors`` and ``path.json`` (each atomically, JSON last)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in opt.state_dict()["state"].items():
        for name, v in state.items():
            if torch.is_tensor(v):
                tensors[f"opt.{idx}.{name}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = v
    weights = path.with_suffix(".safetensors")
    tmp = weights.with_name(f".{weights.name}.tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, weights)
    meta = path.with_suffix(".json")
    tmp = meta.with_name(f".{meta.name}.tmp")
    tmp.write_text(json.dumps({"epochs": int(epochs), "optimizer_scalars": scalars}))
    os.replace(tmp, meta)


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The model tensors of the checkpoint at ``path`` (no optimizer state)."""
    tensors = load_file(str(Path(path).with_suffix(".safetensors")))
    return {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}


def valid_state(path: str | Path, spec: dict[str, Any]) -> bool:
    """Whether ``path`` holds a readable checkpoint of a model built from ``spec``: the
    model's tensor names and shapes exactly, all finite. A saved state is untrusted input:
    the search checks it before a child inherits from it."""
    try:
        saved = load_weights(path)
    except Exception:  # missing, truncated, or not safetensors at all
        return False
    want = build_model(spec, 0).state_dict()
    if saved.keys() != want.keys():
        return False
    return all(
        saved[k].shape == v.shape
        and saved[k].dtype == v.dtype
        and bool(torch.isfinite(saved[k]).all())
        for k, v in want.items()
    )


def load_rung(path: str | Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> int:
    """Restore weights and optimizer state saved by :func:`save_rung`; returns its epochs."""
    path = Path(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    tensors = load_file(str(path.with_suffix(".safetensors")))
    device = next(model.parameters()).device
    model.load_state_dict(
        {k[len("model.") :]: v.to(device) for k, v in tensors.items() if k.startswith("model.")}
    )
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = v.to(device) if name != "step" else v
    for idx, values in meta["optimizer_scalars"].items():
        state.setdefault(int(idx), {}).update(values)
    sd = opt.state_dict()
    sd["state"] = state
    opt.load_state_dict(sd)
    return int(meta["epochs"])


def train_rung(
    spec: dict[str, Any],
    train: torch.Tensor | EvalSplit,
    val: torch.Tensor | EvalSplit,
    *,
    epochs: int,
    seed: int,
    objective: Objective | None = None,
    resume: str | Path | None = None,
    save: str | Path | None = None,
    inherit: str | Path | None = None,
) -> tuple[Result, torch.nn.Module]:
    """Train ``spec`` up to ``epochs`` epochs in total, from ``resume``'s checkpoint when
    given (else from scratch), score it, and save the checkpoint to ``save`` when given.

    ``inherit`` names a parent's checkpoint: the new model starts from the parent's
    weights wherever :func:`evoae.training.inherit.inherit_state` can carry them over,
    widened Net2Net-style with replicas drawn from ``seed`` (its optimizer starts
    fresh). ``result.terms["epochs"]`` records the rung's total epochs.
    """
    t0 = time.perf_counter()
    objective = objective if objective is not None else Reconstruction()
    train, val = as_split(train), as_split(val)
    # Rung 0 starts as train_candidate would (a PCA-initialised spec from PCA of train);
    # a promoted rung then loads its weights over that.
    model = build_model(spec, seed, init=initial_state(spec, train.x)).to(train.x.device)
    if inherit is not None and resume is None:
        inherit_state(load_weights(inherit), model, seed)
    opt = make_optimizer(spec["optimizer"], model.parameters(), float(spec["lr"]))
    start = load_rung(resume, model, opt) if resume is not None else 0
    if not 0 <= start <= epochs:
        raise ValueError(f"checkpoint has {start} epochs, more than the {epochs} asked")
    losses = fit(
        model,
        train.x,
        epochs=epochs,
        batch_size=int(spec["batch_size"]),
        optimizer=spec["optimizer"],
        lr=float(spec["lr"]),
        seed=seed,
        start_epoch=start,
        opt=opt,
    )
    score: Score | None = None
    if not losses or torch.isfinite(torch.tensor(losses[-1])):
        model.eval()
        score = objective.score(model, val)
    result = make_result(
        score, losses, count_params(model), time.perf_counter() - t0, objective=objective
    )
    result.terms["epochs"] = float(epochs)
    if save is not None and result.status == "ok":
        save_rung(save, model, opt, epochs)
    return result, model
