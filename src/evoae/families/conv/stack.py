"""Convolutional autoencoders of one block structure stacked along channels (the conv
families' population stacker).

Members whose networks have the same shape (blocks' filters, kernels, strides and
batch-norm flags, dense width, code size, VAE or not, reconstruction loss) are stacked
along channels: member ``m`` owns channels ``[m * C, (m + 1) * C)`` of every feature map,
each convolution and transposed convolution is one grouped call with ``groups =
members``, batch norm is one call over the stacked channels (its statistics are
per channel, hence per member), and the dense layers are batched products
(``torch.baddbmm``) as in :mod:`evoae.families.dense.stack`. Activations, optimizer,
learning rate, KL weight and seed stay per member. Members of different structures go
to different stacks (:func:`conv_stack_key`); nothing is padded.

Each member sees its own batch order and its own reparameterisation noise, drawn from a
generator seeded exactly as :class:`evoae.families.conv.model.ConvAutoencoder` seeds its own
(training: one running generator; evaluation: a fresh one per forward call), so a
member's training agrees with :func:`evoae.training.trainer.train_candidate` to float32
tolerance. The training loop, failure handling and optimizer are those of
:func:`evoae.training.population.train_stack`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from evoae.families.conv.model import (
    LEGACY_VAE,
    LOGVAR_BOUND,
    ConvAutoencoder,
    conv_out_side,
    recon_nats,
    soft_clamp,
)
from evoae.models.base import count_params
from evoae.models.layers import OPT_ORDER
from evoae.models.vae import (
    HEALTH_ROWS,
    MeanStats,
    collapse_penalty,
    kl_dims,
    training_kl,
    warmup_scale,
)


def conv_stack_key(spec: dict[str, Any]) -> tuple[Any, ...]:
    """Members with equal keys can share a stack (with equal batch size and epochs)."""
    return (
        spec["family"],
        tuple(spec["input_shape"]),
        int(spec["code_size"]),
        tuple((int(f), int(k), int(s), bool(bn)) for f, k, s, _, bn in spec["blocks"]),
        int(spec.get("dense", 0)),
        bool(spec.get("variational", True)),
        spec.get("recon_loss", "bce"),
        float(spec.get("sigma", 0.1)),
        int(spec["batch_size"]),
        *(spec.get(key, value) for key, value in LEGACY_VAE.items()),
    )


def conv_stack_bytes(specs: Sequence[dict[str, Any]], rows: int) -> int:
    """Estimated peak bytes of training (or scoring ``rows`` rows of) a conv stack.

    Per member and row: every encoder and decoder feature map, counted 6 times (output,
    batch-norm and activation results, their gradients); plus the parameters 5 times
    (weight, gradient, two Adam moments, a temporary).
    """
    spec = specs[0]
    c, h, w = (int(v) for v in spec["input_shape"])
    maps = c * h * w
    for filters, _, stride, _, _ in spec["blocks"]:
        h, w = conv_out_side(h, int(stride)), conv_out_side(w, int(stride))
        maps += int(filters) * h * w
    params = count_params(ConvAutoencoder(spec, 0))
    return 4 * len(specs) * (6 * 2 * maps * rows + 5 * params)


def _runs(names: Sequence[str]) -> list[tuple[int, str]]:
    """(length, name) of each run of equal consecutive names."""
    runs: list[tuple[int, str]] = []
    for name in names:
        if runs and runs[-1][1] == name:
            runs[-1] = (runs[-1][0] + 1, name)
        else:
            runs.append((1, name))
    return runs


class _Act:
    """Per-member activations over dimension ``dim`` (the member axis) of a tensor."""

    def __init__(self, modules: Sequence[nn.Module], dim: int) -> None:
        names = [type(m).__name__ for m in modules]
        self.dim = dim
        self.runs: list[tuple[int, nn.Module]] = []
        start = 0
        for length, _ in _runs(names):
            self.runs.append((length, modules[start]))
            start += length

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        if len(self.runs) == 1:
            return self.runs[0][1](t)
        parts = t.split([n for n, _ in self.runs], dim=self.dim)
        return torch.cat([fn(p) for p, (_, fn) in zip(parts, self.runs, strict=True)], self.dim)


class ConvStack(nn.Module):
    """Same-structure conv autoencoders, weights copied from ``ConvAutoencoder(spec, seed)``."""

    def __init__(
        self,
        specs: Sequence[dict[str, Any]],
        seeds: Sequence[int],
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        if len({conv_stack_key(s) for s in specs}) != 1:
            raise ValueError("a conv stack needs members of one structure")
        device = torch.device(device)
        self.specs = list(specs)
        self.m = len(specs)
        models = [ConvAutoencoder(s, seed) for s, seed in zip(specs, seeds, strict=True)]
        self.params_count = [count_params(x) for x in models]
        first = models[0]
        self.variational = first.variational
        self.recon_loss, self.sigma = first.recon_loss, first.sigma
        self.input_shape = first.input_shape
        self.betas = torch.tensor([x.beta for x in models], device=device)
        self.free_bits, self.kl_warmup = first.free_bits, first.kl_warmup
        self.collapse_penalty, self.binarize = first.collapse_penalty, first.binarize
        self.code_size = first.code_size
        self.kl_steps = 0
        self._binarize_noise: list[torch.Generator] | None = None
        self.noise_seeds = [int(x.noise_seed) for x in models]
        self._train_noise: list[torch.Generator] | None = None
        self.weights = nn.ParameterList()
        self.ops: list[tuple[str, Any]] = []
        self.seeds = [int(x) for x in seeds]
        # Layouts: conv [B, M*C, H, W] (member m owns channels m*C..) until Flatten, then
        # linear [M, B, F] until the decoder's Unflatten.
        self._plan(models, "encoder", device)
        self.mean_w, self.mean_b = self._linear([x.mean for x in models], device)
        if self.variational:
            self.logvar_w, self.logvar_b = self._linear([x.logvar for x in models], device)
        self.enc_ops, self.ops = self.ops, []
        self._plan(models, "decoder", device)
        self.dec_ops = self.ops

    # ---------------------------------------------------------------- building

    def _param(self, t: torch.Tensor, device: torch.device) -> nn.Parameter:
        p = nn.Parameter(t.detach().clone().to(device).contiguous())
        self.weights.append(p)
        return p

    def _linear(self, layers: Sequence[nn.Linear], device: torch.device) -> tuple[Any, Any]:
        w = self._param(torch.stack([x.weight.T for x in layers]), device)
        b = self._param(torch.stack([x.bias for x in layers]).unsqueeze(1), device)
        return w, b

    def _plan(self, models: Sequence[nn.Module], part: str, device: torch.device) -> None:
        seqs = [getattr(x, part) for x in models]
        conv_layout = part == "encoder"
        for pos, mod in enumerate(seqs[0]):
            mods = [s[pos] for s in seqs]
            if isinstance(mod, nn.Conv2d | nn.ConvTranspose2d):
                w = self._param(torch.stack([x.weight for x in mods]), device)
                b = self._param(torch.stack([x.bias for x in mods]), device)
                self.ops.append(("conv", (mod, w, b)))
            elif isinstance(mod, nn.BatchNorm2d):
                w = self._param(torch.stack([x.weight for x in mods]), device)
                b = self._param(torch.stack([x.bias for x in mods]), device)
                mean = torch.cat([x.running_mean for x in mods]).to(device)
                var = torch.cat([x.running_var for x in mods]).to(device)
                self.ops.append(("bn", (mod, w, b, mean, var)))
            elif isinstance(mod, nn.Linear):
                self.ops.append(("linear", self._linear(mods, device)))
            elif isinstance(mod, nn.Flatten):
                self.ops.append(("flatten", None))
                conv_layout = False
            elif isinstance(mod, nn.Unflatten):
                self.ops.append(("unflatten", tuple(mod.unflattened_size)))
                conv_layout = True
            else:  # an activation: member axis is 1 in conv layout, 0 in linear layout
                self.ops.append(("act", (_Act(mods, 1 if conv_layout else 0), conv_layout)))

    # ---------------------------------------------------------------- forward

    def _apply(self, ops: list[tuple[str, Any]], t: torch.Tensor) -> torch.Tensor:
        m = self.m
        for op, arg in ops:
            if op == "conv":
                mod, w, b = arg
                wt = w.reshape(-1, *w.shape[2:])
                if isinstance(mod, nn.Conv2d):
                    t = F.conv2d(t, wt, b.reshape(-1), mod.stride, mod.padding, groups=m)
                else:
                    t = F.conv_transpose2d(
                        t, wt, b.reshape(-1), mod.stride, mod.padding, mod.output_padding, m
                    )
            elif op == "bn":
                mod, w, b, mean, var = arg
                t = F.batch_norm(
                    t, mean, var, w.reshape(-1), b.reshape(-1), self.training, mod.momentum, mod.eps
                )
            elif op == "linear":
                w, b = arg
                t = torch.baddbmm(b, t, w)
            elif op == "flatten":  # [B, M*C, H, W] -> [M, B, C*H*W]
                t = t.reshape(t.shape[0], m, -1).transpose(0, 1)
            elif op == "unflatten":  # [M, B, C*H*W] -> [B, M*C, H, W]
                c, h, w_ = arg
                t = t.transpose(0, 1).reshape(t.shape[1], m * c, h, w_)
            else:
                act, conv_layout = arg
                if conv_layout:
                    shape = t.shape
                    t = act(t.reshape(shape[0], m, -1)).reshape(shape)
                else:
                    t = act(t)
        return t

    def _noise(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """``[M, B, k]`` reparameterisation noise, each member from its own generator."""
        if self.training:
            if self._train_noise is None:
                self._train_noise = [
                    torch.Generator(device=device).manual_seed(s) for s in self.noise_seeds
                ]
            gens = self._train_noise
        else:
            gens = [torch.Generator(device=device).manual_seed(s + 1) for s in self.noise_seeds]
        return torch.stack([torch.randn(shape, generator=g, device=device) for g in gens])

    def outputs(
        self, x: torch.Tensor, stats: list[MeanStats] | None = None, take: int = 0
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-member ``(loss [M], terms {name: [M]})`` for images ``x`` ``[M, B, C, H, W]``;
        ``stats`` (one per member) collect the posterior means of the first ``take`` rows."""
        m, b = x.shape[:2]
        if self.training and self.binarize == "dynamic":
            x = self._binarized(x)
        stacked = x.transpose(0, 1).reshape(b, m * self.input_shape[0], *self.input_shape[1:])
        hidden = self._apply(self.enc_ops, stacked)
        mean = torch.baddbmm(self.mean_b, hidden, self.mean_w)
        if stats is not None:
            for i, st in enumerate(stats):
                st.add(mean[i, :take])
        flat_x = x.reshape(m * b, -1)
        if not self.variational:
            recon = torch.sigmoid(self._logits(mean, b))
            mse = (recon - flat_x).square().reshape(m, -1).mean(1)
            return mse, {"mse": mse}
        logvar = soft_clamp(torch.baddbmm(self.logvar_b, hidden, self.logvar_w), LOGVAR_BOUND)
        eps = self._noise(tuple(mean.shape[1:]), x.device)
        logits = self._logits(mean + torch.exp(0.5 * logvar) * eps, b)
        rec = recon_nats(logits, flat_x, recon_loss=self.recon_loss, sigma=self.sigma).view(m, b)
        dims = kl_dims(mean, logvar)  # [M, B, k]
        kl = dims.sum(-1)
        mse = (torch.sigmoid(logits).detach() - flat_x).square().reshape(m, -1).mean(1)
        terms = {"neg_elbo": (rec + kl).mean(1), "recon": rec.mean(1), "kl": kl.mean(1), "mse": mse}
        if not self.training:
            return (rec + kl).mean(1), terms
        beta = self.betas * self._warmup()
        return (rec + beta.unsqueeze(1) * training_kl(dims, self.free_bits)).mean(1), terms

    def _warmup(self) -> float:
        if self.kl_warmup <= 0 or not torch.is_grad_enabled():
            return 1.0
        self.kl_steps += 1
        return warmup_scale(self.kl_steps - 1, self.kl_warmup)

    def _binarized(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's own fresh Bernoulli draw, seeded as its model's."""
        if self._binarize_noise is None:
            self._binarize_noise = [
                torch.Generator(device=x.device).manual_seed(s + 3) for s in self.noise_seeds
            ]
        draws = [
            torch.rand(x.shape[1:], generator=g, device=x.device) for g in self._binarize_noise
        ]
        return (torch.stack(draws) < x).to(x.dtype)

    def _logits(self, z: torch.Tensor, b: int) -> torch.Tensor:
        """Decoder logits ``[M * B, C * H * W]`` (member-major rows) from latents ``[M, B, k]``."""
        out = self._apply(self.dec_ops, z)  # [B, M*C, H, W]
        return out.reshape(b, self.m, -1).transpose(0, 1).reshape(self.m * b, -1)

    def losses(self, xb: torch.Tensor) -> torch.Tensor:
        return self.outputs(xb)[0]

    @torch.no_grad()
    def evaluate(self, x_val: torch.Tensor, rows: int) -> list[dict[str, float]]:
        """Per-member loss and terms over ``x_val``, batch-weighted as ``evaluate`` is;
        with a collapse penalty, each member's active units and penalty as
        :class:`evoae.objectives.Reconstruction` scores them."""
        sums: dict[str, torch.Tensor] = {}
        judge = self.variational and self.collapse_penalty > 0
        stats = [MeanStats() for _ in range(self.m)] if judge else None
        for start in range(0, x_val.shape[0], rows):
            xb = x_val[start : start + rows]
            take = min(xb.shape[0], HEALTH_ROWS - start) if stats is not None else 0
            loss, terms = self.outputs(self._rows(xb), stats if take > 0 else None, take)
            for k, v in {"loss": loss, **terms}.items():
                sums[k] = sums.get(k, 0) + v.double() * xb.shape[0]
        n = x_val.shape[0]
        cols = {k: (v / n).tolist() for k, v in sums.items()}
        out = [{k: cols[k][i] for k in cols} for i in range(self.m)]
        for i, st in enumerate(stats or []):
            active = st.active()
            penalty = collapse_penalty(active, self.code_size, self.collapse_penalty)
            out[i]["loss"] += penalty
            out[i].update(active_units=float(active), collapse_penalty=penalty)
        return out

    def _rows(self, xb: torch.Tensor) -> torch.Tensor:
        return xb.unsqueeze(0).expand(self.m, *xb.shape)

    @torch.no_grad()
    def zero_member(self, i: int) -> None:
        for p in self.weights:
            p[i].zero_()

    def macs(self) -> tuple[int, int]:
        return 0, 0

    def member_model(self, i: int) -> nn.Module:
        """Member ``i`` as its own (CPU) ConvAutoencoder holding the stacked weights."""
        model = ConvAutoencoder(self.specs[i], self.seeds[i])
        state = model.state_dict()
        for name, t in self.member_state(i, model).items():
            state[name].copy_(t)
        return model

    def member_state(self, i: int, model: nn.Module) -> dict[str, torch.Tensor]:
        """The stacked tensors of member ``i`` under ``model``'s state-dict names."""
        out: dict[str, torch.Tensor] = {}
        for part, ops in (("encoder", self.enc_ops), ("decoder", self.dec_ops)):
            seq = getattr(model, part)
            idx = [j for j, mod in enumerate(seq) if not _is_act(mod)]
            real = [(op, arg) for op, arg in ops if op != "act"]
            for j, (op, arg) in zip(idx, real, strict=True):
                pre = f"{part}.{j}"
                if op == "conv":
                    out[f"{pre}.weight"], out[f"{pre}.bias"] = arg[1][i], arg[2][i]
                elif op == "bn":
                    c = arg[1].shape[1]
                    out[f"{pre}.weight"], out[f"{pre}.bias"] = arg[1][i], arg[2][i]
                    out[f"{pre}.running_mean"] = arg[3][i * c : (i + 1) * c]
                    out[f"{pre}.running_var"] = arg[4][i * c : (i + 1) * c]
                elif op == "linear":
                    out[f"{pre}.weight"], out[f"{pre}.bias"] = arg[0][i].T, arg[1][i, 0]
        out["mean.weight"], out["mean.bias"] = self.mean_w[i].T, self.mean_b[i, 0]
        if self.variational:
            out["logvar.weight"], out["logvar.bias"] = self.logvar_w[i].T, self.logvar_b[i, 0]
        if self.kl_warmup > 0:
            out["kl_steps"] = torch.tensor(self.kl_steps, dtype=torch.int64)
        return {k: v.detach().cpu() for k, v in out.items()}


def _is_act(mod: nn.Module) -> bool:
    return not isinstance(
        mod,
        nn.Conv2d | nn.ConvTranspose2d | nn.BatchNorm2d | nn.Linear | nn.Flatten | nn.Unflatten,
    )


def plan_conv_stacks(
    specs: Sequence[dict[str, Any]],
    epochs: Sequence[int],
    *,
    memory_budget: int,
    max_members: int = 64,
    **_: Any,
) -> list[list[int]]:
    """Indices of ``specs`` bucketed by structure and epochs, cut to the size and memory
    limits, each stack in optimizer order (one update per (rule, rate) slice)."""
    buckets: dict[tuple[Any, ...], list[int]] = {}
    for i, spec in enumerate(specs):
        buckets.setdefault((conv_stack_key(spec), int(epochs[i])), []).append(i)
    stacks = []
    for idx in buckets.values():
        batch = int(specs[idx[0]]["batch_size"])
        per_member = conv_stack_bytes([specs[idx[0]]], batch)
        size = max(1, min(max_members, memory_budget // per_member))
        for start in range(0, len(idx), size):
            chunk = idx[start : start + size]
            order = sorted(
                range(len(chunk)),
                key=lambda j: (
                    OPT_ORDER[specs[chunk[j]]["optimizer"]],
                    float(specs[chunk[j]]["lr"]),
                    j,
                ),
            )
            stacks.append([chunk[j] for j in order])
    return stacks
