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
import math
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from evoae.families import build_model, inherit_state
from evoae.models import count_params
from evoae.objectives import EvalSplit, Objective, Reconstruction, Score
from evoae.training.optim import make_optimizer
from evoae.training.trainer import (
    Result,
    ValTrack,
    as_split,
    fit,
    initial_state,
    make_result,
    train_candidate,
)

#: Largest state metadata read back (a real one is a few hundred bytes).
MAX_META_BYTES = 1024 * 1024
#: Optimizer states that are tensors of their parameter's shape (the rest are scalars).
_SCALAR_STATES = {"step"}


class BadState(ValueError):
    """A saved training state that cannot be continued from (missing, damaged, foreign)."""


def save_rung(
    path: str | Path,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    epochs: int,
    *,
    seed: int | None = None,
) -> None:
    """Write ``path.safetensors`` and ``path.json`` (each atomically, JSON last).

    ``seed`` (the training's seed) is recorded so that a state is never continued by
    another candidate's training.
    """
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
    # Serialised in memory, written by Python: a full disk is an OSError (ENOSPC) the
    # CLI reports in one line, not safetensors' own error type.
    tmp.write_bytes(save(tensors))
    os.replace(tmp, weights)
    meta = path.with_suffix(".json")
    tmp = meta.with_name(f".{meta.name}.tmp")
    info: dict[str, Any] = {"epochs": int(epochs), "optimizer_scalars": scalars}
    if seed is not None:
        info["seed"] = int(seed)
    tmp.write_text(json.dumps(info))
    os.replace(tmp, meta)


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The model tensors of the checkpoint at ``path`` (no optimizer state)."""
    tensors = load_file(str(Path(path).with_suffix(".safetensors")))
    return {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}


def valid_state(path: str | Path, spec: dict[str, Any]) -> bool:
    """Whether ``path`` holds a readable checkpoint of a model built from ``spec``: the
    model's tensor names, shapes and dtypes exactly, all finite, the file no larger than
    such a state can be (checked before reading). A saved state is untrusted input: the
    search checks it before a child inherits from it."""
    try:
        _read_tensors(Path(path), build_model(spec, 0))
    except BadState:
        return False
    return True


def _regular_size(path: Path) -> int:
    """The size of ``path``, refused unless it is a regular file (a link to a device
    such as ``/dev/zero`` would read forever, a named pipe would block)."""
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise BadState(f"{path} is not a regular file")
    return st.st_size


def _read_meta(path: Path, n_params: int, seed: int | None) -> dict[str, Any]:
    meta_path = path.with_suffix(".json")
    try:
        if _regular_size(meta_path) > MAX_META_BYTES:
            raise BadState(f"{meta_path} is too large")
        with open(meta_path, "rb") as f:  # bounded: the file may grow after the check
            data = f.read(MAX_META_BYTES + 1)
        if len(data) > MAX_META_BYTES:
            raise BadState(f"{meta_path} is too large")
        meta = json.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise BadState(f"{meta_path} is unreadable ({type(e).__name__})") from None
    if not isinstance(meta, dict):
        raise BadState(f"{meta_path} is not a JSON object")
    epochs, scalars = meta.get("epochs"), meta.get("optimizer_scalars")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise BadState(f"{meta_path}: epochs is not a count")
    if seed is not None and "seed" in meta and meta["seed"] != seed:
        raise BadState(f"{meta_path} was saved by another training (seed differs)")
    if not isinstance(scalars, dict):
        raise BadState(f"{meta_path}: optimizer_scalars is not an object")
    for idx, values in scalars.items():
        if not (idx.isdigit() and int(idx) < n_params) or not isinstance(values, dict):
            raise BadState(f"{meta_path}: optimizer state {idx!r} names no parameter")
        for v in values.values():
            ok = v is None or isinstance(v, bool) or isinstance(v, int | float) and math.isfinite(v)
            if not ok:
                raise BadState(f"{meta_path}: optimizer scalar {v!r} is not a finite number")
    return meta


def _read_tensors(path: Path, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, checked against ``model``: names, shapes, dtypes, size,
    finite values. The header is checked before any tensor is read."""
    weights = path.with_suffix(".safetensors")
    own = model.state_dict()
    params = list(model.parameters())
    limit = 4 * sum(v.numel() * v.element_size() for v in own.values()) + MAX_META_BYTES
    try:
        if _regular_size(weights) > limit:
            raise BadState(f"{weights} is larger than a state of this model can be")
        with safe_open(str(weights), framework="pt") as f:
            keys = list(f.keys())
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in keys}
            model_keys = {k[len("model.") :] for k in keys if k.startswith("model.")}
            if model_keys != set(own):
                raise BadState(f"{weights} holds the tensors of another model")
            for k in keys:
                if k.startswith("model."):
                    want = tuple(own[k[len("model.") :]].shape)
                else:
                    parts = k.split(".")
                    if len(parts) != 3 or parts[0] != "opt" or not parts[1].isdigit():
                        raise BadState(f"{weights}: unknown tensor {k!r}")
                    idx = int(parts[1])
                    if idx >= len(params):
                        raise BadState(f"{weights}: optimizer state {k!r} names no parameter")
                    want = () if parts[2] in _SCALAR_STATES else tuple(params[idx].shape)
                if shapes[k] != want and not (want == () and shapes[k] in ((), (1,))):
                    raise BadState(f"{weights}: {k} has shape {shapes[k]}, expected {want}")
            tensors = {k: f.get_tensor(k) for k in keys}
    except BadState:
        raise
    except Exception as e:  # safetensors' own errors for a damaged file, OSError
        raise BadState(f"{weights} is unreadable ({type(e).__name__})") from None
    for k, v in tensors.items():
        if k.startswith("model.") and v.dtype != own[k[len("model.") :]].dtype:
            raise BadState(f"{weights}: {k} has dtype {v.dtype}")
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise BadState(f"{weights}: {k} holds non-finite values")
    return tensors


def load_rung(
    path: str | Path,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    *,
    seed: int | None = None,
) -> int:
    """Restore weights and optimizer state saved by :func:`save_rung`; returns its epochs.

    The files are untrusted: a missing, damaged or foreign state (tensors that do not
    fit ``model``, non-finite values, another ``seed``) raises :class:`BadState`
    before ``model`` is changed (the optimizer may be half-restored: rebuild both).
    """
    path = Path(path)
    params = list(model.parameters())
    meta = _read_meta(path, len(params), seed)
    tensors = _read_tensors(path, model)
    device = params[0].device if params else torch.device("cpu")
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
    try:
        opt.load_state_dict(sd)
    except (ValueError, KeyError, RuntimeError, TypeError) as e:
        raise BadState(f"{path}: the optimizer state does not fit ({e})") from None
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
    trainer: str = "autograd",
    inherit_spec: dict[str, Any] | None = None,
) -> tuple[Result, torch.nn.Module]:
    """Train ``spec`` up to ``epochs`` epochs in total, from ``resume``'s checkpoint when
    given (else from scratch), score it, and save the checkpoint to ``save`` when given.

    A ``resume`` state that cannot be used raises :class:`BadState`
    (:func:`evoae.training.evaluator.train_task` then trains from scratch to the same
    epochs, which gives the same result). ``inherit`` names a parent's checkpoint: the
    new model starts from the parent's weights wherever
    :func:`evoae.families.inherit_state` can carry them over (dense: widened
    Net2Net-style) with replicas drawn from ``seed`` (its optimizer starts fresh);
    ``inherit_spec``, the parent's spec, makes that transfer morph-aware (aging's
    ``morph`` mode, :mod:`evoae.families.dense.morph`).
    ``result.terms["epochs"]`` records the rung's total epochs. ``trainer`` picks the
    training step (:data:`evoae.training.trainer.TRAINERS`); both keep the same
    ``torch.optim`` state, so a rung saved by one continues under the other.
    """
    t0 = time.perf_counter()
    objective = objective if objective is not None else Reconstruction()
    train, val = as_split(train), as_split(val)
    # Rung 0 starts as train_candidate would (a PCA-initialised spec from PCA of train);
    # a promoted rung then loads its weights over that.
    model = build_model(spec, seed, init=initial_state(spec, train.x)).to(train.x.device)
    if inherit is not None and resume is None:
        inherit_state(load_weights(inherit), model, seed, parent_spec=inherit_spec)
    opt = make_optimizer(spec["optimizer"], model.parameters(), float(spec["lr"]))
    start = load_rung(resume, model, opt, seed=seed) if resume is not None else 0
    if not 0 <= start <= epochs:
        raise BadState(f"checkpoint has {start} epochs, more than the {epochs} asked")
    track = ValTrack(model, val, epochs, offset=start) if objective.model_loss else None
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
        trainer=trainer,
        after_epoch=None if track is None else lambda done: bool(track(done)),
    )
    score: Score | None = None
    if not losses or torch.isfinite(torch.tensor(losses[-1])):
        model.eval()
        score = objective.score(model, val)
    result = make_result(
        score,
        losses,
        count_params(model),
        time.perf_counter() - t0,
        objective=objective,
        first_epoch=start + 1,
        val_curve=None if track is None else track.values,
    )
    result.terms["epochs"] = float(epochs)
    if save is not None and result.status == "ok":
        save_rung(save, model, opt, epochs, seed=seed)
    return result, model


def continue_candidate(
    spec: dict[str, Any],
    train: torch.Tensor | EvalSplit,
    val: torch.Tensor | EvalSplit,
    state: str | Path,
    *,
    epochs: int,
    seed: int,
    state_seed: int | None = None,
    objective: Objective | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    patience: int = 0,
    min_steps: int = 0,
    deadline: float | None = None,
    trainer: str = "autograd",
    lr_cuts: int = 0,
) -> tuple[Result, torch.nn.Module, int]:
    """Continue the training saved at ``state`` (weights and optimizer state, checked
    as :func:`load_rung` does; ``state_seed``: the seed it must have been saved with)
    for at most ``epochs`` further epochs, with batches drawn from ``seed``, and the
    schedule of :func:`evoae.training.trainer.train_candidate` (``patience``,
    ``lr_cuts``, ``min_steps`` counted from here, ``deadline``): the best weights on
    validation are kept, the saved ones included. Returns the result (its ``epochs``
    and curve count the further epochs only), the model and the epochs trained before.

    A state that cannot be used raises :class:`BadState` before any training.
    """
    before: list[int] = []

    def start(model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
        before.append(load_rung(state, model, opt, seed=state_seed))

    result, model = train_candidate(
        spec, train, val, epochs=epochs, seed=seed, objective=objective, on_epoch=on_epoch,
        patience=patience, min_steps=min_steps, deadline=deadline, trainer=trainer,
        lr_cuts=lr_cuts, start=start,
    )  # fmt: skip
    return result, model, before[0] if before else 0
