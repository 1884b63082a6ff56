"""The dense training kernel: a :class:`DenseAutoencoder`'s training step written out.

Autograd spends most of a small model's step on bookkeeping: building the graph,
``nn.Module`` dispatch, ``zero_grad``, a for-loop optimizer. Here the forward pass, the
backward pass and the optimizer step of one batch are a fixed list of tensor calls into
buffers allocated once per training (``torch.addmm`` / ``torch.mm`` with ``out=``,
activation gradients in place), then one fused optimizer call. The backward formulas
are the ones autograd itself calls (``aten.*_backward``), so a kernel epoch equals an
autograd epoch of :func:`evoae.training.trainer.fit` to float32 rounding (the GEMM
summation order and the fused Adam differ in the last bits).

The parameters trained are the model's own ``nn.Linear`` tensors and the optimizer
state lives in the ``torch.optim`` optimizer passed in (the keys and shapes PyTorch's
Adam uses), so saving, scoring, export, rung checkpoints and PBT's exploit see nothing
new. A model or optimizer the kernel does not cover gives ``None`` from
:func:`dense_kernel` and the caller trains with autograd.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from evoae.families.dense.model import DenseAutoencoder

_A = torch.ops.aten
#: ``reduction=Mean`` of ``aten.mse_loss`` (``torch.nn._reduction``).
_MEAN = 1

# An activation: forward (Z -> A, returns A; may work in place on Z) and backward (the
# gradient w.r.t. A -> w.r.t. Z, in place on ``g`` unless ``gz`` is given).
Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Backward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class _Act:
    forward: Forward
    backward: Backward
    #: The output needs its own buffer (the backward reads the pre-activation).
    own_output: bool = False
    #: The gradient w.r.t. Z needs its own buffer (softmax's backward reads all of a row).
    own_grad: bool = False


def _activation(mod: nn.Module) -> _Act | None:
    """The kernel's form of one of :func:`evoae.models.layers.activation`'s modules."""
    kind = type(mod)
    if kind is nn.Identity:
        return _Act(lambda z, a: z, lambda g, z, a, gz: g)
    if kind is nn.ReLU:
        return _Act(
            lambda z, a: torch.relu_(z),
            lambda g, z, a, gz: _A.threshold_backward.grad_input(g, a, 0, grad_input=g),
        )
    if kind is nn.Tanh:
        return _Act(
            lambda z, a: torch.tanh_(z),
            lambda g, z, a, gz: _A.tanh_backward.grad_input(g, a, grad_input=g),
        )
    if kind is nn.Sigmoid:
        return _Act(
            lambda z, a: torch.sigmoid_(z),
            lambda g, z, a, gz: _A.sigmoid_backward.grad_input(g, a, grad_input=g),
        )
    if kind is nn.ELU and not mod.inplace:
        alpha = float(mod.alpha)
        return _Act(
            lambda z, a: _A.elu.out(z, alpha, 1, 1, out=a),
            lambda g, z, a, gz: _A.elu_backward.grad_input(g, alpha, 1, 1, False, z, grad_input=g),
            own_output=True,
        )
    if kind is nn.GELU:
        approx = str(mod.approximate)
        return _Act(
            lambda z, a: _A.gelu.out(z, approximate=approx, out=a),
            lambda g, z, a, gz: _A.gelu_backward.grad_input(g, z, approximate=approx, grad_input=g),
            own_output=True,
        )
    if kind is nn.LeakyReLU and not mod.inplace:
        slope = float(mod.negative_slope)
        return _Act(
            lambda z, a: _A.leaky_relu.out(z, slope, out=a),
            lambda g, z, a, gz: _A.leaky_relu_backward.grad_input(g, z, slope, False, grad_input=g),
            own_output=True,
        )
    if kind is nn.Softmax and mod.dim in (1, -1):
        return _Act(
            lambda z, a: _A._softmax.out(z, 1, False, out=a),
            lambda g, z, a, gz: _A._softmax_backward_data.out(g, a, 1, a.dtype, grad_input=gz),
            own_output=True,
            own_grad=True,
        )
    return None


def _layers(model: nn.Module) -> list[tuple[nn.Linear, _Act]] | None:
    """(linear, activation) pairs of a plain :class:`DenseAutoencoder`, or None."""
    if type(model) is not DenseAutoencoder:
        return None
    mods = [*model.encoder, *model.decoder]
    if len(mods) % 2:
        return None
    out = []
    for lin, act in zip(mods[::2], mods[1::2], strict=True):
        form = _activation(act)
        if type(lin) is not nn.Linear or lin.bias is None or form is None:
            return None
        out.append((lin, form))
    return out


class _Rule:
    """One optimizer update of every parameter from its ``.grad``: SGD as
    ``p.add_(g, alpha=-lr)`` (``torch.optim.SGD`` without momentum); Adam and AdamW as
    PyTorch's fused kernels, on the state tensors of ``opt`` (created as Adam would)."""

    def __init__(self, opt: torch.optim.Optimizer, params: list[nn.Parameter]) -> None:
        group = opt.param_groups[0]
        self.params = params
        self.grads = [p.grad for p in params]
        self.lr = float(group["lr"])
        self.sgd = type(opt) is torch.optim.SGD
        if self.sgd:
            return
        self.adamw = type(opt) is torch.optim.AdamW
        self.betas = tuple(float(b) for b in group["betas"])
        self.decay, self.eps = float(group["weight_decay"]), float(group["eps"])
        for p in params:
            state = opt.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            step = state["step"]
            step = torch.as_tensor(step, dtype=torch.float32)  # a float in older states
            state["step"] = step.to(p.device)
        states = [opt.state[p] for p in params]
        self.steps = [s["step"] for s in states]
        self.exp_avgs = [s["exp_avg"] for s in states]
        self.exp_avg_sqs = [s["exp_avg_sq"] for s in states]

    def step(self) -> None:
        if self.sgd:
            torch._foreach_add_(self.params, self.grads, alpha=-self.lr)
            return
        torch._foreach_add_(self.steps, 1)
        fused = torch._fused_adamw_ if self.adamw else torch._fused_adam_
        fused(
            self.params,
            self.grads,
            self.exp_avgs,
            self.exp_avg_sqs,
            [],
            self.steps,
            lr=self.lr,
            beta1=self.betas[0],
            beta2=self.betas[1],
            weight_decay=self.decay,
            eps=self.eps,
            amsgrad=False,
            maximize=False,
        )


def _rule_supported(opt: torch.optim.Optimizer, params: list[nn.Parameter]) -> bool:
    """A single group over exactly ``params`` with options :class:`_Rule` implements,
    and a state that is empty or Adam's own."""
    if len(opt.param_groups) != 1:
        return False
    group = opt.param_groups[0]
    if [id(p) for p in group["params"]] != [id(p) for p in params]:
        return False
    if not isinstance(group["lr"], float | int) or group.get("maximize", False):
        return False
    if type(opt) is torch.optim.SGD:
        plain = group["momentum"] == 0 and group["weight_decay"] == 0
        return plain and not group["nesterov"] and not any(opt.state[p] for p in params)
    if type(opt) not in (torch.optim.Adam, torch.optim.AdamW) or group["amsgrad"]:
        return False
    if isinstance(group["betas"][0], torch.Tensor) or group.get("differentiable", False):
        return False
    keys = {"step", "exp_avg", "exp_avg_sq"}
    for p in params:
        state = opt.state[p]
        if state and (
            set(state) != keys
            or any(state[k].shape != p.shape or state[k].dtype != p.dtype for k in keys - {"step"})
            or any(state[k].device != p.device for k in keys - {"step"})
        ):
            return False
    return True


class DenseKernel:
    """Trains one :class:`DenseAutoencoder` with ``opt`` at ``batch_size``, an epoch at a
    time (:meth:`epoch`). Build it with :func:`dense_kernel`."""

    def __init__(
        self,
        layers: list[tuple[nn.Linear, _Act]],
        opt: torch.optim.Optimizer,
        batch_size: int,
    ) -> None:
        self.layers = layers
        self.batch = int(batch_size)
        p0 = layers[0][0].weight
        self.device, self.dtype = p0.device, p0.dtype
        params: list[nn.Parameter] = []
        for lin, _ in layers:
            params += [lin.weight, lin.bias]
        for p in params:  # written by the backward pass with out=, never reallocated
            p.grad = torch.zeros_like(p)
        self.rule = _Rule(opt, params)
        self.one = torch.ones((), dtype=self.dtype, device=self.device)
        rows = self.batch
        widths = [layers[0][0].in_features] + [lin.out_features for lin, _ in layers]
        new = lambda w: torch.empty(rows, w, dtype=self.dtype, device=self.device)  # noqa: E731
        self.x = new(widths[0])
        self.z = [new(w) for w in widths[1:]]
        self.a = [
            new(z.shape[1]) if act.own_output else z
            for (_, act), z in zip(layers, self.z, strict=True)
        ]
        self.ga = [new(w) for w in widths[1:]]
        self.gz = [
            new(g.shape[1]) if act.own_grad else g
            for (_, act), g in zip(layers, self.ga, strict=True)
        ]
        self._plans: dict[int, tuple[Any, ...]] = {}

    def _plan(self, m: int) -> tuple[Any, ...]:
        """The buffers' first ``m`` rows (a full batch, or the last, shorter one)."""
        if m not in self._plans:
            cut = lambda ts: [t[:m] for t in ts]  # noqa: E731
            self._plans[m] = (self.x[:m], cut(self.z), cut(self.a), cut(self.ga), cut(self.gz))
        return self._plans[m]

    @torch.no_grad()
    def step(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """One optimizer step on rows ``rows`` of ``x``; returns the batch's mean loss."""
        xb, z, a, ga, gz = self._plan(rows.shape[0])
        torch.index_select(x, 0, rows, out=xb)
        prev = xb
        for i, (lin, act) in enumerate(self.layers):
            torch.addmm(lin.bias, prev, lin.weight.t(), out=z[i])
            prev = act.forward(z[i], a[i])
        loss = _A.mse_loss(prev, xb, _MEAN)
        _A.mse_loss_backward.grad_input(self.one, prev, xb, _MEAN, grad_input=ga[-1])
        for i in range(len(self.layers) - 1, -1, -1):
            lin, act = self.layers[i]
            g = act.backward(ga[i], z[i], a[i], gz[i])
            inp = a[i - 1] if i else xb
            torch.mm(g.t(), inp, out=lin.weight.grad)
            torch.sum(g, 0, out=lin.bias.grad)
            if i:
                torch.mm(g, lin.weight, out=ga[i - 1])
        self.rule.step()
        return loss

    def epoch(self, x: torch.Tensor, perm: torch.Tensor) -> float:
        """Train one epoch over ``x`` (rows of any shape, flattened as the model does)
        in the row order ``perm``; returns the mean loss over rows, summed as
        :func:`evoae.training.trainer.fit` sums it."""
        x = x.reshape(x.shape[0], -1)  # the model flattens its inputs (a view for most)
        if x.dtype != self.dtype or x.device != self.device or x.shape[1] != self.x.shape[1]:
            raise ValueError("the kernel trains on inputs of its model's width, dtype and device")
        perm = perm.to(self.device)
        n = x.shape[0]
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        for start in range(0, n, self.batch):
            rows = perm[start : start + self.batch]
            total += self.step(x, rows) * rows.shape[0]
        return float(total) / n


def dense_kernel(
    model: nn.Module, opt: torch.optim.Optimizer, batch_size: int
) -> DenseKernel | None:
    """The kernel training ``model`` with ``opt``, or None when either is not covered:
    not a plain :class:`DenseAutoencoder` of float32/float64 ``nn.Linear`` layers, an
    activation module of another kind, or an optimizer other than momentum-free SGD,
    Adam or AdamW (no AMSGrad) over exactly the model's parameters in one group."""
    layers = _layers(model)
    if layers is None or batch_size < 1:
        return None
    params = list(model.parameters())
    dtype, device = params[0].dtype, params[0].device
    if dtype not in (torch.float32, torch.float64):
        return None
    if any(p.dtype != dtype or p.device != device or not p.is_contiguous() for p in params):
        return None
    if not _rule_supported(opt, params):
        return None
    return DenseKernel(layers, opt, batch_size)
