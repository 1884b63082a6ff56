"""The convolutional space: CNN-VAEs (``conv-vae``) and plain convolutional autoencoders.

Genome layout (one gene = one unit of crossover and mutation)::

    n_blocks              number of active conv blocks, 1 .. max_blocks
    block_1 .. block_B    (filters, kernel, stride, activation, batch_norm); B = max_blocks,
                          only the first n_blocks are decoded (the rest are kept, inactive,
                          so crossover and mutation can revive them)
    dense                 width of the dense layer before the latent heads; 0 = none
    optimizer             sgd, adam or adamw
    learning_rate         log-uniform in ``lr_range``
    beta                  only with ``evolve_beta``: KL weight, log-uniform in ``beta_range``
    batch_size            only with ``batch_gene``: one of ``batch_choices``

Filters are drawn log-uniformly in ``filters_range`` (8-128), the dense width 0 with
probability 1/4 else log-uniformly in ``dense_range``. The latent size is the user's
``code_size`` (``--latent-dim``); it is not evolved.

Validity rule (repair at decode time): every convolution uses "same" padding ``k // 2``, so a
stride-1 block keeps the map size and a stride-2 block maps a side ``s`` to ``ceil(s / 2)``.
A stride-2 block whose input map has a side below :data:`MIN_DOWNSAMPLE_SIDE` (4) is decoded
as stride 1, so the smallest map is 2x2 and any genome fits any image of at least
:data:`MIN_SIDE` x :data:`MIN_SIDE` pixels. The decoder (see :mod:`evoae.families.conv.model`)
undoes each block with a transposed convolution whose ``output_padding`` restores the
exact side (28 -> 14 -> 7 -> 4 is inverted as 4 -> 7 -> 14 -> 28), so the output shape
always equals the input shape.

Collapse settings (VAE only, fixed for a run, written into each spec when on; see
:mod:`evoae.models.vae`): ``free_bits`` (nats per latent dimension, default
:data:`FREE_BITS`), ``kl_warmup`` (optimizer steps, default :data:`KL_WARMUP`),
``collapse_penalty`` (nats added to the fitness of a candidate with fewer than half its
latents active, default :data:`COLLAPSE_PENALTY`) and ``binarize`` (``dynamic``: the
model draws a fresh Bernoulli image from each training image's grey levels every time it
sees it). Spaces stored before these settings read them as off (``LEGACY``).

Presets: ``seed`` and ``extended`` both name this default space (there is no published
conv space to reproduce); ``--max-depth`` sets the most blocks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from evoae.errors import EvoaeError
from evoae.spaces.base import (
    OPTIMIZERS,
    Choice,
    Float,
    Gene,
    Genome,
    Int,
    Parts,
    Space,
    check_names,
)

if TYPE_CHECKING:  # numpy only types the samplers: reading specs stays light
    import numpy as np

CONV_ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid")
KERNELS = (3, 5)
STRIDES = (1, 2)
RECON_LOSSES = ("bce", "mse")
#: The VAE settings as runs made before them had them (off): specs and spaces without them.
LEGACY = {"free_bits": 0.0, "kl_warmup": 0, "collapse_penalty": 0.0, "binarize": "none"}
#: Smallest image side a conv model accepts.
MIN_SIDE = 4
#: A stride-2 block needs an input map of at least this side (else it decodes as stride 1).
MIN_DOWNSAMPLE_SIDE = 4
MAX_BLOCKS = 4
#: Defaults of the collapse settings for new runs (see the module docstring).
FREE_BITS = 0.1
KL_WARMUP = 100
COLLAPSE_PENALTY = 1000.0
BINARIZE = ("none", "dynamic")


class ConvSpace(Space):
    """Convolutional (variational) autoencoders for images of shape ``(C, H, W)``.

    Parameters
    ----------
    input_shape
        ``(C, H, W)`` of the images; sides of at least :data:`MIN_SIDE`.
    code_size
        The latent size the user fixes (at least 1).
    variational
        True: a CNN-VAE (``conv-vae``: mean and log-variance heads, loss = reconstruction
        + beta * KL). False: a plain conv autoencoder (``conv-ae``: deterministic code, MSE).
    max_blocks
        Most conv blocks (1-4).
    filters_range, dense_range
        Log-uniform ranges of conv filters and of the optional dense layer's width.
    activations, optimizers
        Choices for the block activation and optimizer genes.
    strides
        Stride choices of a block (1 and 2; ``(2,)`` keeps only downsampling blocks, the
        cheapest networks, still repaired to stride 1 on small maps).
    lr_range
        Log-uniform range of the learning-rate gene.
    evolve_beta, beta, beta_range
        Evolve the KL weight in ``beta_range``, else use ``beta`` (default 1: the ELBO).
    recon_loss, sigma
        ``bce`` (Bernoulli likelihood) or ``mse`` (Gaussian with fixed scale ``sigma``),
        the VAE's reconstruction term in nats per image.
    batch_gene, batch_choices, batch_size
        Evolve the batch size among ``batch_choices``; else use ``batch_size``.
    free_bits, kl_warmup, collapse_penalty, binarize
        The VAE's collapse prevention, collapse penalty and dynamic binarisation (see the
        module docstring); ignored by the plain conv AE.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        code_size: int,
        *,
        variational: bool = True,
        max_blocks: int = MAX_BLOCKS,
        filters_range: tuple[int, int] = (8, 128),
        dense_range: tuple[int, int] = (32, 512),
        activations: Sequence[str] = CONV_ACTIVATIONS,
        optimizers: Sequence[str] = OPTIMIZERS,
        strides: Sequence[int] = STRIDES,
        lr_range: tuple[float, float] = (1e-4, 3e-2),
        evolve_beta: bool = False,
        beta: float = 1.0,
        beta_range: tuple[float, float] = (0.25, 4.0),
        recon_loss: str = "bce",
        sigma: float = 0.1,
        batch_gene: bool = False,
        batch_choices: Sequence[int] = (32, 64, 128, 256),
        batch_size: int = 128,
        free_bits: float = FREE_BITS,
        kl_warmup: int = KL_WARMUP,
        collapse_penalty: float = COLLAPSE_PENALTY,
        binarize: str = "none",
    ) -> None:
        shape = tuple(int(v) for v in input_shape)
        if len(shape) != 3:
            raise EvoaeError(f"conv models need images (C, H, W); got input shape {shape}")
        c, h, w = shape
        if c < 1 or min(h, w) < MIN_SIDE:
            raise EvoaeError(
                f"image shape {c}x{h}x{w} is too small for a conv model: sides of at least "
                f"{MIN_SIDE} pixels are needed (use --image-size or --model dense)"
            )
        if code_size < 1:
            raise EvoaeError(f"latent size must be at least 1, got {code_size}")
        if not 1 <= max_blocks <= MAX_BLOCKS:
            raise EvoaeError(f"conv blocks must be between 1 and {MAX_BLOCKS}, got {max_blocks}")
        _check_range("filters", filters_range, integer=True)
        _check_range("dense width", dense_range, integer=True)
        _check_range("learning-rate", lr_range)
        _check_range("beta", beta_range)
        check_names("activation", activations, CONV_ACTIVATIONS)
        check_names("optimizer", optimizers, OPTIMIZERS)
        check_names("stride", [str(s) for s in strides], [str(s) for s in STRIDES])
        _check_vae(variational, recon_loss, beta, sigma, binarize)
        if batch_size < 1 or not batch_choices or any(b < 1 for b in batch_choices):
            raise EvoaeError("batch sizes must be positive integers")
        _check_collapse(free_bits, kl_warmup, collapse_penalty)
        self.family = "conv-vae" if variational else "conv-ae"
        self.input_shape = (c, h, w)
        self.code_size = int(code_size)
        self.variational = bool(variational)
        self.max_blocks = int(max_blocks)
        self.filters_range = (int(filters_range[0]), int(filters_range[1]))
        self.dense_range = (int(dense_range[0]), int(dense_range[1]))
        self.activations = tuple(activations)
        self.optimizers = tuple(optimizers)
        self.strides = tuple(int(s) for s in strides)
        self.lr_range = (float(lr_range[0]), float(lr_range[1]))
        self.evolve_beta = bool(evolve_beta)
        self.beta = float(beta)
        self.beta_range = (float(beta_range[0]), float(beta_range[1]))
        self.recon_loss = recon_loss
        self.sigma = float(sigma)
        self.batch_gene = bool(batch_gene)
        self.batch_choices = tuple(int(b) for b in batch_choices)
        self.batch_size = int(batch_size)
        self.free_bits = float(free_bits)
        self.kl_warmup = int(kl_warmup)
        self.collapse_penalty = float(collapse_penalty)
        self.binarize = str(binarize)
        self._genes = self._make_genes()

    def _make_genes(self) -> list[Gene]:
        acts, opts, strides = self.activations, self.optimizers, self.strides
        f_lo, f_hi = self.filters_range
        d_lo, d_hi = self.dense_range

        def choice(options: Sequence[Any]):
            return lambda rng: options[int(rng.integers(len(options)))]

        def block(rng: np.random.Generator) -> tuple[int, int, int, str, bool]:
            return (
                _log_int(rng, f_lo, f_hi),
                int(KERNELS[int(rng.integers(2))]),
                strides[int(rng.integers(len(strides)))],
                acts[int(rng.integers(len(acts)))],
                bool(rng.integers(2)),
            )

        def dense(rng: np.random.Generator) -> int:
            return 0 if rng.uniform() < 0.25 else _log_int(rng, d_lo, d_hi)

        block_domain = Parts(
            (
                Int(f_lo, f_hi, log=True),
                Choice(tuple(int(k) for k in KERNELS)),
                Choice(strides),
                Choice(acts),
                Choice((False, True)),
            )
        )
        genes = [
            Gene(
                "n_blocks",
                lambda rng: int(rng.integers(1, self.max_blocks + 1)),
                Int(1, self.max_blocks),
            )
        ]
        genes += [Gene(f"block_{i + 1}", block, block_domain) for i in range(self.max_blocks)]
        genes += [
            Gene("dense", dense, Int(0, d_hi)),
            Gene("optimizer", choice(opts), Choice(opts)),
            Gene("learning_rate", _log_float(*self.lr_range), Float(*self.lr_range, log=True)),
        ]
        if self.evolve_beta:
            genes.append(
                Gene("beta", _log_float(*self.beta_range), Float(*self.beta_range, log=True))
            )
        if self.batch_gene:
            genes.append(Gene("batch_size", choice(self.batch_choices), Choice(self.batch_choices)))
        return genes

    def decode(self, genome: Genome) -> dict[str, Any]:
        g = self.named(genome)
        n_blocks = min(max(int(g["n_blocks"]), 1), self.max_blocks)
        _, h, w = self.input_shape
        blocks: list[list[Any]] = []
        for i in range(n_blocks):
            filters, kernel, stride, act, bn = g[f"block_{i + 1}"]
            stride = int(stride)
            if stride == 2 and min(h, w) < MIN_DOWNSAMPLE_SIDE:
                stride = 1  # repair: the map is too small to halve again
            if stride == 2:
                h, w = math.ceil(h / 2), math.ceil(w / 2)
            blocks.append([int(filters), int(kernel), stride, str(act), bool(bn)])
        spec: dict[str, Any] = {
            "family": self.family,
            "input_shape": list(self.input_shape),
            "code_size": self.code_size,
            "blocks": blocks,
            "dense": int(g["dense"]),
            "variational": self.variational,
            "optimizer": g["optimizer"],
            "lr": float(g["learning_rate"]),
            "batch_size": int(g["batch_size"]) if self.batch_gene else self.batch_size,
        }
        if self.variational:
            spec["beta"] = float(g["beta"]) if self.evolve_beta else self.beta
            spec["recon_loss"] = self.recon_loss
            if self.recon_loss == "mse":
                spec["sigma"] = self.sigma
            for key, off in LEGACY.items():  # specs of runs before them stay as they were
                if getattr(self, key) != off:
                    spec[key] = getattr(self, key)
        return spec

    def config(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "input_shape": list(self.input_shape),
            "code_size": self.code_size,
            "variational": self.variational,
            "max_blocks": self.max_blocks,
            "filters_range": list(self.filters_range),
            "dense_range": list(self.dense_range),
            "activations": list(self.activations),
            "optimizers": list(self.optimizers),
            "strides": list(self.strides),
            "lr_range": list(self.lr_range),
            "evolve_beta": self.evolve_beta,
            "beta": self.beta,
            "beta_range": list(self.beta_range),
            "recon_loss": self.recon_loss,
            "sigma": self.sigma,
            "batch_gene": self.batch_gene,
            "batch_choices": list(self.batch_choices),
            "batch_size": self.batch_size,
            # Only when on: a space stored before them compares equal on resume.
            **{key: getattr(self, key) for key in LEGACY if getattr(self, key) != LEGACY[key]},
        }

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> ConvSpace:
        kw = {**LEGACY, **{k: v for k, v in cfg.items() if k != "family"}}
        for key in ("filters_range", "dense_range", "lr_range", "beta_range"):
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw)


def conv_preset(
    name: str, train: Any, code_size: int, *, variational: bool, **options: Any
) -> ConvSpace:
    """The conv space for a training :class:`~evoae.data.Dataset`.

    ``seed`` and ``extended`` both give the default space; ``max_depth`` (``--max-depth``)
    sets ``max_blocks``; other options (``space_options``) go to :class:`ConvSpace`.
    """
    if name not in ("seed", "extended"):
        raise EvoaeError(f"unknown preset {name!r}: choose 'seed' or 'extended'")
    if not train.is_image:
        raise EvoaeError(
            f"dataset {train.name!r} is tabular {tuple(train.x.shape)}, but conv models need "
            "images (N, C, H, W): use --model dense"
        )
    kw = {k: v for k, v in options.items() if v is not None}
    if "max_depth" in kw:
        kw["max_blocks"] = kw.pop("max_depth")
    return ConvSpace(train.image_shape, code_size, variational=variational, **kw)


def conv_vae_space(preset: str, train: Any, code_size: int, **options: Any) -> ConvSpace:
    """``--model conv-vae``."""
    return conv_preset(preset, train, code_size, variational=True, **options)


def conv_ae_space(preset: str, train: Any, code_size: int, **options: Any) -> ConvSpace:
    """``--model conv-ae``."""
    return conv_preset(preset, train, code_size, variational=False, **options)


def _log_int(rng: np.random.Generator, lo: int, hi: int) -> int:
    """An integer log-uniform in ``[lo, hi]``."""
    return int(min(hi, max(lo, round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))))


def _log_float(lo: float, hi: float):
    a, b = math.log(lo), math.log(hi)
    return lambda rng: float(math.exp(rng.uniform(a, b)))


def _check_vae(
    variational: bool, recon_loss: str, beta: float, sigma: float, binarize: str
) -> None:
    """The decoder's loss, its scales and the binarisation fit together."""
    if recon_loss not in RECON_LOSSES:
        raise EvoaeError(
            f"unknown reconstruction loss {recon_loss!r}: choose {' or '.join(RECON_LOSSES)}"
        )
    if not beta > 0 or not sigma > 0:
        raise EvoaeError(f"beta ({beta}) and sigma ({sigma}) must be positive")
    if binarize not in BINARIZE:
        raise EvoaeError(f"unknown binarize {binarize!r}: choose none or dynamic")
    if binarize == "dynamic" and not (variational and recon_loss == "bce"):
        raise EvoaeError(
            "dynamic binarisation needs a Bernoulli decoder: use --model conv-vae with "
            "the bce reconstruction loss"
        )


def _check_collapse(free_bits: Any, kl_warmup: Any, penalty: Any) -> None:
    for name, value, integer in (
        ("free bits", free_bits, False),
        ("KL warm-up", kl_warmup, True),
        ("collapse penalty", penalty, False),
    ):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value < 0 or (integer and value != int(value)):
            kind = "a whole number of steps" if integer else "a number of nats"
            raise EvoaeError(f"{name} must be {kind} >= 0, got {value!r}")


def _check_range(kind: str, r: Sequence[float], *, integer: bool = False) -> None:
    if len(r) != 2 or not 0 < r[0] <= r[1] or (integer and r[0] < 1):
        raise EvoaeError(f"{kind} range {tuple(r)} must satisfy 0 < low <= high")


def describe_conv(spec: dict[str, Any]) -> str:
    """``1x28x28 > conv32 k3 s2 relu bn > dense 256 > [20] VAE mirrored``: input shape,
    each block as filters, kernel, stride, activation (``bn``: batch norm), the optional
    dense layer, the latent size; the decoder mirrors the encoder."""
    shape = "x".join(str(v) for v in spec["input_shape"])
    blocks = [f"conv{f} k{k} s{s} {a}{' bn' if bn else ''}" for f, k, s, a, bn in spec["blocks"]]
    dense = [f"dense {spec['dense']}"] if spec.get("dense") else []
    kind = "VAE" if spec.get("variational", True) else "AE"
    return " > ".join([shape, *blocks, *dense, f"[{spec['code_size']}] {kind}"]) + " mirrored"
