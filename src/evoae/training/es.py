"""Weight-space neuroevolution of a fixed, trained architecture: OpenAI-ES and a deep GA.

Both search the flat vector of a model's parameters (buffers such as batch-norm
statistics stay fixed) and score a whole population in one batched forward pass:
parameters are stacked to ``(population, D)``, split into per-tensor views and run
through ``torch.func.functional_call`` under ``torch.vmap``. Models whose forward pass
cannot be vmapped (a VAE drawing noise from its own generator) fall back to one
functional call per individual.

* :func:`openai_es` (Salimans et al. 2017): antithetic Gaussian perturbations
  ``theta +- sigma * eps``, centred-rank fitness shaping, Adam on the estimated
  gradient, L2 weight decay.
* :func:`deep_ga` (Such et al. 2017): truncation selection, Gaussian mutation
  (``sigma`` ~ 0.002-0.005 for trained weights), elitism; each individual is its *seed
  chain* (:class:`Chain`: an initial seed, or None for the given trained weights, plus
  one seed per mutation), from which :func:`chain_weights` rebuilds its weights exactly.

What they optimise: by default the model's own loss on ``x`` (a seeded minibatch of
``batch_size`` rows per generation, or all of ``x``), optionally through ``transform``,
a function of the parameter dict applied before every evaluation, such as
:func:`fake_quant_int8` (ES then fine-tunes *for* quantised deployment: a gradient-free,
piecewise-constant objective); or any black-box ``fitness(model) -> float`` (lower is
better), evaluated one individual at a time. :func:`quantized_finetune` and
:func:`sgd_then_es` package the two main uses.

Library choice: ``evotorch`` 0.6.1 (on PyPI) requires ray, gymnasium, matplotlib,
pandas and cma, far too heavy for a core dependency; ``cmaes`` is light but implements
CMA-ES with a full covariance matrix, O(D^2) memory and time, infeasible for 10^4-10^5
weights. The two algorithms here are ~300 lines of torch with no new dependency.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from evoae.errors import EvoaeError
from evoae.families import build_model
from evoae.objectives.reconstruction import evaluate
from evoae.training.trainer import fit

Params = dict[str, torch.Tensor]
Transform = Callable[[Params], Params]


def _derive(*keys: int) -> int:
    state = np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1]))


# ---------------------------------------------------------------------- weights


class WeightVector:
    """The parameters of ``model`` as one flat float32 vector, and back."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        named = list(model.named_parameters())
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.dim = sum(self.sizes)

    def get(self) -> torch.Tensor:
        """A copy of the current parameters, flattened."""
        return torch.cat([p.detach().reshape(-1) for p in self.model.parameters()]).clone()

    @torch.no_grad()
    def set(self, theta: torch.Tensor) -> None:
        """Copy ``theta`` into the model's parameters."""
        for p, chunk in zip(self.model.parameters(), theta.split(self.sizes), strict=True):
            p.copy_(chunk.reshape(p.shape))

    def params(self, theta: torch.Tensor) -> Params:
        """Views of ``theta`` by parameter name (works on vmapped vectors)."""
        chunks = theta.split(self.sizes)
        return {n: c.reshape(s) for n, c, s in zip(self.names, chunks, self.shapes, strict=True)}


def fake_quant(params: Params, *, bits: int = 8, biases: bool = False) -> Params:
    """Per-tensor symmetric fake quantisation: ``round(w / s).clamp(+-L) * s``.

    ``L = 2**(bits-1) - 1`` (127 for int8) and ``s = max|w| / L`` per tensor. Weight
    tensors (2-D and up) are quantised; biases only with ``biases=True`` (integer
    inference usually keeps them at higher precision).
    """
    levels = 2 ** (int(bits) - 1) - 1
    if levels < 1:
        raise EvoaeError(f"quantisation needs at least 2 bits, got {bits}")
    out = {}
    for name, w in params.items():
        if w.ndim >= 2 or biases:
            scale = w.abs().amax().clamp_min(1e-12) / levels
            w = torch.round(w / scale).clamp(-levels, levels) * scale
        out[name] = w
    return out


def fake_quant_int8(params: Params) -> Params:
    """Per-tensor symmetric int8 fake quantisation of the weight tensors."""
    return fake_quant(params, bits=8)


def fake_quant_int4(params: Params) -> Params:
    """Per-tensor symmetric int4 fake quantisation of the weight tensors."""
    return fake_quant(params, bits=4)


@torch.no_grad()
def quantize_model_(model: nn.Module, transform: Transform = fake_quant_int8) -> nn.Module:
    """Replace ``model``'s parameters by their transformed (e.g. quantised) values."""
    wv = WeightVector(model)
    q = transform(wv.params(wv.get()))
    wv.set(torch.cat([q[n].reshape(-1) for n in wv.names]))
    return model


class _Scorer:
    """Scores stacked parameter vectors: batched model loss, or a black-box function."""

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor | None,
        fitness: Callable[[nn.Module], float] | None,
        transform: Transform | None,
        batch_size: int | None,
        chunk: int | None,
    ) -> None:
        if (x is None) == (fitness is None):
            raise EvoaeError("give either data x (the model's loss) or a fitness function")
        self.model = copy.deepcopy(model).eval()
        self.wv = WeightVector(self.model)
        self.buffers = dict(self.model.named_buffers())
        self.x, self.fitness, self.transform = x, fitness, transform
        self.batch_size, self.chunk = batch_size, chunk
        self.vmap_ok = True
        self.forwards = 0  # rows passed forward, summed over individuals

    def rows(self, generation: int, seed: int) -> torch.Tensor | None:
        """The evaluation rows of one generation (seeded minibatch or all of x)."""
        if self.x is None or self.batch_size is None or self.batch_size >= len(self.x):
            return self.x
        g = torch.Generator().manual_seed(_derive(seed, generation, 7))
        return self.x[torch.randperm(len(self.x), generator=g)[: self.batch_size]]

    def _params(self, theta: torch.Tensor) -> Params:
        p = self.wv.params(theta)
        return self.transform(p) if self.transform is not None else p

    def _loss(self, theta: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        out = functional_call(self.model, {**self._params(theta), **self.buffers}, (xb,))
        return out.loss

    @torch.no_grad()
    def __call__(self, thetas: torch.Tensor, xb: torch.Tensor | None) -> torch.Tensor:
        if self.fitness is not None:
            vals = []
            for theta in thetas:
                p = self._params(theta)
                self.wv.set(torch.cat([p[n].reshape(-1) for n in self.wv.names]))
                vals.append(float(self.fitness(self.model)))
            return torch.tensor(vals, dtype=torch.float64)
        assert xb is not None
        self.forwards += len(thetas) * len(xb)
        if self.vmap_ok:
            try:
                f = torch.vmap(self._loss, in_dims=(0, None), chunk_size=self.chunk)
                return f(thetas, xb).double()
            except RuntimeError:
                self.vmap_ok = False  # e.g. a VAE sampling noise from its own generator
        return torch.stack([self._loss(t, xb) for t in thetas]).double()

    def model_with(self, theta: torch.Tensor) -> nn.Module:
        """A copy of the model holding ``transform(theta)``."""
        m = copy.deepcopy(self.model)
        wv = WeightVector(m)
        p = self._params(theta)
        wv.set(torch.cat([p[n].reshape(-1) for n in wv.names]))
        return m.eval()


def _finite(f: torch.Tensor) -> torch.Tensor:
    """Non-finite losses become worse than every finite one."""
    return torch.where(torch.isfinite(f), f, torch.full_like(f, math.inf))


# ---------------------------------------------------------------------- OpenAI-ES


@dataclass
class ESResult:
    """The best weights found, as a model (``transform`` applied) and a vector."""

    model: nn.Module
    theta: torch.Tensor
    loss: float
    history: list[dict[str, Any]] = field(default_factory=list)
    forwards: int = 0


def centered_ranks(f: torch.Tensor) -> torch.Tensor:
    """Ranks of ``f`` scaled to ``[-0.5, 0.5]`` (ties broken by position)."""
    n = f.numel()
    ranks = torch.empty(n, dtype=torch.float64)
    ranks[torch.argsort(f, stable=True)] = torch.arange(n, dtype=torch.float64)
    return ranks / max(n - 1, 1) - 0.5


def _es_step(
    score: _Scorer,
    param: torch.Tensor,
    xb: Any,
    half: int,
    sigma: float,
    weight_decay: float,
    seed: int,
) -> torch.Tensor:
    """One antithetic generation around ``param``: sets ``param.grad`` (the rank-based
    gradient estimate plus L2) and returns the population's losses."""
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(half, score.wv.dim, generator=g)
    base = param.detach()
    pop = torch.cat([base + sigma * eps, base - sigma * eps])
    f = _finite(score(pop, xb))
    u = -centered_ranks(f)  # utility: lower loss, higher utility
    grad_up = ((u[:half] - u[half:]).float() @ eps) / (2 * half * sigma)
    param.grad = -grad_up + weight_decay * base
    return f


def openai_es(
    model: nn.Module,
    x: torch.Tensor | None = None,
    *,
    fitness: Callable[[nn.Module], float] | None = None,
    generations: int = 100,
    population: int = 50,
    sigma: float = 0.02,
    lr: float = 0.01,
    weight_decay: float = 0.005,
    batch_size: int | None = None,
    transform: Transform | None = None,
    keep_best: bool = True,
    chunk: int | None = None,
    seed: int = 0,
) -> ESResult:
    """OpenAI-ES over the weights of ``model`` (which is left unchanged).

    Parameters
    ----------
    model
        A trained (or freshly built) model; its architecture stays fixed.
    x, fitness
        Minimise the model's loss on ``x`` (batched), or ``fitness(model)``.
    generations, population
        Iterations, and individuals per iteration (rounded up to even: antithetic pairs).
    sigma, lr, weight_decay
        Perturbation scale, Adam step size, L2 coefficient added to the gradient.
    batch_size
        Rows of ``x`` per generation (seeded); None uses all of ``x``.
    transform
        Applied to the parameters before every evaluation (e.g. :func:`fake_quant_int8`).
    keep_best
        Return the best centre seen (the start included) instead of the last one.
    chunk
        ``vmap`` chunk size, to bound memory for large populations.
    seed
        Seeds the perturbations and minibatches.

    Returns
    -------
    ESResult
        ``history`` has one row per generation: ``generation``, ``center`` (the
        centre's loss before the step), ``mean``, ``best`` (population losses) and
        ``forwards`` (rows passed forward so far, centre evaluations included).
    """
    if population < 2 or generations < 0 or sigma <= 0:
        raise EvoaeError("openai_es needs population >= 2, generations >= 0 and sigma > 0")
    score = _Scorer(model, x, fitness, transform, batch_size, chunk)
    half = (population + 1) // 2
    theta = score.wv.get()
    param = theta.clone().requires_grad_(True)
    opt = torch.optim.Adam([param], lr=lr)
    best_theta, best_loss = theta.clone(), math.inf
    history: list[dict[str, Any]] = []
    for gen in range(generations + 1):
        xb = score.rows(gen, seed)
        center = float(score(param.detach()[None], xb)[0])
        if keep_best and center < best_loss:
            best_theta, best_loss = param.detach().clone(), center
        if gen == generations:
            break
        f = _es_step(score, param, xb, half, sigma, weight_decay, _derive(seed, gen))
        opt.step()
        finite = torch.isfinite(f)
        history.append(
            {
                "generation": gen,
                "center": center,
                "mean": float(f[finite].mean()) if finite.any() else None,
                "best": float(f.min()),
                "forwards": score.forwards,
            }
        )
    if not keep_best:
        best_theta, best_loss = param.detach().clone(), center
    return ESResult(score.model_with(best_theta), best_theta, best_loss, history, score.forwards)


# ---------------------------------------------------------------------- deep GA


@dataclass(frozen=True)
class Chain:
    """An individual as seeds: ``init`` (None: the given trained weights; else the
    ``build_model`` seed of fresh weights) then one seed per Gaussian mutation."""

    init: int | None
    mutations: tuple[int, ...] = ()

    def child(self, seed: int) -> Chain:
        return Chain(self.init, (*self.mutations, int(seed)))

    def to_json(self) -> dict[str, Any]:
        return {"init": self.init, "mutations": list(self.mutations)}


def _mutate(theta: torch.Tensor, seed: int, sigma: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(seed))
    return theta + sigma * torch.randn(theta.numel(), generator=g)


def chain_weights(
    chain: Chain, sigma: float, *, base: nn.Module | None = None, spec: dict | None = None
) -> torch.Tensor:
    """Rebuild an individual's flat weights from its seed chain, exactly.

    ``base`` supplies the trained weights when ``chain.init`` is None, ``spec`` the
    architecture to draw fresh weights from otherwise.
    """
    if chain.init is None:
        if base is None:
            raise EvoaeError("a chain starting from trained weights needs base=model")
        theta = WeightVector(base).get()
    else:
        if spec is None:
            raise EvoaeError("a chain starting from a seed needs spec=")
        theta = WeightVector(build_model(spec, chain.init)).get()
    for s in chain.mutations:
        theta = _mutate(theta, s, sigma)
    return theta


@dataclass
class GAResult:
    """The best individual: model (``transform`` applied), weights, seed chain."""

    model: nn.Module
    theta: torch.Tensor
    chain: Chain
    loss: float
    history: list[dict[str, Any]] = field(default_factory=list)
    forwards: int = 0


def deep_ga(
    model: nn.Module,
    x: torch.Tensor | None = None,
    *,
    fitness: Callable[[nn.Module], float] | None = None,
    generations: int = 50,
    population: int = 50,
    truncation: int = 10,
    sigma: float = 0.003,
    elites: int = 1,
    batch_size: int | None = None,
    transform: Transform | None = None,
    from_scratch: bool = False,
    chunk: int | None = None,
    seed: int = 0,
) -> GAResult:
    """A deep GA over the weights of ``model``'s architecture.

    Starts from ``model``'s weights (the unmutated start is one individual), or with
    ``from_scratch`` from ``population`` fresh ``build_model(model.spec, seed_i)``
    initialisations. Each generation keeps the ``elites`` best unchanged and fills the
    rest with mutated copies of parents drawn uniformly from the ``truncation`` best.
    Arguments otherwise as :func:`openai_es`. The last generation is scored, so the
    returned loss is the best individual's on the last evaluation rows.
    """
    if not 1 <= elites <= truncation <= population or generations < 0 or sigma <= 0:
        raise EvoaeError("deep_ga needs 1 <= elites <= truncation <= population and sigma > 0")
    score = _Scorer(model, x, fitness, transform, batch_size, chunk)
    spec = getattr(model, "spec", None)
    if from_scratch:
        if spec is None:
            raise EvoaeError("from_scratch needs a model built from a spec")
        chains = [Chain(_derive(seed, 0, i)) for i in range(population)]
        thetas = torch.stack([chain_weights(c, sigma, spec=spec) for c in chains])
    else:
        rng = np.random.default_rng(_derive(seed, 0))
        base = score.wv.get()
        chains = [Chain(None)] + [
            Chain(None, (int(rng.integers(2**63)),)) for _ in range(population - 1)
        ]
        thetas = torch.stack([base] + [_mutate(base, c.mutations[0], sigma) for c in chains[1:]])
    history: list[dict[str, Any]] = []
    for gen in range(generations + 1):
        f = _finite(score(thetas, score.rows(gen, seed)))
        order = torch.argsort(f, stable=True).tolist()
        history.append(
            {
                "generation": gen,
                "best": float(f[order[0]]),
                "median": float(f.median()),
                "forwards": score.forwards,
                "best_chain": chains[order[0]].to_json(),
            }
        )
        if gen == generations:
            break
        rng = np.random.default_rng(_derive(seed, gen + 1))
        parents = order[:truncation]
        new_chains = [chains[i] for i in order[:elites]]
        new_thetas = [thetas[i] for i in order[:elites]]
        for _ in range(population - elites):
            p = parents[int(rng.integers(len(parents)))]
            ms = int(rng.integers(2**63))
            new_chains.append(chains[p].child(ms))
            new_thetas.append(_mutate(thetas[p], ms, sigma))
        chains, thetas = new_chains, torch.stack(new_thetas)
    best = order[0]
    return GAResult(
        score.model_with(thetas[best]),
        thetas[best].clone(),
        chains[best],
        float(f[best]),
        history,
        score.forwards,
    )


# ---------------------------------------------------------------------- uses


@dataclass
class QuantResult:
    """Losses of the float model, its plain int8 quantisation, and after fine-tuning."""

    model: nn.Module
    float_loss: float
    quant_loss: float
    tuned_loss: float
    search: ESResult | GAResult

    @property
    def recovered(self) -> float:
        """Fraction of the quantisation loss (quant - float) that fine-tuning won back."""
        gap = self.quant_loss - self.float_loss
        return (self.quant_loss - self.tuned_loss) / gap if gap > 0 else math.nan


def quantized_finetune(
    model: nn.Module,
    x: torch.Tensor,
    x_eval: torch.Tensor | None = None,
    *,
    method: str = "es",
    transform: Transform = fake_quant_int8,
    **options: Any,
) -> QuantResult:
    """Fine-tune ``model`` for int8 deployment with ES (or the GA) on ``x``.

    Every evaluation quantises (``transform``), so the search optimises the quantised
    model's loss directly. Returns the quantised, fine-tuned model and the loss on
    ``x_eval`` (default ``x``) of the float model, the plain quantised model and the
    fine-tuned one. ``options`` go to :func:`openai_es` or :func:`deep_ga`.
    """
    xe = x if x_eval is None else x_eval
    float_loss = evaluate(model, xe)["loss"]
    quant_loss = evaluate(quantize_model_(copy.deepcopy(model), transform), xe)["loss"]
    if method == "es":
        options.setdefault("weight_decay", 0.0)
        res: ESResult | GAResult = openai_es(model, x, transform=transform, **options)
    elif method == "ga":
        res = deep_ga(model, x, transform=transform, **options)
    else:
        raise EvoaeError(f"unknown method {method!r}: choose es or ga")
    tuned = evaluate(res.model, xe)["loss"]
    if tuned > quant_loss:  # never ship something worse than plain quantisation
        res.model, tuned = quantize_model_(copy.deepcopy(model), transform), quant_loss
    return QuantResult(res.model, float_loss, quant_loss, tuned, res)


def sgd_then_es(
    spec: dict[str, Any],
    x_train: torch.Tensor,
    x_val: torch.Tensor,
    *,
    epochs: int,
    seed: int = 0,
    **es_options: Any,
) -> tuple[nn.Module, dict[str, float], ESResult]:
    """Hybrid training: SGD (the spec's optimizer) for ``epochs``, then ES fine-tuning.

    ES runs on ``x_train``; the fine-tuned weights are kept only if they lower the loss
    on ``x_val``. Returns the model, ``{"sgd_val": ..., "es_val": ...}`` and the ES run.
    """
    model = build_model(spec, seed)
    fit(
        model,
        x_train,
        epochs=epochs,
        batch_size=int(spec["batch_size"]),
        optimizer=spec["optimizer"],
        lr=float(spec["lr"]),
        seed=seed,
    )
    sgd_val = evaluate(model, x_val)["loss"]
    res = openai_es(model, x_train, seed=seed, **es_options)
    es_val = evaluate(res.model, x_val)["loss"]
    best = res.model if es_val < sgd_val else model.eval()
    return best, {"sgd_val": sgd_val, "es_val": es_val}, res


__all__ = [
    "Chain",
    "ESResult",
    "GAResult",
    "QuantResult",
    "WeightVector",
    "centered_ranks",
    "chain_weights",
    "deep_ga",
    "fake_quant",
    "fake_quant_int4",
    "fake_quant_int8",
    "openai_es",
    "quantize_model_",
    "quantized_finetune",
    "sgd_then_es",
]
