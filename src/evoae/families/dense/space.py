"""The dense symmetric-autoencoder space of the published GA, and its extensions.

Genome layout (one gene = one unit of crossover and mutation)::

    hidden_1 .. hidden_H   (ratio in [0, max_ratio), activation)
    code_activation        activation of the code layer (its width is the user's code size)
    output_activation      activation of the decoder's output layer
    optimizer              optimizer name
    learning_rate          only with ``lr_gene``: log-uniform in ``lr_range``
    batch_size             only with ``batch_gene``: one of ``batch_choices``

Layer-removal rule (decoding): widths are computed left to right from the input width.
Hidden gene *i* gives ``w = floor(ratio * prev + 0.5)`` where ``prev`` is the width of the
last *kept* layer (the input at first). If ``w`` is below the code size (which includes
``w == 0``) the layer is removed and ``prev`` stays as it was, so the next gene scales
from the last kept layer. With ``max_ratio > 1`` a layer may be wider than the one before
it (overcomplete, as in hand designs like 256-512-256-128-4); widths are then capped at
``ceil(max_ratio * input_dim)``. Kept layers keep their own activation. The decoder mirrors the
kept encoder layers in reverse with the same activations, then an output layer of the
input width with ``output_activation``.

PCA seed (``pca_init=True``, the default of new searches): a genome that decodes to no
hidden layer with linear code and output activations is the linear autoencoder that
contains PCA's solution; its spec says ``"init": "pca"`` and the trainer initialises it
from PCA of the training split, so it starts at PCA's reconstruction error.
:meth:`DenseSpace.seed_genomes` offers one such genome (all hidden ratios 0, Adam) for
the strategies' first batch.

PCA-residual candidates (``residual=True``, the default of new searches): a genome with
hidden layers decodes to a spec with ``"init": "pca-residual"``: the model adds a linear
path initialised from PCA of the training split to the evolved layers, which become
branches whose last layer starts at zero (encoder ``z = P^T (x - mu) + e(x)``, decoder
``x_hat = mu + P z + d(z)``, see :mod:`evoae.families.dense.model`). Every such
candidate starts at PCA's reconstruction error, so short trainings rank improvements
over PCA rather than distances from a random start. The code and output of a residual
model are linear (an activation there would bend PCA's path: ``sigmoid(P^T x)`` is not
PCA), so its spec says ``linear`` for both whatever those genes hold; the evolved
activations act inside the branches. A genome without hidden layers has no branch: it
decodes as without the option.

Where the published notebook differs from the paper, evoae follows the paper: every
hidden gene's ratio is used (the notebook ignores the first), and the code layer uses
the code gene's activation (the notebook reuses the last hidden activation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from evoae.errors import EvoaeError
from evoae.spaces.base import (
    OPTIMIZERS,
    PCA_RESIDUAL,
    Choice,
    Float,
    Gene,
    Genome,
    Parts,
    Space,
    check_names,
)

if TYPE_CHECKING:  # numpy only types the samplers: reading specs stays light
    import numpy as np

SEED_ACTIVATIONS = ("tanh", "softmax", "relu", "sigmoid", "linear")
EXTRA_ACTIVATIONS = ("elu", "gelu", "leaky_relu")
ACTIVATIONS = SEED_ACTIVATIONS + EXTRA_ACTIVATIONS
SEED_OPTIMIZERS = ("sgd", "adam")
#: The keyword options of :class:`DenseSpace` (what ``space_options`` may set).
OPTIONS = (
    "max_depth",
    "activations",
    "optimizers",
    "lr_gene",
    "lr_range",
    "batch_gene",
    "batch_choices",
    "batch_size",
    "pca_init",
    "max_ratio",
    "residual",
)

#: Largest ``max_ratio``: a hidden layer at most this many times wider than the one before.
MAX_RATIO = 8.0
#: Keras defaults, which the published code used.
DEFAULT_LR = {"sgd": 0.01, "adam": 0.001, "adamw": 0.001}


class DenseSpace(Space):
    """Symmetric undercomplete dense autoencoders for inputs of ``input_dim`` features.

    Parameters
    ----------
    input_dim, code_size
        Input width and the code (latent) width the user wants; ``code_size < input_dim``.
    max_depth
        Number of hidden genes H (the paper uses 3).
    activations, optimizers
        The choices for activation and optimizer genes.
    lr_gene, lr_range
        Evolve the learning rate (log-uniform in ``lr_range``); else Keras defaults.
    batch_gene, batch_choices, batch_size
        Evolve the batch size among ``batch_choices``; else use ``batch_size``.
    pca_init
        Linear genomes without hidden layers decode to ``"init": "pca"`` specs, and
        :meth:`seed_genomes` offers one (see the module docstring).
    max_ratio
        Hidden ratios are drawn in ``[0, max_ratio)``: 1.0 (the published space) keeps
        every layer at most as wide as the one before; 2.0 allows doubling.
    residual
        Genomes with hidden layers decode to PCA-residual specs (``"init":
        "pca-residual"``, linear code and output); those without decode as before (see
        the module docstring).
    """

    family = "dense"

    def __init__(
        self,
        input_dim: int,
        code_size: int,
        *,
        max_depth: int = 3,
        activations: Sequence[str] = SEED_ACTIVATIONS,
        optimizers: Sequence[str] = SEED_OPTIMIZERS,
        lr_gene: bool = False,
        lr_range: tuple[float, float] = (1e-4, 1e-1),
        batch_gene: bool = False,
        batch_choices: Sequence[int] = (16, 32, 64, 128),
        batch_size: int = 32,
        pca_init: bool = False,
        max_ratio: float = 1.0,
        residual: bool = False,
    ) -> None:
        if input_dim < 2:
            raise EvoaeError(
                f"input has {input_dim} feature(s): a dense autoencoder needs at least 2"
            )
        if not 1 <= code_size < input_dim:
            raise EvoaeError(
                f"code size {code_size} must be between 1 and the input size minus one "
                f"({input_dim - 1}): an undercomplete autoencoder compresses its input"
            )
        if max_depth < 0:
            raise EvoaeError(f"max depth must be 0 or more, got {max_depth}")
        check_names("activation", activations, ACTIVATIONS)
        check_names("optimizer", optimizers, OPTIMIZERS)
        try:
            lo, hi = (float(v) for v in lr_range)
        except (TypeError, ValueError):
            raise EvoaeError(
                f"learning-rate range must be two numbers (low, high), got {lr_range!r}"
            ) from None
        if not 0 < lo <= hi:
            raise EvoaeError(f"learning-rate range {lr_range} must satisfy 0 < low <= high")
        if batch_size < 1 or any(b < 1 for b in batch_choices) or not batch_choices:
            raise EvoaeError("batch sizes must be positive integers")
        if not 0.0 < float(max_ratio) <= MAX_RATIO:
            raise EvoaeError(f"max ratio must be in (0, {MAX_RATIO:g}], got {max_ratio!r}")
        self.max_ratio = float(max_ratio)
        self.input_dim = int(input_dim)
        self.code_size = int(code_size)
        self.max_depth = int(max_depth)
        self.activations = tuple(activations)
        self.optimizers = tuple(optimizers)
        self.lr_gene = bool(lr_gene)
        self.lr_range = (float(lo), float(hi))
        self.batch_gene = bool(batch_gene)
        self.batch_choices = tuple(int(b) for b in batch_choices)
        self.batch_size = int(batch_size)
        self.pca_init = bool(pca_init)
        self.residual = bool(residual)
        self._genes = self._make_genes()

    def _make_genes(self) -> list[Gene]:
        acts, opts = self.activations, self.optimizers

        top = self.max_ratio

        def hidden(rng: np.random.Generator) -> tuple[float, str]:
            return (float(rng.uniform(0.0, top)), acts[int(rng.integers(len(acts)))])

        def choice(options: Sequence[Any]):
            return lambda rng: options[int(rng.integers(len(options)))]

        hidden_domain = Parts((Float(0.0, top), Choice(acts)))
        genes = [Gene(f"hidden_{i + 1}", hidden, hidden_domain) for i in range(self.max_depth)]
        genes += [
            Gene("code_activation", choice(acts), Choice(acts)),
            Gene("output_activation", choice(acts), Choice(acts)),
            Gene("optimizer", choice(opts), Choice(opts)),
        ]
        if self.lr_gene:
            lo, hi = math.log(self.lr_range[0]), math.log(self.lr_range[1])
            genes.append(
                Gene(
                    "learning_rate",
                    lambda rng: float(math.exp(rng.uniform(lo, hi))),
                    Float(*self.lr_range, log=True),
                )
            )
        if self.batch_gene:
            genes.append(Gene("batch_size", choice(self.batch_choices), Choice(self.batch_choices)))
        return genes

    def decode(self, genome: Genome) -> dict[str, Any]:
        g = self.named(genome)
        hidden: list[list[Any]] = []
        prev = self.input_dim
        cap = math.ceil(self.max_ratio * self.input_dim)
        for i in range(self.max_depth):
            ratio, act = g[f"hidden_{i + 1}"]
            width = min(math.floor(float(ratio) * prev + 0.5), cap)
            if width < self.code_size:
                continue
            hidden.append([width, act])
            prev = width
        optimizer = g["optimizer"]
        spec = {
            "family": self.family,
            "input_dim": self.input_dim,
            "code_size": self.code_size,
            "hidden": hidden,
            "code_activation": g["code_activation"],
            "output_activation": g["output_activation"],
            "optimizer": optimizer,
            "lr": float(g["learning_rate"]) if self.lr_gene else DEFAULT_LR[optimizer],
            "batch_size": int(g["batch_size"]) if self.batch_gene else self.batch_size,
        }
        if self.residual and hidden:
            spec["code_activation"] = spec["output_activation"] = "linear"
            spec["init"] = PCA_RESIDUAL
        elif self.pca_init and is_pca_shape(spec):
            spec["init"] = "pca"
        return spec

    def morph(self, genome: Genome, rng: np.random.Generator) -> Genome | None:
        """Widen, deepen, re-activate or retune ``genome`` by one step
        (:mod:`evoae.families.dense.morph`), or None when none applies."""
        from evoae.families.dense.morph import morph_genome

        done = morph_genome(self, genome, rng)
        return None if done is None else done[1]

    def pca_genome(self) -> Genome:
        """The linear autoencoder without hidden layers (PCA's shape), trained with Adam
        (else the first optimizer) at its default rate, batch 32 where it can."""
        genes: list[Any] = [(0.0, "linear")] * self.max_depth
        genes += ["linear", "linear"]
        optimizer = "adam" if "adam" in self.optimizers else self.optimizers[0]
        genes.append(optimizer)
        if self.lr_gene:
            genes.append(float(min(max(DEFAULT_LR[optimizer], self.lr_range[0]), self.lr_range[1])))
        if self.batch_gene:
            choices = self.batch_choices
            genes.append(32 if 32 in choices else min(choices, key=lambda b: abs(b - 32)))
        return tuple(genes)

    def pca_spec(self) -> dict[str, Any]:
        """The spec of :meth:`pca_genome`, always PCA-initialised."""
        return {**self.decode(self.pca_genome()), "init": "pca"}

    def seed_genomes(self) -> list[Genome]:
        """The PCA seed when ``pca_init`` is on and ``linear`` is among the activations
        (a user who left it out gets no linear candidate; the fallback still applies)."""
        return [self.pca_genome()] if self.pca_init and "linear" in self.activations else []

    def config(self) -> dict[str, Any]:
        cfg = {
            "family": self.family,
            "input_dim": self.input_dim,
            "code_size": self.code_size,
            "max_depth": self.max_depth,
            "activations": list(self.activations),
            "optimizers": list(self.optimizers),
            "lr_gene": self.lr_gene,
            "lr_range": list(self.lr_range),
            "batch_gene": self.batch_gene,
            "batch_choices": list(self.batch_choices),
            "batch_size": self.batch_size,
            # Only when on, so the configs of runs made before the option stay equal.
            **({"pca_init": True} if self.pca_init else {}),
        }
        if self.max_ratio != 1.0:  # absent for the published space: older runs still match
            cfg["max_ratio"] = self.max_ratio
        if self.residual:  # likewise: runs made before the option decode as they did
            cfg["residual"] = True
        return cfg

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> DenseSpace:
        kw = {k: v for k, v in cfg.items() if k != "family"}
        kw["lr_range"] = tuple(kw.get("lr_range", (1e-4, 1e-1)))
        return cls(**kw)


def dense_preset(name: str, input_dim: int, code_size: int, **overrides: Any) -> DenseSpace:
    """The ``seed`` space (exactly as published) or the ``extended`` one."""
    if name == "seed":
        kw: dict[str, Any] = {}
    elif name == "extended":
        kw = dict(
            max_depth=4,
            activations=ACTIVATIONS,
            optimizers=OPTIMIZERS,
            lr_gene=True,
            batch_gene=True,
        )
    else:
        raise EvoaeError(f"unknown preset {name!r}: choose 'seed' or 'extended'")
    unknown = sorted(set(overrides) - set(OPTIONS))
    if unknown:
        raise EvoaeError(
            f"unknown dense space option {unknown[0]!r}: choose from {', '.join(OPTIONS)}"
        )
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return DenseSpace(input_dim, code_size, **kw)


def is_pca_shape(spec: dict[str, Any]) -> bool:
    """No hidden layer, linear code and output: the autoencoder that contains PCA."""
    linear = spec["code_activation"] == spec["output_activation"] == "linear"
    return not spec["hidden"] and linear


def is_residual(spec: dict[str, Any]) -> bool:
    """A PCA-residual spec: a linear path from PCA plus evolved branches (the module
    docstring); trainers that only know the plain form must leave it to autograd."""
    return spec.get("init") == PCA_RESIDUAL


def describe_dense(spec: dict[str, Any]) -> str:
    """``64 > 55 relu > 40 tanh > [4 linear] mirrored, out sigmoid``: the encoder's widths
    and activations, the code in brackets; the decoder mirrors the encoder."""
    enc = [f"{w} {a}" for w, a in spec["hidden"]]
    code = f"[{spec['code_size']} {spec['code_activation']}]"
    init = {"pca": ", PCA init", PCA_RESIDUAL: ", PCA residual"}.get(spec.get("init"), "")
    return " > ".join([str(spec["input_dim"]), *enc, code]) + (
        f" mirrored, out {spec['output_activation']}{init}"
    )
