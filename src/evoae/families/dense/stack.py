"""Dense autoencoders stacked into one computation (the dense family's population stacker).

See :mod:`evoae.training.population` for how stacks are trained. Members are aligned
layer by layer; slot ``l`` holds one weight ``[members, in_max, out_max]`` and one bias
``[members, 1, out_max]``, padded to the widest member, so every product is one
``torch.baddbmm``; padded units stay exactly zero (masks after activations, softmax over
the true width), and shallower members pass through extra slots at their code width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from evoae.families.dense.model import DenseAutoencoder
from evoae.models.base import count_params
from evoae.models.layers import OPT_ORDER, activation

#: Rows scored per forward pass in the memory estimate of planning.
EVAL_ROWS = 2048
#: Activations with ``f(0) == 0``: padded units need no mask after them.
_ZERO_AT_ZERO = frozenset({"linear", "relu", "tanh", "elu", "gelu", "leaky_relu", "softmax"})
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


def stack_bytes(specs: Sequence[dict[str, Any]], batch_rows: int) -> int:
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
    """Dense autoencoders of one stack, their weights copied from ``DenseAutoencoder(spec, seed)``.

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
            model = DenseAutoencoder(spec, seed)
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
        model = DenseAutoencoder(self.specs[m], 0)
        linears = [x for x in model.modules() if isinstance(x, nn.Linear)]
        with torch.no_grad():
            for slot_i, lin in zip(self._real[m], linears, strict=True):
                slot = self.slots[slot_i]
                w = slot.weight[m, : lin.in_features, : lin.out_features]
                lin.weight.copy_(w.T.cpu())
                lin.bias.copy_(slot.bias[m, 0, : lin.out_features].cpu())
        return model


# ---------------------------------------------------------------- planning stacks

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
        rows = max(batch, EVAL_ROWS)
        n = len(order)
        best = [0.0] + [math.inf] * n
        cut = [0] * (n + 1)
        for j in range(1, n + 1):
            for i in range(j - 1, max(-1, j - 1 - max_members), -1):
                seg = [specs[k] for k in order[i:j]]
                true, padded = stack_flops(seg)
                if len(seg) > 1 and (
                    1 - true / padded > max_waste or stack_bytes(seg, rows) > memory_budget
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
    return OPT_ORDER[spec["optimizer"]], float(spec["lr"]), _depth(spec), tuple(acts)
