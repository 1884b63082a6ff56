"""Population-based training (PBT) of one architecture.

``copies`` members of one spec train side by side, each from its own seed. Every
``ready`` epochs (an *interval*) all members are scored on the validation split; each
member in the bottom quarter then

* **exploits**: copies the weights, the optimizer state and the hyperparameters of a
  member drawn uniformly from the top quarter, and
* **explores**: multiplies its learning rate (and, for VAEs, its KL weight ``beta``) by
  0.8 or 1.2 each, and moves its batch size to a neighbouring choice of
  :data:`BATCH_CHOICES` (or keeps it), all drawn from a generator seeded by
  ``(seed, interval)``.

Determinism: a member's batch order in interval ``k`` comes from ``batch_order`` with a
seed derived from ``(member seed, k)``, and the explore draws from ``(seed, k)``, so
nothing depends on generator state carried between intervals except a VAE's training
noise generator, which is checkpointed. With ``state_path`` the whole population
(weights, optimizer state flattened into tensors + JSON, noise state, hyperparameters,
history) is written after every interval: a new ``weights-<k>.safetensors``, then
``state.json`` atomically renamed over the old one (so a crash at any point leaves a
consistent checkpoint), and a rerun with the same
arguments resumes after the last completed interval and ends bit-identical to an
uninterrupted run. No pickle: JSON + safetensors.

Members train one at a time with the plain training loop (exact and simple); the
cost is ``copies * epochs`` epochs, the same as training ``copies`` models
independently.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from evoae.errors import EvoaeError
from evoae.families import build_model
from evoae.objectives.base import EvalSplit
from evoae.objectives.reconstruction import evaluate
from evoae.runs import schema
from evoae.runs.atomic import atomic_write_bytes, atomic_write_text
from evoae.training.optim import make_optimizer
from evoae.training.trainer import batch_order, epoch_runner, initial_state

FORMAT = "evoae-pbt"
VERSION = 1
STATE_NAME = "state.json"
#: Weights of the checkpoint after interval k: ``weights-<k>.safetensors``.
WEIGHTS_PATTERN = "weights-{:05d}.safetensors"
#: Largest state.json read back (a real one is a few KiB per interval and member).
MAX_STATE_BYTES = 16 * 1024 * 1024
#: Batch sizes explore moves between (to a neighbour of the current one).
BATCH_CHOICES = (16, 32, 64, 128, 256)
#: Explore multipliers for the learning rate and beta.
FACTORS = (0.8, 1.2)


def _derive(*keys: int) -> int:
    """A 63-bit seed from integer keys (SeedSequence hashing)."""
    return int(
        np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]).generate_state(2, np.uint64)[0]
        >> 1
    )


@dataclass
class Member:
    """One population member: its model, optimizer and hyperparameters."""

    index: int
    seed: int
    model: nn.Module
    optimizer: torch.optim.Optimizer
    hparams: dict[str, float]
    val_loss: float = math.inf


@dataclass
class PBTResult:
    """The best member (by final validation loss) and the per-interval journal."""

    model: nn.Module
    best: int
    val_loss: float
    hparams: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------------- members


def _make_member(
    spec: dict[str, Any], index: int, seed: int, x: torch.Tensor | None = None
) -> Member:
    """Member ``index``; ``x`` (the training inputs) places it on their device and
    initialises a spec with ``"init": "pca"`` from their PCA, as every trainer does."""
    mseed = _derive(seed, index)
    init = initial_state(spec, x) if x is not None else None
    model = build_model(spec, mseed, init=init)
    if x is not None:
        model = model.to(x.device)
    hp: dict[str, float] = {"lr": float(spec["lr"]), "batch_size": int(spec["batch_size"])}
    if getattr(model, "variational", False):
        hp["beta"] = float(spec.get("beta", 1.0))
    opt = make_optimizer(spec["optimizer"], model.parameters(), hp["lr"])
    m = Member(index, mseed, model, opt, hp)
    _apply_hparams(m)
    return m


def _apply_hparams(m: Member) -> None:
    for group in m.optimizer.param_groups:
        group["lr"] = m.hparams["lr"]
    if "beta" in m.hparams:
        m.model.beta = m.hparams["beta"]


def _train_interval(
    m: Member, x: torch.Tensor, epochs: int, interval: int, trainer: str = "autograd"
) -> float:
    """Train ``m`` for ``epochs`` epochs; returns the last epoch's mean training loss."""
    m.model.train()
    # Built per interval: exploit and explore replace the optimizer state, lr and batch size.
    run = epoch_runner(m.model, m.optimizer, int(m.hparams["batch_size"]), trainer)
    loss = math.nan
    for perm in batch_order(x.shape[0], epochs, _derive(m.seed, interval, 1)):
        loss = run(x, perm)
        if not math.isfinite(loss):
            break
    return loss


def exploit(dst: Member, src: Member) -> None:
    """Copy ``src``'s weights, optimizer state and hyperparameters into ``dst``.

    Everything is deep-copied: later training of either member leaves the other alone.
    """
    dst.model.load_state_dict(copy.deepcopy(src.model.state_dict()))
    dst.optimizer.load_state_dict(copy.deepcopy(src.optimizer.state_dict()))
    dst.hparams = dict(src.hparams)
    _apply_hparams(dst)


def explore(m: Member, rng: np.random.Generator, *, batch: bool = True) -> None:
    """Perturb ``m``'s hyperparameters in place (lr, beta by 0.8 / 1.2; batch size)."""
    hp = m.hparams
    hp["lr"] = float(hp["lr"] * FACTORS[int(rng.integers(2))])
    if "beta" in hp:
        hp["beta"] = float(hp["beta"] * FACTORS[int(rng.integers(2))])
    if batch:
        bs = int(hp["batch_size"])
        choices = sorted(set(BATCH_CHOICES) | {bs})
        i = choices.index(bs) + int(rng.integers(-1, 2))
        hp["batch_size"] = int(choices[min(max(i, 0), len(choices) - 1)])
    _apply_hparams(m)


# ---------------------------------------------------------------------- checkpoints


def _flatten_optimizer(prefix: str, sd: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict:
    """Tensors of an optimizer state dict into ``tensors``; the rest as JSON."""
    state: dict[str, dict[str, Any]] = {}
    for pid, entries in sd["state"].items():
        row: dict[str, Any] = {}
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                key = f"{prefix}.{pid}.{name}"
                tensors[key] = value.detach().cpu().contiguous()
                row[name] = {"tensor": key}
            else:
                row[name] = {"value": value}
        state[str(pid)] = row
    return {"state": state, "param_groups": sd["param_groups"]}


def _unflatten_optimizer(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for pid, row in meta["state"].items():
        state[int(pid)] = {
            name: tensors[v["tensor"]].clone() if "tensor" in v else v["value"]
            for name, v in row.items()
        }
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        for k, v in g.items():
            if isinstance(v, list) and k != "params":
                g[k] = tuple(v)
        groups.append(g)
    return {"state": state, "param_groups": groups}


def _save_state(
    folder: Path, config: dict, members: list[Member], interval: int, history: list
) -> None:
    tensors: dict[str, torch.Tensor] = {}
    rows = []
    for m in members:
        for k, v in m.model.state_dict().items():
            tensors[f"m{m.index}.model.{k}"] = v.detach().cpu().contiguous()
        opt = _flatten_optimizer(f"m{m.index}.opt", m.optimizer.state_dict(), tensors)
        noise = getattr(m.model, "_train_noise", None)
        if noise is not None:
            tensors[f"m{m.index}.noise"] = noise.get_state()
        rows.append(
            {
                "index": m.index,
                "seed": m.seed,
                "hparams": m.hparams,
                "val_loss": m.val_loss if math.isfinite(m.val_loss) else None,
                "optimizer": opt,
                "noise": noise is not None,
            }
        )
    data = save_tensors(tensors, metadata={"format": FORMAT})
    folder.mkdir(parents=True, exist_ok=True)
    weights = WEIGHTS_PATTERN.format(interval)
    atomic_write_bytes(folder / weights, data)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "config": config,
        "intervals_done": interval,
        "members": rows,
        "history": history,
        "weights": weights,
        "weights_sha256": hashlib.sha256(data).hexdigest(),
    }
    # The new weights file is complete before state.json names it; a crash in between
    # leaves the previous state.json and its own weights file intact.
    atomic_write_text(folder / STATE_NAME, json.dumps(meta, indent=1))
    for old in folder.glob("weights-*.safetensors"):
        if old.name != weights:
            old.unlink(missing_ok=True)


#: Bounds on a checkpoint's hyperparameters (explore moves lr and beta by 0.8 / 1.2
#: per interval; far outside these a training overflows instead of failing cleanly).
_HPARAM = schema.number(0.0, 1e6)
_HISTORY_ROW = schema.record(
    {
        "interval": schema.integer(0, 2**31),
        "member": schema.integer(0, 2**31),
        "epoch": schema.integer(0, 2**31),
        "hparams": schema.mapping(_HPARAM, max_len=16),
        "train_loss": schema.number(null=True),
        "val_loss": schema.number(null=True),
        "exploit": schema.integer(0, 2**31, null=True),
        "new_hparams": schema.mapping(_HPARAM, max_len=16, null=True),
    }
)
_MEMBER = schema.record(
    {
        "index": schema.integer(0, 2**31),
        "seed": schema.integer(0, 2**63),
        "hparams": schema.mapping(_HPARAM, max_len=16),
        "val_loss": schema.number(null=True),
        "optimizer": schema.anything(),
        "noise": schema.boolean(),
    }
)
_STATE = schema.record(
    {
        "format": schema.string(choices=(FORMAT,)),
        "version": schema.integer(1, VERSION),
        "config": schema.anything(),
        "intervals_done": schema.integer(0, 2**31),
        "members": schema.list_of(_MEMBER, max_len=1024),
        "history": schema.list_of(_HISTORY_ROW),
        "weights": schema.string(64),
        "weights_sha256": schema.string(64),
    }
)


def _load_state(folder: Path, config: dict, members: list[Member]) -> tuple[int, list]:
    """Restore members from ``folder``; returns (intervals done, history). 0 if none.

    The checkpoint is untrusted: state.json is size-capped and checked field by field,
    the weights must be a regular file no larger than the members' states can be and
    match the digest state.json names; anything else is a one-line error."""
    path = folder / STATE_NAME
    if not path.exists() and not path.is_symlink():
        return 0, []
    meta = schema.load_json(path, "PBT checkpoint", max_bytes=MAX_STATE_BYTES)
    schema.validate(meta, _STATE, f"PBT checkpoint {path}", "delete its folder to restart")
    name = meta["weights"]
    wpath = folder / name
    per_member = sum(v.numel() * v.element_size() for v in members[0].model.state_dict().values())
    limit = len(members) * 4 * per_member + MAX_STATE_BYTES
    try:
        if Path(name).name != name or not re.fullmatch(r"weights-\d{5}\.safetensors", name):
            raise OSError(f"bad weights file name {name!r}")
        st = wpath.stat()
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{name} is not a regular file")
        if st.st_size > limit:
            raise OSError(f"{name} is {st.st_size} bytes, larger than these members' states")
        data = wpath.read_bytes()
    except OSError as e:
        why = " ".join(str(e.strerror or e).split())[:200]
        raise EvoaeError(f"PBT checkpoint in {folder} is unreadable ({why}); delete it") from None
    if hashlib.sha256(data).hexdigest() != meta["weights_sha256"]:
        raise EvoaeError(f"PBT checkpoint in {folder} is corrupt or partial; delete it to restart")
    if meta["config"] != config:
        raise EvoaeError(
            f"PBT checkpoint in {folder} was made with other settings; use the same spec, "
            "copies, epochs, ready and seed, or another folder"
        )
    done, history = meta["intervals_done"], meta["history"]
    copies = len(members)
    if not 0 <= done <= math.ceil(config["epochs"] / config["ready"]) or len(history) != (
        done * copies
    ):
        raise EvoaeError(
            f"PBT checkpoint in {folder} is damaged (intervals_done {done}, "
            f"{len(history)} history rows); delete it"
        )
    if any(r["interval"] >= done or r["member"] >= copies for r in history):
        raise EvoaeError(f"PBT checkpoint in {folder} is damaged (history rows); delete it")
    try:
        tensors = load_tensors(data)
    except (SafetensorError, ValueError) as e:
        raise EvoaeError(f"PBT weights in {folder} are not valid safetensors ({e})") from None
    try:
        for m, row in zip(members, meta["members"], strict=True):
            _restore_member(m, row, tensors)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as e:
        why = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        raise EvoaeError(f"PBT checkpoint in {folder} is damaged ({why}); delete it") from None
    return done, history


def _restore_member(m: Member, row: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    prefix = f"m{m.index}.model."
    m.model.load_state_dict(
        {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    )
    m.optimizer.load_state_dict(_unflatten_optimizer(row["optimizer"], tensors))
    hp = {str(k): float(v) for k, v in dict(row["hparams"]).items()}
    if set(hp) != set(m.hparams) or not all(math.isfinite(v) and v >= 0 for v in hp.values()):
        raise ValueError(f"bad hparams {row['hparams']!r}")
    if hp["batch_size"] < 1 or not hp["batch_size"].is_integer():
        raise ValueError(f"bad batch size {hp['batch_size']!r}")
    hp["batch_size"] = int(hp["batch_size"])
    m.hparams = hp
    m.val_loss = math.inf if row["val_loss"] is None else float(row["val_loss"])
    _apply_hparams(m)
    if row["noise"]:
        m.model._train_noise = torch.Generator().manual_seed(0)
        m.model._train_noise.set_state(tensors[f"m{m.index}.noise"])


# ---------------------------------------------------------------------- the loop


def pbt_train(
    spec: dict[str, Any],
    train: EvalSplit | torch.Tensor,
    val: EvalSplit | torch.Tensor,
    *,
    copies: int = 8,
    epochs: int = 10,
    ready: int = 2,
    seed: int = 0,
    state_path: str | Path | None = None,
    explore_batch: bool = True,
    on_interval: Callable[[int, list[dict[str, Any]]], None] | None = None,
    stop: Callable[[], bool] | None = None,
    trainer: str = "autograd",
) -> PBTResult:
    """Train ``copies`` members of ``spec`` with PBT for ``epochs`` epochs each.

    Parameters
    ----------
    spec
        A decoded model spec (any family ``build_model`` knows).
    train, val
        Training and validation inputs (``EvalSplit`` or a tensor); labels are unused.
    copies, epochs, ready
        Population size, epochs per member, and epochs between exploit/explore steps.
    seed
        Seeds every member's weights and batch order and every explore draw.
    state_path
        Checkpoint folder: written after every interval; an existing checkpoint with
        the same settings is resumed.
    explore_batch
        Let explore move the batch size.
    on_interval
        Called as ``on_interval(intervals_done, history)`` after each checkpoint
        (progress reports; tests raise from it to simulate a crash).
    stop
        Asked after each interval but the last: True ends the training (a time budget).
    trainer
        The training step (:data:`evoae.training.trainer.TRAINERS`).

    Returns
    -------
    PBTResult
        The member with the lowest final validation loss, in eval mode, and the journal:
        one row per member and interval with ``interval``, ``member``, ``epoch`` (epochs
        done), the ``hparams`` it trained with, ``train_loss``, ``val_loss`` and
        ``exploit`` (the member it copied afterwards, or None) and ``new_hparams``.
    """
    xt = train.x if isinstance(train, EvalSplit) else train
    xv = val.x if isinstance(val, EvalSplit) else val
    if copies < 2:
        raise EvoaeError(f"PBT needs at least 2 copies, got {copies}")
    if epochs < 1 or ready < 1:
        raise EvoaeError(f"epochs and ready must be at least 1, got {epochs} and {ready}")
    config = _config(spec, copies, epochs, ready, seed, explore_batch, len(xt), trainer)
    members = [_make_member(spec, i, seed, xt) for i in range(copies)]
    folder = Path(state_path) if state_path is not None else None
    done, history = (0, []) if folder is None else _load_state(folder, config, members)
    n_intervals = math.ceil(epochs / ready)

    for k in range(done, n_intervals):
        span = min(ready, epochs - k * ready)
        rows = [_train_member(m, xt, xv, span, k, k * ready + span, trainer) for m in members]
        if k < n_intervals - 1:
            rng = np.random.default_rng(_derive(seed, k, 2))
            _exploit_explore(members, rows, rng, explore_batch)
        history.extend(rows)
        if folder is not None:
            _save_state(folder, config, members, k + 1, history)
        if on_interval is not None:
            on_interval(k + 1, history)
        if stop is not None and k < n_intervals - 1 and stop():
            break

    best = min(range(copies), key=lambda i: (members[i].val_loss, i))
    model = members[best].model.eval()
    return PBTResult(model, best, members[best].val_loss, dict(members[best].hparams), history)


def _config(
    spec: dict[str, Any],
    copies: int,
    epochs: int,
    ready: int,
    seed: int,
    explore_batch: bool,
    n_train: int,
    trainer: str,
) -> dict[str, Any]:
    """What a checkpoint must match to be resumed (JSON-normalised)."""
    config = dict(spec=spec, copies=copies, epochs=epochs, ready=ready, seed=seed)
    config.update(explore_batch=explore_batch, n_train=n_train)
    if trainer != "autograd":  # checkpoints made before the kernel keep their config
        config["trainer"] = trainer
    return json.loads(json.dumps(config))


def _train_member(
    m: Member, xt: torch.Tensor, xv: torch.Tensor, span: int, k: int, epoch: int, trainer: str
) -> dict[str, Any]:
    """Train member ``m`` for interval ``k`` (``span`` epochs) and score it: its row."""
    used = dict(m.hparams)
    train_loss = _train_interval(m, xt, span, k, trainer)
    val_loss = evaluate(m.model, xv)["loss"] if math.isfinite(train_loss) else math.inf
    m.val_loss = val_loss if math.isfinite(val_loss) else math.inf
    return {
        "interval": k,
        "member": m.index,
        "epoch": epoch,
        "hparams": used,
        "train_loss": _finite(train_loss),
        "val_loss": _finite(m.val_loss),
        "exploit": None,
        "new_hparams": None,
    }


def _exploit_explore(
    members: list[Member], rows: list[dict[str, Any]], rng: np.random.Generator, batch: bool
) -> None:
    """The bottom quarter (by validation loss) copies a random member of the top quarter
    and perturbs its hyperparameters; their rows record both."""
    copies = len(members)
    quarter = max(1, copies // 4)
    order = sorted(range(copies), key=lambda i: (members[i].val_loss, i))
    top, bottom = order[:quarter], order[-quarter:]
    snap = {i: members[i] for i in top}  # top and bottom are disjoint
    for i in bottom:
        src = snap[top[int(rng.integers(len(top)))]]
        exploit(members[i], src)
        explore(members[i], rng, batch=batch)
        rows[i]["exploit"] = src.index
        rows[i]["new_hparams"] = dict(members[i].hparams)


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


__all__ = ["BATCH_CHOICES", "Member", "PBTResult", "exploit", "explore", "pbt_train"]
