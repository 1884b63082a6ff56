"""Population-parallel training: many dense candidates trained as one stacked computation.

Small autoencoders trained with small batches leave a CPU mostly idle: per-layer
operator overhead, not arithmetic, dominates. :class:`PopulationEvaluator` trains a
batch of *different* dense candidates together:

* **Stacking.** Members are aligned layer by layer; layer slot ``l`` holds one weight
  tensor ``[members, in_max, out_max]`` and one bias ``[members, 1, out_max]``, padded
  to the widest member in that slot, and every product is one ``torch.baddbmm``.
* **Exact padding.** Padded weights and biases start at zero; each slot's output is
  multiplied by the member's unit mask after its activation (``sigmoid(0) = 0.5`` would
  otherwise leak), and ``softmax`` is taken with padded logits at ``-inf``, i.e. over the
  member's true width. Padded units are therefore exactly zero, their outgoing weights
  see zero inputs and their incoming weights zero output gradients: padded parameters
  receive exactly zero gradient under every optimizer, so they stay zero.
* **Depth.** A member with H hidden layers in a slot group of depth D > H passes
  through ``2 (D - H)`` slots placed right after its code layer (at its code width, the
  narrowest place): there its output is its input, so its zero weights in those slots
  get no gradient.
* **Activations.** In each slot, consecutive members with the same activation form a
  run; each run's function is applied to its own slice (a view) and the slices are
  concatenated. Members are ordered so that runs are long.
* **Optimizer.** Members are ordered by (rule, learning rate) inside a stack, so the
  members sharing a rule and a rate form one contiguous slice of every parameter, and
  each slice gets one update: SGD as ``torch.optim.SGD``, Adam/AdamW with PyTorch's
  fused kernels (eps 1e-7, as :func:`evoae.training.optim.make_optimizer`).
* **Data order.** Every member sees its *own* batch order, ``batch_order(n, epochs,
  seed)`` from its task seed, exactly as sequential training does; batches are gathered
  per member (``x[perm]`` of shape ``[members, batch, features]``). So a member's run
  is reproducible from (spec, seed, epochs, data) and agrees with
  :func:`evoae.training.trainer.train_candidate` to float32 tolerance (the summation
  order inside a batched product differs; results are bit-identical for the same batch
  of tasks on the same machine).

Grouping: members share steps, so a stack holds members with the same batch size and
epoch count. Within such a group members are sorted by cost and cut into stacks (see
:func:`plan_stacks`) trading a stack's fixed per-step overhead against its padding, so
that the padding waste (``1 - true FLOPs / padded FLOPs``) of every stack stays below
``max_waste`` and its estimated memory within the budget (the budget also caps the
validation rows scored at once; an out-of-memory error halves the stack and retries).
A member whose loss turns non-finite is marked failed, its slice is zeroed and excluded
from the loss; the others continue undisturbed.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from evoae.models import build_model, count_params
from evoae.models.layers import activation
from evoae.training.evaluator import Evaluator, Task, as_tensor, resolve_device
from evoae.training.optim import ADAM_EPS
from evoae.training.population_conv import (
    CONV_FAMILIES,
    ConvStack,
    conv_stack_bytes,
    conv_stack_key,
)
from evoae.training.trainer import EVAL_BATCH, Result, batch_order, train_candidate

#: Activations with ``f(0) == 0``: padded units need no mask after them.
_ZERO_AT_ZERO = frozenset({"linear", "relu", "tanh", "elu", "gelu", "leaky_relu", "softmax"})
#: Optimizer order inside a stack, so that each rule owns one contiguous slice.
_OPT_ORDER = {"adam": 0, "adamw": 1, "sgd": 2}
#: PyTorch defaults that make_optimizer keeps.
_BETAS = (0.9, 0.999)
_ADAMW_DECAY = 1e-2
#: Float32 tensors alive per activation element in a training step (z, y, their grads,
#: the activation's own temporaries), for the memory estimate.
_ACT_COPIES = 6
#: Float32 tensors per parameter element: weight, grad, Adam's two moments, one temporary.
_PARAM_COPIES = 5


# ---------------------------------------------------------------- layout


@dataclass(frozen=True)
class _Layer:
    """One member's layer in one slot; ``act is None`` marks a pass-through slot."""

    n_in: int
    n_out: int
    act: str | None


def _member_layers(spec: dict[str, Any], depth: int) -> list[_Layer]:
    """The member's linear layers aligned to ``2 * depth + 2`` slots."""
    d, k = int(spec["input_dim"]), int(spec["code_size"])
    widths = [d] + [int(w) for w, _ in spec["hidden"]]
    acts = [a for _, a in spec["hidden"]]
    h = len(acts)
    enc = [_Layer(widths[i], widths[i + 1], acts[i]) for i in range(h)]
    enc.append(_Layer(widths[-1], k, spec["code_activation"]))
    back = [k] + widths[:0:-1]
    dec = [_Layer(back[i], back[i + 1], a) for i, a in enumerate(reversed(acts))]
    dec.append(_Layer(back[-1], d, spec["output_activation"]))
    return enc + [_Layer(k, k, None)] * (2 * (depth - h)) + dec


def _depth(spec: dict[str, Any]) -> int:
    return len(spec["hidden"])


def stack_flops(specs: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """(true, padded) multiply-adds per training row for stacking ``specs`` together."""
    depth = max(_depth(s) for s in specs)
    layouts = [_member_layers(s, depth) for s in specs]
    true = sum(ly.n_in * ly.n_out for lay in layouts for ly in lay if ly.act is not None)
    outs = [max(lay[i].n_out for lay in layouts) for i in range(2 * depth + 2)]
    ins = [int(specs[0]["input_dim"])] + outs[:-1]
    padded = len(specs) * sum(a * b for a, b in zip(ins, outs, strict=True))
    return true, padded


def _stack_bytes(specs: Sequence[dict[str, Any]], batch_rows: int) -> int:
    """Estimated peak bytes of training (or evaluating ``batch_rows`` rows of) a stack."""
    depth = max(_depth(s) for s in specs)
    layouts = [_member_layers(s, depth) for s in specs]
    outs = [max(lay[i].n_out for lay in layouts) for i in range(2 * depth + 2)]
    ins = [int(specs[0]["input_dim"])] + outs[:-1]
    params = sum(a * b + b for a, b in zip(ins, outs, strict=True))
    acts = batch_rows * (ins[0] * 2 + sum(outs))
    return 4 * len(specs) * (_PARAM_COPIES * params + _ACT_COPIES * acts)


# ---------------------------------------------------------------- the stacked model


class _Slot:
    """One layer index across members: stacked parameters and per-member behaviour."""

    def __init__(self, layers: Sequence[_Layer], n_in: int, device: torch.device) -> None:
        m = len(layers)
        self.n_in = n_in
        self.n_out = max(ly.n_out for ly in layers)
        self.weight = torch.zeros(m, n_in, self.n_out, device=device)
        self.bias = torch.zeros(m, 1, self.n_out, device=device)
        units = torch.zeros(m, 1, self.n_out, dtype=torch.bool)
        for i, ly in enumerate(layers):
            units[i, 0, : ly.n_out] = True
        self.units = units.to(device)
        # Members with the same activation in a row form a run; each run's activation is
        # applied to its slice (a view) and the slices are concatenated, so every
        # element goes through exactly one activation and backward needs no scatter.
        self.runs: list[tuple[int, int, str, nn.Module | None, torch.Tensor | None]] = []
        acts = ["pass" if ly.act is None else ly.act for ly in layers]
        start = 0
        for i in range(1, m + 1):
            if i < m and acts[i] == acts[start]:
                continue
            act, units_run = acts[start], self.units[start:i]
            padded = not bool(units_run.all())
            fn = None if act in ("pass", "softmax") else activation(act)
            if act == "softmax":
                # Padded logits at -inf: the softmax is over each member's true width.
                extra = ~units_run if padded else None
            elif padded and act not in _ZERO_AT_ZERO:
                # f(0) != 0 (sigmoid): zero the padded units after the activation.
                extra = units_run.float()
            else:
                extra = None
            self.runs.append((start, i, act, fn, extra))
            start = i
        self.run_sizes = [b - a for a, b, *_ in self.runs]
        self.has_pass = "pass" in acts

    def _through(self, h: torch.Tensor) -> torch.Tensor:
        """Pass-through output: the (zero-padded) input, cut or padded to ``n_out``."""
        if self.n_in >= self.n_out:
            return h[:, :, : self.n_out]
        return nn.functional.pad(h, (0, self.n_out - self.n_in))

    def _run(self, z: torch.Tensor, h: torch.Tensor | None, run: tuple) -> torch.Tensor:
        _, _, act, fn, extra = run
        if act == "pass":
            return self._through(h)  # type: ignore[arg-type]
        if act == "softmax":
            zr = z if extra is None else z.masked_fill(extra, -math.inf)
            return torch.softmax(zr, dim=-1)
        y = fn(z)  # type: ignore[misc]
        return y if extra is None else y * extra

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = torch.baddbmm(self.bias, h, self.weight)
        if len(self.runs) == 1:
            return self._run(z, h, self.runs[0])
        # split (not indexing) so that backward is one cat, not a zero-fill per run.
        zs = z.split(self.run_sizes)
        hs = h.split(self.run_sizes) if self.has_pass else [None] * len(zs)
        return torch.cat([self._run(*args) for args in zip(zs, hs, self.runs, strict=True)])


class DenseStack(nn.Module):
    """Dense autoencoders of one stack, their weights copied from ``build_model(spec, seed)``.

    ``forward(x)`` takes ``[members, rows, features]`` (each member its own rows) and
    returns the reconstructions in the same shape.
    """

    def __init__(
        self,
        specs: Sequence[dict[str, Any]],
        seeds: Sequence[int],
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        device = torch.device(device)
        self.specs = list(specs)
        self.depth = max(_depth(s) for s in specs)
        layouts = [_member_layers(s, self.depth) for s in specs]
        self.slots: list[_Slot] = []
        n_in = int(specs[0]["input_dim"])
        for i in range(2 * self.depth + 2):
            slot = _Slot([lay[i] for lay in layouts], n_in, device)
            self.slots.append(slot)
            n_in = slot.n_out
        self._real: list[list[int]] = [
            [i for i, ly in enumerate(lay) if ly.act is not None] for lay in layouts
        ]
        self.params_count: list[int] = []
        for m, (spec, seed) in enumerate(zip(specs, seeds, strict=True)):
            model = build_model(spec, seed)
            self.params_count.append(count_params(model))
            linears = [x for x in model.modules() if isinstance(x, nn.Linear)]
            for slot_i, lin in zip(self._real[m], linears, strict=True):
                slot = self.slots[slot_i]
                slot.weight[m, : lin.in_features, : lin.out_features] = lin.weight.detach().T
                slot.bias[m, 0, : lin.out_features] = lin.bias.detach()
        self.weights = nn.ParameterList()
        for slot in self.slots:
            slot.weight = nn.Parameter(slot.weight)
            slot.bias = nn.Parameter(slot.bias)
            self.weights.extend([slot.weight, slot.bias])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for slot in self.slots:
            h = slot.forward(h)
        return h

    def mse(self, x: torch.Tensor) -> torch.Tensor:
        """Per-member mean squared reconstruction error over ``x`` ``[members, rows, ...]``."""
        x = x.reshape(x.shape[0], x.shape[1], -1)
        return (self.forward(x) - x).square().mean(dim=(1, 2))

    losses = mse

    @torch.no_grad()
    def evaluate(self, x_val: torch.Tensor, rows: int) -> list[dict[str, float]]:
        """Per-member ``{"loss", "mse"}`` over ``x_val``, batch-weighted as ``evaluate``."""
        x = x_val.reshape(x_val.shape[0], -1)
        m = len(self.specs)
        sums = torch.zeros(m, dtype=torch.float64, device=x.device)
        for start in range(0, x.shape[0], rows):
            xb = x[start : start + rows]
            sums += self.mse(xb.unsqueeze(0).expand(m, -1, -1)).double() * xb.shape[0]
        return [{"loss": v, "mse": v} for v in (sums / x.shape[0]).tolist()]

    def macs(self) -> tuple[int, int]:
        return stack_flops(self.specs)

    @torch.no_grad()
    def zero_member(self, m: int) -> None:
        for p in self.weights:
            p[m].zero_()

    def member_model(self, m: int) -> nn.Module:
        """Member ``m`` as its own (CPU) DenseAutoencoder holding the stacked weights."""
        model = build_model(self.specs[m], 0)
        linears = [x for x in model.modules() if isinstance(x, nn.Linear)]
        with torch.no_grad():
            for slot_i, lin in zip(self._real[m], linears, strict=True):
                slot = self.slots[slot_i]
                w = slot.weight[m, : lin.in_features, : lin.out_features]
                lin.weight.copy_(w.T.cpu())
                lin.bias.copy_(slot.bias[m, 0, : lin.out_features].cpu())
        return model


# ---------------------------------------------------------------- the stacked optimizer


class StackedOptimizer:
    """Each member's own rule (SGD, Adam or AdamW) and learning rate on its own slice.

    Members must be ordered by (rule as :data:`_OPT_ORDER`, learning rate), as the stack
    planner does, so that members sharing a rule and a rate form one contiguous slice
    ``[start, stop)`` of every stacked parameter. Each slice gets one call: SGD is
    ``p.add_(g, alpha=-lr)`` as ``torch.optim.SGD``; Adam and AdamW use PyTorch's fused
    kernels (one pass over the slice) with eps 1e-7 as
    :func:`evoae.training.optim.make_optimizer`.
    """

    def __init__(
        self, params: Sequence[torch.Tensor], optimizers: Sequence[str], lrs: Sequence[float]
    ) -> None:
        keys = [(_OPT_ORDER[o], float(lr)) for o, lr in zip(optimizers, lrs, strict=True)]
        if keys != sorted(keys):
            raise ValueError("members must be ordered by (optimizer, learning rate)")
        self.params = list(params)
        self.groups: list[tuple[str, float, int, int]] = []
        start = 0
        for i in range(1, len(keys) + 1):
            if i == len(keys) or keys[i] != keys[start]:
                self.groups.append((optimizers[start], float(lrs[start]), start, i))
                start = i
        device = self.params[0].device
        # Fused Adam reads the step count from a float tensor; all members share it.
        self.step_count = torch.zeros((), dtype=torch.float32, device=device)
        self.moments: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        for g, (name, _, a, b) in enumerate(self.groups):
            if name != "sgd":
                self.moments[g] = (
                    [torch.zeros_like(p[a:b]) for p in self.params],
                    [torch.zeros_like(p[a:b]) for p in self.params],
                )

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def reset_member(self, m: int) -> None:
        """Forget a (failed) member's moments so its zeroed slice stays zero."""
        for g, (_, _, a, b) in enumerate(self.groups):
            if g in self.moments and a <= m < b:
                for t in self.moments[g][0] + self.moments[g][1]:
                    t[m - a].zero_()

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        for g, (name, lr, a, b) in enumerate(self.groups):
            if name == "sgd":
                for p in self.params:
                    p[a:b].add_(p.grad[a:b], alpha=-lr)
                continue
            fused = torch._fused_adam_ if name == "adam" else torch._fused_adamw_
            mom, sq = self.moments[g]
            fused(
                [p[a:b] for p in self.params],
                [p.grad[a:b] for p in self.params],
                mom,
                sq,
                [],
                [self.step_count] * len(self.params),
                lr=lr,
                beta1=_BETAS[0],
                beta2=_BETAS[1],
                weight_decay=_ADAMW_DECAY if name == "adamw" else 0.0,
                eps=ADAM_EPS,
                amsgrad=False,
                maximize=False,
            )


# ---------------------------------------------------------------- training one stack


@dataclass
class StackRun:
    """What training one stack produced, in stack order."""

    results: list[Result]
    epoch_losses: list[list[float]]
    stack: DenseStack
    seconds: float
    flops: int = 0
    padded_flops: int = 0


def train_stack(
    specs: Sequence[dict[str, Any]],
    seeds: Sequence[int],
    x_train: torch.Tensor,
    x_val: torch.Tensor,
    *,
    epochs: int,
    eval_rows: int = EVAL_BATCH,
    build: Callable[..., Any] | None = None,
) -> StackRun:
    """Train same-batch-size candidates together and score them on ``x_val``.

    ``specs`` must be ordered by optimizer and learning rate (see
    :class:`StackedOptimizer`). ``build(specs, seeds, device)`` makes the stack (default
    :class:`DenseStack`); a stack provides ``weights`` (member-first parameters),
    ``params_count``, ``losses(xb)`` (per-member training losses of ``[members, batch,
    ...]`` rows), ``evaluate(x, rows)`` (per-member ``{"loss": ..., terms}``),
    ``zero_member(m)`` and ``macs()`` (true and padded multiply-adds per row). Returns
    per-member results with the fields :func:`train_candidate` fills; ``seconds`` is
    each member's equal share of the stack's wall time.
    """
    t0 = time.perf_counter()
    device = x_train.device
    batch = int(specs[0]["batch_size"])
    if any(int(s["batch_size"]) != batch for s in specs):
        raise ValueError("a stack needs one batch size")
    m = len(specs)
    x = x_train
    n = x.shape[0]
    stack = (build or DenseStack)(specs, seeds, device)
    stack.train()
    opt = StackedOptimizer(
        list(stack.weights), [s["optimizer"] for s in specs], [float(s["lr"]) for s in specs]
    )
    errors: list[str | None] = [None] * m
    alive = torch.ones(m, dtype=torch.bool, device=device)
    orders = [batch_order(n, epochs, seed) for seed in seeds]
    epoch_losses: list[list[float]] = [[] for _ in range(m)]
    for e in range(epochs):
        perms = torch.stack([o[e] for o in orders]).to(device)
        total = torch.zeros(m, dtype=torch.float64, device=device)
        for start in range(0, n, batch):
            idx = perms[:, start : start + batch]
            xb = x[idx]
            losses = stack.losses(xb)
            bad = ~torch.isfinite(losses) & alive
            if bool(bad.any()):
                # Freeze the diverged members at zero and redo this batch without them.
                for i in torch.nonzero(bad).flatten().tolist():
                    errors[i] = "training loss diverged"
                    stack.zero_member(i)
                    opt.reset_member(i)
                alive &= ~bad
                losses = stack.losses(xb)
            opt.zero_grad()
            torch.where(alive, losses, 0.0).sum().backward()
            opt.step()
            total += losses.detach() * idx.shape[1]
        for i, v in enumerate((total / n).tolist()):
            if errors[i] is None:
                epoch_losses[i].append(v)
    stack.eval()
    scores = stack.evaluate(x_val, eval_rows)
    val = [sc.pop("loss") for sc in scores]
    seconds = (time.perf_counter() - t0) / m
    results = []
    for i in range(m):
        params = stack.params_count[i]
        if errors[i] is None and not math.isfinite(val[i]):
            errors[i] = "validation loss diverged"
        if errors[i] is not None:
            results.append(Result.failed(params, seconds, errors[i]))
            continue
        results.append(
            Result(
                fitness=val[i],
                train_loss=epoch_losses[i][-1] if epoch_losses[i] else None,
                val_loss=val[i],
                params=params,
                seconds=seconds,
                terms=scores[i],
            )
        )
    true, padded = stack.macs()
    return StackRun(results, epoch_losses, stack, time.perf_counter() - t0, true, padded)


# ---------------------------------------------------------------- planning stacks


def default_memory_budget(device: torch.device) -> int:
    """Bytes a stack may use: half the free GPU memory, or a quarter of free RAM (<= 4 GiB)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        free = 4 << 30
    return int(min(free // 4, 4 << 30))


#: A stack's fixed cost per training step (operator dispatch for every slot, the
#: optimizer calls), in multiply-adds: about 1 ms at 10 GMAC/s on a 2-core CPU.
STACK_OVERHEAD_MACS = 10_000_000


def plan_stacks(
    specs: Sequence[dict[str, Any]],
    epochs: Sequence[int],
    *,
    max_waste: float = 0.6,
    memory_budget: int = 1 << 30,
    max_members: int = 64,
    overhead_macs: float = STACK_OVERHEAD_MACS,
) -> list[list[int]]:
    """Indices of ``specs`` grouped into stacks, each in optimizer order.

    Members of a stack share batch size and epochs (they take the same steps). Within
    such a group members are sorted by cost (multiply-adds per row, largest first) and
    the sorted list is cut into contiguous stacks by dynamic programming, minimising the
    estimated time ``sum over stacks of (overhead_macs + 3 * batch * padded MACs per
    row)`` subject to: padding waste at most ``max_waste``, estimated memory within
    ``memory_budget``, at most ``max_members`` members (a single member always fits).
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for i, s in enumerate(specs):
        groups.setdefault((int(s["batch_size"]), int(epochs[i])), []).append(i)
    stacks: list[list[int]] = []
    for (batch, _), idx in sorted(groups.items()):
        cost = {i: stack_flops([specs[i]])[0] for i in idx}
        order = sorted(idx, key=lambda i: (-cost[i], i))
        rows = max(batch, EVAL_BATCH)
        n = len(order)
        best = [0.0] + [math.inf] * n
        cut = [0] * (n + 1)
        for j in range(1, n + 1):
            for i in range(j - 1, max(-1, j - 1 - max_members), -1):
                seg = [specs[k] for k in order[i:j]]
                true, padded = stack_flops(seg)
                if len(seg) > 1 and (
                    1 - true / padded > max_waste or _stack_bytes(seg, rows) > memory_budget
                ):
                    continue
                c = best[i] + overhead_macs + 3 * batch * padded
                if c < best[j]:
                    best[j], cut[j] = c, i
        j = n
        while j > 0:
            stacks.append(order[cut[j] : j])
            j = cut[j]
    return [sorted(s, key=lambda i: (_stack_order(specs[i]), i)) for s in stacks]


def _stack_order(spec: dict[str, Any]) -> tuple[Any, ...]:
    """Optimizer and learning rate first (one update per slice), then depth and
    activations, so that slots see long runs of one activation."""
    acts = [a for _, a in spec["hidden"]] + [spec["code_activation"], spec["output_activation"]]
    return _OPT_ORDER[spec["optimizer"]], float(spec["lr"]), _depth(spec), tuple(acts)


# ---------------------------------------------------------------- the evaluator


@dataclass
class PopulationStats:
    """Accumulated over an evaluator's life: stacks, members and padding."""

    stacks: int = 0
    members: int = 0
    flops: int = 0
    padded_flops: int = 0
    sizes: list[int] = field(default_factory=list)
    conv_stacks: int = 0
    conv_members: int = 0

    @property
    def padding_waste(self) -> float:
        """Fraction of stacked multiply-adds spent on padding."""
        return 1.0 - self.flops / self.padded_flops if self.padded_flops else 0.0


class PopulationEvaluator(Evaluator):
    """Trains a batch of tasks as stacked populations (see the module docstring).

    Dense tasks are stacked (padded, see the module docstring); conv tasks are bucketed
    by structure (:func:`evoae.training.population_conv.conv_stack_key`) and each bucket
    is stacked along channels; tasks of other families are trained one at a time with
    :func:`train_candidate`. Results come back stack by stack.

    Parameters
    ----------
    x_train, x_val
        Training and validation data, kept on ``device``.
    device
        ``cpu``, ``cuda`` or ``auto``.
    max_waste
        Largest padding waste a stack may have (0 stacks only identical shapes).
    memory_budget
        Bytes one stack may use (estimated); default :func:`default_memory_budget`.
    max_members
        Largest stack.
    """

    def __init__(
        self,
        x_train: np.ndarray | torch.Tensor,
        x_val: np.ndarray | torch.Tensor,
        device: str = "cpu",
        *,
        max_waste: float = 0.6,
        memory_budget: int | None = None,
        max_members: int = 64,
    ) -> None:
        self.device = resolve_device(device)
        self.x_train = as_tensor(x_train, self.device)
        self.x_val = as_tensor(x_val, self.device)
        self.max_waste = float(max_waste)
        self.memory_budget = (
            default_memory_budget(self.device) if memory_budget is None else int(memory_budget)
        )
        self.max_members = int(max_members)
        self.stats = PopulationStats()

    def evaluate(self, tasks: Sequence[Task]) -> Iterator[tuple[int, Result]]:
        family = [t.spec.get("family") for t in tasks]
        for i, t in enumerate(tasks):
            if family[i] != "dense" and family[i] not in CONV_FAMILIES:
                result, _ = train_candidate(
                    t.spec, self.x_train, self.x_val, epochs=t.epochs, seed=t.seed
                )
                yield i, result
        dense = [i for i, f in enumerate(family) if f == "dense"]
        plan = plan_stacks(
            [tasks[i].spec for i in dense],
            [tasks[i].epochs for i in dense],
            max_waste=self.max_waste,
            memory_budget=self.memory_budget,
            max_members=self.max_members,
        )
        for members in plan:
            yield from self._train([dense[j] for j in members], tasks)
        for members in self._plan_conv(tasks):
            yield from self._train(members, tasks, conv=True)

    def _plan_conv(self, tasks: Sequence[Task]) -> list[list[int]]:
        """Conv tasks bucketed by structure and epochs, cut to the size and memory limits."""
        buckets: dict[tuple[Any, ...], list[int]] = {}
        for i, t in enumerate(tasks):
            if t.spec.get("family") in CONV_FAMILIES:
                buckets.setdefault((conv_stack_key(t.spec), t.epochs), []).append(i)
        stacks = []
        for idx in buckets.values():
            batch = int(tasks[idx[0]].spec["batch_size"])
            per_member = conv_stack_bytes([tasks[idx[0]].spec], batch)
            size = max(1, min(self.max_members, self.memory_budget // per_member))
            for start in range(0, len(idx), size):
                chunk = idx[start : start + size]
                opt = [tasks[i].spec for i in chunk]
                order = sorted(
                    range(len(chunk)),
                    key=lambda j: (_OPT_ORDER[opt[j]["optimizer"]], float(opt[j]["lr"]), j),
                )
                stacks.append([chunk[j] for j in order])
        return stacks

    def _train(
        self, idx: list[int], tasks: Sequence[Task], conv: bool = False
    ) -> Iterator[tuple[int, Result]]:
        specs = [tasks[i].spec for i in idx]
        rows = self._eval_rows(specs, conv_stack_bytes if conv else _stack_bytes)
        try:
            run = train_stack(
                specs,
                [tasks[i].seed for i in idx],
                self.x_train,
                self.x_val,
                epochs=tasks[idx[0]].epochs,
                eval_rows=rows,
                build=ConvStack if conv else DenseStack,
            )
        except torch.OutOfMemoryError:
            if len(idx) > 1:  # the estimate was too low: halve the stack and retry
                half = len(idx) // 2
                yield from self._train(idx[:half], tasks, conv)
                yield from self._train(idx[half:], tasks, conv)
                return
            params = count_params(build_model(specs[0], 0))
            yield idx[0], Result.failed(params, 0.0, "out of memory")
            return
        if conv:  # unpadded: counted as stacks and members only
            self.stats.conv_stacks += 1
            self.stats.conv_members += len(idx)
            yield from zip(idx, run.results, strict=True)
            return
        self.stats.stacks += 1
        self.stats.members += len(idx)
        self.stats.flops += run.flops
        self.stats.padded_flops += run.padded_flops
        self.stats.sizes.append(len(idx))
        yield from zip(idx, run.results, strict=True)

    def _eval_rows(self, specs: Sequence[dict[str, Any]], estimate: Callable[..., int]) -> int:
        """Validation rows per forward pass: ``EVAL_BATCH`` unless the budget needs fewer."""
        rows = EVAL_BATCH
        while rows > 64 and estimate(specs, rows) > self.memory_budget:
            rows //= 2
        return rows


def make_population_evaluator(
    x_train: Any, x_val: Any, *, device: str = "cpu", **options: Any
) -> PopulationEvaluator:
    """Registry factory: takes the population options it knows, ignores the others."""
    known = {k: options[k] for k in ("max_waste", "memory_budget", "max_members") if k in options}
    known = {k: v for k, v in known.items() if v is not None}
    return PopulationEvaluator(x_train, x_val, device, **known)
