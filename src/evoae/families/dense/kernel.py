"""The dense training kernel: a :class:`DenseAutoencoder`'s training step written out.

Autograd spends most of a small model's step on bookkeeping: building the graph,
``nn.Module`` dispatch, ``zero_grad``, a for-loop optimizer. Here the forward pass, the
backward pass and the optimizer step of one batch are a fixed list of tensor calls into
buffers allocated once per training (``torch.addmm`` / ``torch.mm`` with ``out=``,
activation gradients in place), then one fused optimizer call. The backward formulas
are the ones autograd itself calls (``aten.*_backward``), so a kernel epoch equals an
autograd epoch of :func:`evoae.training.trainer.fit` to float32 rounding: SGD's
weights bit for bit, the loss (summed by one dot product) and fused Adam's update in
the last bits. Non-finite losses, the batch order and the per-epoch mean loss are
``fit``'s.

The parameters trained are the model's own ``nn.Linear`` tensors and the optimizer
state lives in the ``torch.optim`` optimizer passed in (the keys and shapes PyTorch's
Adam uses), so saving, scoring, export, rung checkpoints and PBT's exploit see nothing
new. A PCA-residual model's linear path (code and output: the path's affine map plus
the branch's) is in the same list of calls. A model or optimizer the kernel does not
cover gives ``None`` from
:func:`dense_kernel` and the caller trains with autograd.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from evoae.families.dense.model import DenseAutoencoder
from evoae.runs.killpoints import forward_calls


def _raw(overload: Any) -> Any:
    """An ``aten`` overload's dispatcher entry (skips ``OpOverload.__call__``'s Python
    layer, a microsecond a call; the overload itself where torch hides it)."""
    return getattr(overload, "_op", overload)


_A = torch.ops.aten
_threshold_backward = _raw(_A.threshold_backward.grad_input)
_tanh_backward = _raw(_A.tanh_backward.grad_input)
_sigmoid_backward = _raw(_A.sigmoid_backward.grad_input)
_elu, _elu_backward = _raw(_A.elu.out), _raw(_A.elu_backward.grad_input)
_gelu, _gelu_backward = _raw(_A.gelu.out), _raw(_A.gelu_backward.grad_input)
_leaky, _leaky_backward = _raw(_A.leaky_relu.out), _raw(_A.leaky_relu_backward.grad_input)
_softmax, _softmax_backward = _raw(_A._softmax.out), _raw(_A._softmax_backward_data.out)

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
            lambda g, z, a, gz: _threshold_backward(g, a, 0, grad_input=g),
        )
    if kind is nn.Tanh:
        return _Act(
            lambda z, a: torch.tanh_(z),
            lambda g, z, a, gz: _tanh_backward(g, a, grad_input=g),
        )
    if kind is nn.Sigmoid:
        return _Act(
            lambda z, a: torch.sigmoid_(z),
            lambda g, z, a, gz: _sigmoid_backward(g, a, grad_input=g),
        )
    if kind is nn.ELU and not mod.inplace:
        alpha = float(mod.alpha)
        return _Act(
            lambda z, a: _elu(z, alpha, 1, 1, out=a),
            lambda g, z, a, gz: _elu_backward(g, alpha, 1, 1, False, z, grad_input=g),
            own_output=True,
        )
    if kind is nn.GELU:
        approx = str(mod.approximate)
        return _Act(
            lambda z, a: _gelu(z, approximate=approx, out=a),
            lambda g, z, a, gz: _gelu_backward(g, z, approximate=approx, grad_input=g),
            own_output=True,
        )
    if kind is nn.LeakyReLU and not mod.inplace:
        slope = float(mod.negative_slope)
        return _Act(
            lambda z, a: _leaky(z, slope, out=a),
            lambda g, z, a, gz: _leaky_backward(g, z, slope, False, grad_input=g),
            own_output=True,
        )
    if kind is nn.Softmax and mod.dim in (1, -1):
        return _Act(
            lambda z, a: _softmax(z, 1, False, out=a),
            lambda g, z, a, gz: _softmax_backward(g, a, 1, a.dtype, grad_input=gz),
            own_output=True,
            own_grad=True,
        )
    return None


def _layers(model: nn.Module) -> list[tuple[nn.Linear, _Act]] | None:
    """(linear, activation) pairs of a :class:`DenseAutoencoder`'s encoder then decoder,
    or None. A PCA-residual model's code and output layers (a bare ``nn.Linear``, no
    activation module) pair with the identity; its linear path is :class:`_Linear`'s."""
    if type(model) is not DenseAutoencoder:
        return None
    out = []
    for part in (model.encoder, model.decoder):
        mods = list(part)
        if getattr(model, "residual", False):
            mods.append(nn.Identity())  # the branch ends in a linear layer
        if len(mods) % 2:
            return None
        for lin, act in zip(mods[::2], mods[1::2], strict=True):
            form = _activation(act)
            if type(lin) is not nn.Linear or lin.bias is None or form is None:
                return None
            out.append((lin, form))
    return out


@dataclass(frozen=True)
class _Linear:
    """A PCA-residual model's linear path: ``code = x W_e^T + b_e + e(x)`` and
    ``output = code W_d^T + b_d + d(code)`` (:class:`DenseAutoencoder`), with ``code``
    the output of layer ``code`` of the kernel's list."""

    enc_weight: nn.Parameter
    enc_bias: nn.Parameter
    dec_weight: nn.Parameter
    dec_bias: nn.Parameter
    code: int


def _linear_path(model: nn.Module, n_encoder: int) -> _Linear | None:
    if not getattr(model, "residual", False):
        return None
    return _Linear(
        model.lin_encoder_weight,
        model.lin_encoder_bias,
        model.lin_decoder_weight,
        model.lin_decoder_bias,
        n_encoder - 1,
    )


class _Rule:
    """One optimizer update of every parameter from its ``.grad``: SGD as
    ``p.add_(g, alpha=-lr)`` (``torch.optim.SGD`` without momentum); Adam and AdamW as
    PyTorch's fused kernels, on the state tensors of ``opt`` (created as Adam would).

    Every parameter's ``step`` counts the same steps, so during an epoch they are one
    tensor (one increment a step; incrementing a list of them costs more than the
    update), and :meth:`part` gives each its own again: ``opt`` stays a plain Adam."""

    def __init__(self, opt: torch.optim.Optimizer, params: list[nn.Parameter]) -> None:
        group = opt.param_groups[0]
        self.opt, self.params = opt, params
        self.grads = [p.grad for p in params]
        self.lr = float(group["lr"])
        self.sgd = type(opt) is torch.optim.SGD
        if self.sgd:
            return
        self.fused = torch._fused_adamw_ if type(opt) is torch.optim.AdamW else torch._fused_adam_
        self.betas = tuple(float(b) for b in group["betas"])
        self.decay, self.eps = float(group["weight_decay"]), float(group["eps"])
        for p in params:
            state = opt.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        states = [opt.state[p] for p in params]
        self.exp_avgs = [s["exp_avg"] for s in states]
        self.exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        first = states[0]["step"]
        # Fused Adam reads a float32 step on the parameters' device (older states: a float).
        self.step_count = torch.as_tensor(first, dtype=torch.float32).to(params[0].device)
        self.steps = [self.step_count] * len(params)

    def join(self) -> None:
        """Point every parameter's ``step`` at the one counter; read the learning rate
        (a final training cuts it between epochs)."""
        self.lr = float(self.opt.param_groups[0]["lr"])
        if not self.sgd:
            for p in self.params:
                self.opt.state[p]["step"] = self.step_count

    def part(self) -> None:
        """Give every parameter a ``step`` tensor of its own (as ``torch.optim.Adam``)."""
        if not self.sgd:
            for p in self.params:
                self.opt.state[p]["step"] = self.step_count.clone()

    def step(self) -> None:
        if self.sgd:
            torch._foreach_add_(self.params, self.grads, alpha=-self.lr)
            return
        self.step_count += 1
        self.fused(
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
    states = [opt.state[p] for p in params]
    if not any(states):
        return True
    for p, state in zip(params, states, strict=True):
        if (
            set(state) != keys
            or any(state[k].shape != p.shape or state[k].dtype != p.dtype for k in keys - {"step"})
            or any(state[k].device != p.device for k in keys - {"step"})
        ):
            return False
    # One shared step count (see _Rule): every parameter has taken the same steps.
    return len({float(s["step"]) for s in states}) == 1


class DenseKernel:
    """Trains one :class:`DenseAutoencoder` with ``opt`` at ``batch_size``, an epoch at a
    time (:meth:`epoch`). Build it with :func:`dense_kernel`."""

    def __init__(
        self,
        layers: list[tuple[nn.Linear, _Act]],
        opt: torch.optim.Optimizer,
        batch_size: int,
        params: list[nn.Parameter],
        linear: _Linear | None = None,
    ) -> None:
        self.layers, self.linear = layers, linear
        self.batch = int(batch_size)
        #: The module calls of an autograd forward pass (the model, encoder, decoder and
        #: every layer and activation; a PCA-residual model's code and output have none).
        self.modules = 3 + 2 * len(layers) - (2 if linear is not None else 0)
        p0 = params[0]
        self.device, self.dtype = p0.device, p0.dtype
        for p in params:  # written by the backward pass with out=, never reallocated
            p.grad = torch.zeros_like(p)
        self.rule = _Rule(opt, params)
        self.wt = [lin.weight.t() for lin, _ in layers]  # views: see every update
        self.widths = [layers[0][0].in_features] + [lin.out_features for lin, _ in layers]
        self.last = len(layers) - 1
        if linear is not None:
            self.enc_wt, self.dec_wt = linear.enc_weight.t(), linear.dec_weight.t()
        self.rows = 0  # buffers are allocated by the first epoch, for min(batch, rows)

    def _allocate(self, rows: int) -> None:
        """Every activation and gradient buffer, ``rows`` rows each."""
        new = lambda w: torch.empty(rows, w, dtype=self.dtype, device=self.device)  # noqa: E731
        self.x = new(self.widths[0])
        self.z = [new(w) for w in self.widths[1:]]
        self.a = [
            new(z.shape[1]) if act.own_output else z
            for (_, act), z in zip(self.layers, self.z, strict=True)
        ]
        self.ga = [new(w) for w in self.widths[1:]]
        self.gz = [
            new(g.shape[1]) if act.own_grad else g
            for (_, act), g in zip(self.layers, self.ga, strict=True)
        ]
        # The linear path's outputs (code, input widths) and its gradient w.r.t. the code.
        code = self.widths[self.linear.code + 1] if self.linear is not None else 0
        self.lin = [new(code), new(self.widths[0]), new(code)] if code else []
        self.rows = rows
        self._plans: dict[int, tuple[Any, ...]] = {}

    def _plan(self, m: int) -> tuple[Any, ...]:
        """The buffers' first ``m`` rows (a full batch, or the last, shorter one), and
        per layer the calls' operands, looked up once (``nn.Module`` attribute access
        and ``.t()`` cost about a microsecond each, ~60 a step)."""
        if m not in self._plans:
            cut = lambda ts: [t[:m] for t in ts]  # noqa: E731
            xb, z, a, ga, gz, lin = (
                self.x[:m], cut(self.z), cut(self.a), cut(self.ga), cut(self.gz), cut(self.lin)
            )  # fmt: skip
            fwd = [
                (lin_.bias, wt, zi, ai, act.forward)
                for (lin_, act), wt, zi, ai in zip(self.layers, self.wt, z, a, strict=True)
            ]
            bwd = []
            for i in range(self.last, -1, -1):
                lin_, act = self.layers[i]
                g = gz[i] if act.own_grad else ga[i]  # what act.backward returns
                bwd.append(
                    (
                        i, act.backward, ga[i], z[i], a[i], gz[i], g.t(),
                        a[i - 1] if i else xb, lin_.weight, lin_.weight.grad, lin_.bias.grad,
                        ga[i - 1] if i else None,
                    )
                )  # fmt: skip
            self._plans[m] = (xb, z, a, ga, gz, lin, fwd, bwd)
        return self._plans[m]

    def step(self, x: torch.Tensor, rows: torch.Tensor, total: torch.Tensor) -> None:
        """One optimizer step on rows ``rows`` of ``x`` (2-D); adds the batch's summed
        squared error divided by the row width to ``total`` (its mean loss times its
        rows). Call under ``torch.no_grad()``."""
        forward_calls(self.modules)  # the kill tests' mid-training point
        xb, z, a, ga, _, lin_out, fwd, bwd = self._plan(rows.shape[0])
        torch.index_select(x, 0, rows, out=xb)
        path = self.linear
        at = path.code if path is not None else -1
        addmm, mm, tsum = torch.addmm, torch.mm, torch.sum
        prev = xb
        for i, (bias, wt, zi, ai, forward) in enumerate(fwd):
            addmm(bias, prev, wt, out=zi)
            prev = forward(zi, ai)
            if i == at:  # code = linear path + branch (identity activation: prev is zi)
                addmm(path.enc_bias, xb, self.enc_wt, out=lin_out[0])
                prev.add_(lin_out[0])
        if path is not None:  # output = linear path + branch
            addmm(path.dec_bias, a[at], self.dec_wt, out=lin_out[1])
            prev.add_(lin_out[1])
        # F.mse_loss and its backward: mean((A - X)^2), gradient 2 (A - X) / numel.
        diff = ga[-1]
        torch.sub(prev, xb, out=diff)
        flat = diff.view(-1)
        total.add_(torch.dot(flat, flat), alpha=1.0 / xb.shape[1])
        diff.mul_(2.0 / flat.shape[0])
        last = self.last
        for i, backward, gai, zi, ai, gzi, gt, inp, weight, wgrad, bgrad, gprev in bwd:
            g = backward(gai, zi, ai, gzi)
            if path is not None and i == last:
                mm(gt, a[at], out=path.dec_weight.grad)
                tsum(g, 0, out=path.dec_bias.grad)
                mm(g, path.dec_weight, out=lin_out[2])
            mm(gt, inp, out=wgrad)
            tsum(g, 0, out=bgrad)
            if gprev is not None:
                mm(g, weight, out=gprev)
                if i - 1 == at:  # the code's gradient: the branch's plus the path's
                    gprev.add_(lin_out[2])
            if i == at:
                mm(gt, xb, out=path.enc_weight.grad)
                tsum(g, 0, out=path.enc_bias.grad)
        self.rule.step()

    def epoch(self, x: torch.Tensor, perm: torch.Tensor) -> float:
        """Train one epoch over ``x`` (rows of any shape, flattened as the model does)
        in the row order ``perm``; returns the mean loss over rows, summed in float64 as
        :func:`evoae.training.trainer.fit` sums it."""
        x = x.reshape(x.shape[0], -1)  # the model flattens its inputs (a view for most)
        if x.dtype != self.dtype or x.device != self.device or x.shape[1] != self.widths[0]:
            raise ValueError("the kernel trains on inputs of its model's width, dtype and device")
        if self.rows < min(self.batch, x.shape[0]):
            self._allocate(min(self.batch, x.shape[0]))
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        self.rule.join()
        flush = FLUSH_DENORMALS and self.device.type == "cpu" and not _flushing()
        if flush:
            torch.set_flush_denormal(True)
        try:
            with torch.no_grad():
                for rows in perm.to(self.device).split(self.batch):
                    self.step(x, rows, total)
        finally:
            if flush:
                torch.set_flush_denormal(False)
            self.rule.part()
        return float(total) / x.shape[0]


#: Flush subnormal floats to zero during a CPU epoch. Adam's first moment of a weight
#: whose gradient stays zero (a dead ReLU unit, a zero-started branch) decays by
#: ``beta1`` a step into the subnormal range (below 1.2e-38 in float32), where x86 cores
#: take a slow path: measured, the fused Adam call of a 252k-parameter model went from
#: 0.24 to 1.0-2.4 ms. A value that small moves no weight (``lr * m / (sqrt(v) + eps)``
#: adds ~1e-33 to weights of ~1e-2), so flushing it changes the training only below
#: float32 rounding. The thread's previous mode is restored after the epoch.
FLUSH_DENORMALS = True


def _flushing() -> bool:
    """Whether this thread already flushes subnormals (then the epoch leaves it so)."""
    return float(torch.full((), 1e-39, dtype=torch.float32) * 2.0) == 0.0


def dense_kernel(
    model: nn.Module, opt: torch.optim.Optimizer, batch_size: int
) -> DenseKernel | None:
    """The kernel training ``model`` with ``opt``, or None when either is not covered:
    not a :class:`DenseAutoencoder` (plain or PCA-residual) of float32/float64
    ``nn.Linear`` layers, an activation module of another kind, or an optimizer other
    than momentum-free SGD, Adam or AdamW (no AMSGrad) over exactly the model's
    parameters in one group."""
    layers = _layers(model)
    if layers is None or batch_size < 1:
        return None
    residual = bool(getattr(model, "residual", False))
    linear = _linear_path(model, (len(model.encoder) + residual) // 2)
    params = list(model.parameters())
    covered = [t for lin, _ in layers for t in (lin.weight, lin.bias)]
    if linear is not None:
        covered += [linear.enc_weight, linear.enc_bias, linear.dec_weight, linear.dec_bias]
    if sorted(map(id, covered)) != sorted(map(id, params)) or len(covered) != len(params):
        return None  # a parameter the kernel would not train
    dtype, device = params[0].dtype, params[0].device
    if dtype not in (torch.float32, torch.float64):
        return None
    if any(p.dtype != dtype or p.device != device or not p.is_contiguous() for p in params):
        return None
    if not _rule_supported(opt, params):
        return None
    return DenseKernel(layers, opt, batch_size, params, linear)
