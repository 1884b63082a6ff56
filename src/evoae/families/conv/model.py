"""Convolutional autoencoders built from conv specs: the CNN-VAE and the plain conv AE.

Encoder: per block ``Conv2d(k, stride, padding=k//2)`` [+ BatchNorm] + activation, then
flatten, an optional dense layer, and the latent heads (mean and log-variance for the VAE,
one code layer for the plain AE). The decoder mirrors it: ``Linear`` back to the dense
width and to the last feature map, reshape, then one transposed convolution per block in
reverse; every decoder layer gets the batch-norm flag and activation of the encoder layer
whose output it reconstructs, and the last one outputs the image channels through a
sigmoid. Each transposed convolution's ``output_padding`` restores the exact side the
matching convolution received, so outputs always have the input's shape.

Loss (per image, in nats) for the VAE: reconstruction summed over pixels (Bernoulli
cross-entropy on the logits, or a Gaussian with fixed scale ``sigma``) plus ``beta`` times
the KL divergence of ``N(mean, exp(logvar))`` from ``N(0, I)``, averaged over images. In
evaluation mode ``beta`` is 1, so the validation loss (the fitness) is the negative ELBO
even when beta is evolved. The log-variance is soft-clamped to ``[-LOGVAR_BOUND,
LOGVAR_BOUND]`` (a scaled tanh, which keeps gradients) so ``exp`` cannot overflow.

Noise: training draws the reparameterisation noise from a generator seeded with the build
seed. Evaluation (``model.eval()``) also uses one sampled ``z`` per image, as the ELBO
estimate is defined, but restarts a generator from the same seed at every call, so an
evaluated loss is a pure function of weights and input. The seed is stored as a buffer, so
a saved and reloaded model gives identical outputs. :meth:`reconstruct` decodes the
posterior mean (deterministic).

The plain conv AE's loss is the mean squared error per pixel.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from evoae.errors import EvoaeError
from evoae.families.conv.space import LEGACY as LEGACY_VAE
from evoae.models.base import ModelOutput
from evoae.models.layers import activation, glorot_
from evoae.models.vae import kl_dims, training_kl, warmup_scale

#: |log-variance| stays below this (exp(10) ~ 2e4: no overflow, ample range).
LOGVAR_BOUND = 10.0
#: What a spec without the collapse settings means (specs of runs before them).


def conv_out_side(side: int, stride: int) -> int:
    """Side after a ``padding = k // 2`` convolution with an odd kernel."""
    return (side - 1) // stride + 1


def vae_terms(
    logits: torch.Tensor,
    x: torch.Tensor,
    mean: torch.Tensor,
    logvar: torch.Tensor,
    *,
    recon_loss: str = "bce",
    sigma: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image reconstruction and KL terms in nats, each of shape ``(N,)``.

    ``logits`` are pre-sigmoid decoder outputs; ``mse`` scores ``sigmoid(logits)`` under a
    Gaussian of standard deviation ``sigma`` (its full log-density, constant included).
    """
    return recon_nats(logits, x, recon_loss=recon_loss, sigma=sigma), kl_dims(mean, logvar).sum(1)


def recon_nats(
    logits: torch.Tensor, x: torch.Tensor, *, recon_loss: str = "bce", sigma: float = 0.1
) -> torch.Tensor:
    """``-log p(x | z)`` per image ``(N,)`` from decoder ``logits`` (see :func:`vae_terms`)."""
    n = x.shape[0]
    if recon_loss == "bce":
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    else:
        err = (torch.sigmoid(logits) - x) ** 2
        rec = 0.5 * err / sigma**2 + 0.5 * math.log(2 * math.pi * sigma**2)
    return rec.reshape(n, -1).sum(1)


def soft_clamp(x: torch.Tensor, bound: float) -> torch.Tensor:
    """``bound * tanh(x / bound)``: identity near 0, never beyond ``bound``."""
    return bound * torch.tanh(x / bound)


class ConvAutoencoder(nn.Module):
    """A CNN-VAE (``spec["variational"]``) or a plain convolutional autoencoder.

    Weights are Glorot-uniform with zero biases, drawn from ``seed`` alone; the VAE's
    sampling noise also derives from ``seed`` (see the module docstring).
    """

    def __init__(self, spec: dict[str, Any], seed: int = 0) -> None:
        super().__init__()
        self.spec = spec
        c, h, w = (int(v) for v in spec["input_shape"])
        self.input_shape = (c, h, w)
        self.code_size = k = int(spec["code_size"])
        self.variational = bool(spec.get("variational", True))
        self.beta = float(spec.get("beta", 1.0))
        self.recon_loss = spec.get("recon_loss", "bce")
        self.sigma = float(spec.get("sigma", 0.1))
        vae = {key: spec.get(key, value) for key, value in LEGACY_VAE.items()}
        self.free_bits = float(vae["free_bits"])
        self.kl_warmup = int(vae["kl_warmup"])
        self.collapse_penalty = float(vae["collapse_penalty"])
        self.binarize = str(vae["binarize"])
        blocks = spec["blocks"]
        dense = int(spec.get("dense", 0))

        enc: list[nn.Module] = []
        sides = [(h, w)]  # the map size each conv block receives, then the last one
        channels = [c]
        for filters, kernel, stride, act, bn in blocks:
            enc.append(nn.Conv2d(channels[-1], filters, kernel, stride=stride, padding=kernel // 2))
            enc += [nn.BatchNorm2d(filters)] if bn else []
            enc.append(activation(act))
            h, w = conv_out_side(h, stride), conv_out_side(w, stride)
            sides.append((h, w))
            channels.append(filters)
        enc.append(nn.Flatten())
        flat = channels[-1] * h * w
        last_act = blocks[-1][3]
        if dense:
            enc += [nn.Linear(flat, dense), activation(last_act)]
        self.encoder = nn.Sequential(*enc)
        head_in = dense or flat
        self.mean = nn.Linear(head_in, k)
        self.logvar = nn.Linear(head_in, k) if self.variational else None

        dec: list[nn.Module] = []
        if dense:
            dec += [nn.Linear(k, dense), activation(last_act)]
        dec += [nn.Linear(dense or k, flat), activation(last_act)]
        dec.append(nn.Unflatten(1, (channels[-1], h, w)))
        for i in reversed(range(len(blocks))):
            _, kernel, stride, _, _ = blocks[i]
            (th, tw), (ih, iw) = sides[i], sides[i + 1]
            pad = ((th - 1 - (ih - 1) * stride), (tw - 1 - (iw - 1) * stride))
            dec.append(
                nn.ConvTranspose2d(
                    channels[i + 1],
                    channels[i],
                    kernel,
                    stride=stride,
                    padding=kernel // 2,
                    output_padding=pad,
                )
            )
            if i > 0:  # reconstructs block i-1's output: its batch norm and activation
                dec += [nn.BatchNorm2d(channels[i])] if blocks[i - 1][4] else []
                dec.append(activation(blocks[i - 1][3]))
        self.decoder = nn.Sequential(*dec)

        g = torch.Generator().manual_seed(int(seed))
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
                glorot_(m, g)
        # A buffer, so the noise seed travels with the weights through safetensors.
        self.register_buffer("noise_seed", torch.tensor(int(seed) & ((1 << 62) - 1)))
        self._train_noise: torch.Generator | None = None
        self._binarize_noise: torch.Generator | None = None
        if self.kl_warmup > 0:  # saved with the weights: a continued training resumes it
            self.register_buffer("kl_steps", torch.tensor(0, dtype=torch.int64))

    # ---------------------------------------------------------------- public API

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(mean, logvar)`` of the posterior; for the plain AE ``(code, None)``."""
        self._check_input(x)
        hidden = self.encoder(x)
        mean = self.mean(hidden)
        if self.logvar is None:
            return mean, None
        return mean, soft_clamp(self.logvar(hidden), LOGVAR_BOUND)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code: the posterior mean for a VAE (a deterministic embedding)."""
        return self.posterior(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in ``[0, 1]`` of shape ``(N, C, H, W)`` from latents ``(N, code_size)``."""
        return torch.sigmoid(self.decoder(z))

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """Alias of :meth:`encode`, kept for callers of evoae 0.1."""
        return self.encode(x)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstructions in the input's shape, decoded from the posterior mean."""
        return self.decode(self.encode(x))

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None) -> torch.Tensor:
        """``n`` images decoded from the prior ``N(0, I)``, noise from ``seed``.

        Without ``seed`` the model's own noise seed is used, so the same model always
        draws the same images.
        """
        if not self.variational:
            raise EvoaeError("a conv-ae has no prior to sample from: search a conv-vae instead")
        if n < 1:
            raise EvoaeError(f"number of samples must be at least 1, got {n}")
        device = self.mean.weight.device
        g = torch.Generator(device=device).manual_seed(
            int(self.noise_seed) + 2 if seed is None else int(seed)
        )
        z = torch.randn(n, self.code_size, generator=g, device=device)
        return self.decode(z)

    def log_px_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x | z)`` per image ``(N,)``: the decoder's likelihood, in nats."""
        logits = self.decoder(z).reshape(x.shape)
        return -recon_nats(logits, x, recon_loss=self.recon_loss, sigma=self.sigma)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        if self.training and self.binarize == "dynamic":
            x = self._binarized(x)
        mean, logvar = self.posterior(x)
        if logvar is None:
            recon = torch.sigmoid(self.decoder(mean))
            mse = F.mse_loss(recon, x)
            return ModelOutput(recon=recon, loss=mse, terms={"mse": mse})
        eps = torch.randn(mean.shape, generator=self._noise(mean.device), device=mean.device)
        logits = self.decoder(mean + torch.exp(0.5 * logvar) * eps)
        recon = torch.sigmoid(logits)
        rec = recon_nats(logits, x, recon_loss=self.recon_loss, sigma=self.sigma)
        dims = kl_dims(mean, logvar)
        kl = dims.sum(1)
        terms = {
            "neg_elbo": (rec + kl).mean(),
            "recon": rec.mean(),
            "kl": kl.mean(),
            "mse": F.mse_loss(recon.detach(), x),
        }
        if not self.training:  # the validation loss is the negative ELBO
            return ModelOutput(recon=recon, loss=(rec + kl).mean(), terms=terms)
        beta = self.beta * self._warmup()
        loss = (rec + beta * training_kl(dims, self.free_bits)).mean()
        return ModelOutput(recon=recon, loss=loss, terms=terms)

    # ---------------------------------------------------------------- helpers

    def _noise(self, device: torch.device) -> torch.Generator:
        """Training: one running generator. Evaluation: a fresh one per call."""
        if not self.training:
            return torch.Generator(device=device).manual_seed(int(self.noise_seed) + 1)
        if self._train_noise is None or self._train_noise.device != device:
            self._train_noise = torch.Generator(device=device).manual_seed(int(self.noise_seed))
        return self._train_noise

    def _warmup(self) -> float:
        """The KL weight's warm-up fraction at this training step (then one step on)."""
        if self.kl_warmup <= 0 or not torch.is_grad_enabled():
            return 1.0
        step = int(self.kl_steps)
        self.kl_steps.add_(1)
        return warmup_scale(step, self.kl_warmup)

    def _binarized(self, x: torch.Tensor) -> torch.Tensor:
        """A fresh Bernoulli draw of ``x`` (grey levels as probabilities), seeded."""
        g = self._binarize_noise
        if g is None or g.device != x.device:
            g = torch.Generator(device=x.device).manual_seed(int(self.noise_seed) + 3)
            self._binarize_noise = g
        return (torch.rand(x.shape, generator=g, device=x.device) < x).to(x.dtype)

    def _check_input(self, x: torch.Tensor) -> None:
        if tuple(x.shape[1:]) != self.input_shape:
            c, h, w = self.input_shape
            raise EvoaeError(
                f"this conv model takes images of shape (N, {c}, {h}, {w}), got "
                f"{tuple(x.shape)}: use data of the shape it was searched on"
            )
