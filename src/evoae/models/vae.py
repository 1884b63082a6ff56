"""What every VAE shares: collapse prevention, collapse detection and the likelihood bound.

Prevention (training loss only; the validation loss stays the negative ELBO):

* **KL warm-up** (Bowman et al. 2016; Sønderby et al. 2016): the KL weight rises linearly
  from 0 to ``beta`` over the first ``kl_warmup`` optimizer steps, so the decoder learns
  to use the code before the KL term can push the posterior onto the prior.
* **Free bits** (Kingma et al. 2016): each latent dimension's KL, averaged over the
  batch, counts as at least ``free_bits`` nats, so a dimension carrying less information
  than that feels no pull towards the prior.

Detection (:func:`latent_health`): a latent unit is *active* when the variance over the
data of its posterior mean exceeds :data:`ACTIVE_THRESHOLD` (0.01, Burda et al. 2016). A
VAE with fewer than half its latents active, or whose prior samples are nearly identical
(mean per-pixel standard deviation across samples below :data:`SAMPLE_SPREAD_MIN`), is
*collapsed*. The final model is also judged by its KL from the prior per latent
dimension on the validation split (:func:`kl_per_dim`): fewer than half the dimensions
above :data:`KL_DIM_MIN` nats is a collapse too, whatever the posterior means do.

Likelihood (:func:`iwae_nll`): the importance-weighted bound of Burda et al. with ``k``
samples from the posterior, ``log p(x) >= E[log (1/k) sum_i p(x, z_i) / q(z_i | x)]``;
with ``k = 1`` it is the ELBO, and it tightens as ``k`` grows. Its negative is the test
NLL estimate papers report (nats per image).

A VAE module offers ``posterior(x) -> (mean, logvar)``, ``log_px_z(x, z) -> (N,)``
(the decoder's log-likelihood of ``x``) and ``sample(n, seed)`` for these functions.
"""

from __future__ import annotations

import math
from typing import Any

import torch

#: A latent unit is active when its posterior mean varies more than this over the data.
ACTIVE_THRESHOLD = 0.01
#: Prior samples whose mean per-pixel standard deviation is below this are "identical".
SAMPLE_SPREAD_MIN = 0.02
#: A latent dimension whose mean KL from the prior is below this (nats) carries ~nothing.
KL_DIM_MIN = 0.01
#: Rows per decoder pass in :func:`iwae_nll` (samples x images): bounds its memory.
IWAE_ROWS = 4096
#: Images whose posterior means the active-unit count reads (the first ones).
HEALTH_ROWS = 10_000
#: Prior samples drawn to judge their spread.
SPREAD_SAMPLES = 64


def warmup_scale(step: int, warmup: int) -> float:
    """The KL weight's fraction after ``step`` optimizer steps: ``min(1, (step + 1) / warmup)``."""
    if warmup <= 0:
        return 1.0
    return min(1.0, (step + 1) / warmup)


def training_kl(dims: torch.Tensor, free_bits: float) -> torch.Tensor:
    """Per-image KL as the training loss counts it, from per-dimension KL ``(..., N, k)``.

    With ``free_bits > 0`` a dimension whose batch-mean KL is below ``free_bits`` counts
    as exactly ``free_bits`` nats per image, a constant without gradient: the batch mean
    is ``sum_d max(free_bits, mean_d)``, as in Kingma et al. (2016).
    """
    if free_bits <= 0:
        return dims.sum(-1)
    below = (dims.mean(-2, keepdim=True) < free_bits).detach()
    floor = torch.full_like(dims, float(free_bits))
    return torch.where(below, floor, dims).sum(-1)


def kl_dims(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL of ``N(mean, exp(logvar))`` from ``N(0, I)`` per dimension, in nats."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)


class MeanStats:
    """Running per-dimension mean and variance (float64) of posterior means."""

    def __init__(self) -> None:
        self.n = 0
        self.s1: torch.Tensor | None = None
        self.s2: torch.Tensor | None = None

    def add(self, means: torch.Tensor) -> None:
        m = means.detach().double().reshape(-1, means.shape[-1])
        s1, s2 = m.sum(0), m.pow(2).sum(0)
        self.s1 = s1 if self.s1 is None else self.s1 + s1
        self.s2 = s2 if self.s2 is None else self.s2 + s2
        self.n += m.shape[0]

    def variances(self) -> torch.Tensor:
        if self.s1 is None or self.n < 2:
            return torch.zeros(0, dtype=torch.float64)
        mu = self.s1 / self.n
        return torch.clamp(self.s2 / self.n - mu.pow(2), min=0.0) * self.n / (self.n - 1)

    def active(self, threshold: float = ACTIVE_THRESHOLD) -> int:
        return int((self.variances() > threshold).sum())


@torch.no_grad()
def active_units(
    model: Any, x: torch.Tensor, *, threshold: float = ACTIVE_THRESHOLD, rows: int = 2048
) -> int:
    """How many latent dimensions' posterior means vary more than ``threshold`` over ``x``."""
    stats = MeanStats()
    for start in range(0, x.shape[0], rows):
        stats.add(model.posterior(x[start : start + rows])[0])
    return stats.active(threshold)


def is_collapsed(active: int, code_size: int) -> bool:
    """Fewer than half the latent units active."""
    return 2 * int(active) < int(code_size)


@torch.no_grad()
def sample_spread(model: Any, n: int = SPREAD_SAMPLES, seed: int = 0) -> float:
    """Mean over pixels of the standard deviation across ``n`` prior samples."""
    samples = model.sample(n, seed=seed).reshape(n, -1).double()
    return float(samples.std(0).mean())


def collapse_penalty(active: int, code_size: int, penalty: float) -> float:
    """The nats a collapsed candidate's fitness is raised by (0 for a working one)."""
    return float(penalty) if penalty > 0 and is_collapsed(active, code_size) else 0.0


@torch.no_grad()
def latent_health(model: Any, x: torch.Tensor, *, seed: int = 0) -> dict[str, Any]:
    """Active units over the first :data:`HEALTH_ROWS` rows of ``x``, the prior samples'
    spread, and the verdict ``collapsed`` with its ``collapse_reason`` (None when healthy)."""
    was = model.training
    model.eval()
    try:
        k = int(model.code_size)
        active = active_units(model, x[:HEALTH_ROWS])
        spread = sample_spread(model, seed=seed)
    finally:
        model.train(was)
    reasons = []
    if is_collapsed(active, k):
        reasons.append(f"only {active} of {k} latent units active (fewer than half)")
    if spread < SAMPLE_SPREAD_MIN:
        reasons.append(f"prior samples nearly identical (pixel spread {spread:.4f})")
    return {
        "active_units": active,
        "code_size": k,
        "sample_spread": spread,
        "collapsed": bool(reasons),
        "collapse_reason": "; ".join(reasons) or None,
    }


@torch.no_grad()
def kl_per_dim(model: Any, x: torch.Tensor, rows: int = 2048) -> torch.Tensor:
    """Mean over ``x`` of each latent dimension's KL from ``N(0, 1)``, in nats (float64)."""
    was = model.training
    model.eval()
    total: torch.Tensor | None = None
    try:
        for start in range(0, x.shape[0], rows):
            mean, logvar = model.posterior(x[start : start + rows])
            part = kl_dims(mean.double(), logvar.double()).sum(0)
            total = part if total is None else total + part
    finally:
        model.train(was)
    if total is None:
        return torch.zeros(0, dtype=torch.float64)
    return (total / x.shape[0]).cpu()


def kl_verdict(kl: list[float], threshold: float = KL_DIM_MIN) -> str | None:
    """Why per-dimension KLs mean a collapse (fewer than half above ``threshold``), or None."""
    low = sum(1 for v in kl if not v >= threshold)
    if not kl or 2 * (len(kl) - low) >= len(kl):
        return None
    return (
        f"KL from the prior below {threshold:g} nats in {low} of {len(kl)} latent dimensions "
        f"on the validation split (total {sum(kl):.3g} nats)"
    )


def log_normal(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``log N(z; mean, exp(logvar))`` summed over the last axis."""
    return -0.5 * (((z - mean).pow(2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1))


@torch.no_grad()
def iwae_nll(
    model: Any,
    x: torch.Tensor,
    k: int,
    *,
    seed: int = 0,
    rows: int = IWAE_ROWS,
) -> torch.Tensor:
    """Per-image negative importance-weighted bound with ``k`` samples, in nats ``(N,)``.

    ``log (1/k) sum_i w_i`` is computed as a running log-sum-exp over chunks of samples,
    so memory stays at about ``rows`` decoder rows whatever ``k`` is. Noise comes from a
    generator seeded with ``seed``: the same model, data and seed give the same figure.
    """
    if k < 1:
        raise ValueError(f"importance samples must be at least 1, got {k}")
    was = model.training
    model.eval()
    device = x.device
    g = torch.Generator(device=device).manual_seed(int(seed))
    out = []
    try:
        per_image = max(1, rows // max(1, min(k, rows)))  # images per decoder pass
        chunk = max(1, min(k, rows // per_image))  # samples per image per pass
        for start in range(0, x.shape[0], per_image):
            xb = x[start : start + per_image]
            b = xb.shape[0]
            mean, logvar = model.posterior(xb)
            total = torch.full((b,), -math.inf, dtype=torch.float64, device=device)
            done = 0
            while done < k:
                c = min(chunk, k - done)
                eps = torch.randn((c, *mean.shape), generator=g, device=device)
                z = mean + torch.exp(0.5 * logvar) * eps  # (c, b, d)
                xs = xb.unsqueeze(0).expand(c, *xb.shape).reshape(c * b, *xb.shape[1:])
                log_px = model.log_px_z(xs, z.reshape(c * b, -1)).reshape(c, b)
                log_pz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
                log_qz = log_normal(z, mean, logvar)
                log_w = (log_px + log_pz - log_qz).double()
                total = torch.logaddexp(total, torch.logsumexp(log_w, 0))
                done += c
            out.append(-(total - math.log(k)))
    finally:
        model.train(was)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def final_figures(
    model: Any,
    val_x: torch.Tensor,
    test_x: torch.Tensor | None,
    *,
    nll_samples: int,
    binarize: str = "none",
    seed: int = 0,
) -> dict[str, Any] | None:
    """A final VAE's collapse verdict and likelihood figures (None for other models).

    Active units and sample spread come from :func:`latent_health` on the test split
    (validation without one), ``kl_per_dim`` (nats) from :func:`kl_per_dim` on the
    validation split (:func:`kl_verdict` adds to the verdict); ``test_nll`` is the mean
    negative IWAE bound with ``nll_samples`` samples per test image (None when 0 or
    without a test split), beside ``test_neg_elbo``, the single-sample negative ELBO.
    """
    if not (getattr(model, "variational", False) and hasattr(model, "log_px_z")):
        return None
    x = test_x if test_x is not None else val_x
    out: dict[str, Any] = latent_health(model, x, seed=seed)
    out["health_split"] = "test" if test_x is not None else "validation"
    kl = [float(v) for v in kl_per_dim(model, val_x[:HEALTH_ROWS])]
    out["kl_per_dim"] = kl
    out["kl_threshold"] = KL_DIM_MIN
    why = kl_verdict(kl)
    if why is not None:
        out["collapsed"] = True
        out["collapse_reason"] = "; ".join(r for r in (out["collapse_reason"], why) if r)
    out["active_threshold"] = ACTIVE_THRESHOLD
    out["binarize"] = binarize
    out["nll_samples"] = int(nll_samples)
    out["test_nll"] = None
    out["test_neg_elbo"] = None
    if test_x is not None:
        out["test_neg_elbo"] = neg_elbo(model, test_x)
        if nll_samples > 0:
            out["test_nll"] = float(iwae_nll(model, test_x, nll_samples, seed=seed).mean())
    return out


@torch.no_grad()
def neg_elbo(model: Any, x: torch.Tensor, rows: int = 2048) -> float:
    """Mean single-sample negative ELBO over ``x`` (the model in evaluation mode)."""
    was = model.training
    model.eval()
    try:
        total = sum(
            float(model(x[i : i + rows]).terms["neg_elbo"]) * len(x[i : i + rows])
            for i in range(0, len(x), rows)
        )
    finally:
        model.train(was)
    return total / max(1, len(x))
