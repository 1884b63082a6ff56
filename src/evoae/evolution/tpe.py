"""Optuna's samplers (TPE by default) behind the ask/tell interface: ``--strategy tpe``.

Optuna is an optional dependency (``pip install evoae[optuna]``), imported only when
this strategy is built. Each gene maps to Optuna distributions through its
:attr:`~evoae.spaces.Gene.domain`: a float (log-scaled for learning rates), an integer,
a categorical, or a tuple of those (the dense space's hidden genes are a ratio and an
activation, suggested as ``hidden_1.0`` and ``hidden_1.1``).

Exact resume: the strategy keeps only the told trials (parameters, value, the sampler's
system attributes). Every :meth:`~OptunaSearch.ask` builds a fresh in-memory study from
them, with the sampler seeded from (run seed, trials told so far), so the next batch is
a pure function of the told history: a resumed run asks exactly what the uninterrupted
one did. ``optuna_sampler`` names one of :data:`SAMPLERS`, the samplers of
:mod:`optuna.samplers` built from a ``seed`` alone (``TPESampler``, ``RandomSampler``,
``CmaEsSampler``, ``NSGAIISampler``, ``NSGAIIISampler``, ``QMCSampler``, ``GPSampler``).
Failed candidates are told as failed trials.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evoae.errors import EvoaeError
from evoae.evolution.base import Strategy, dec, enc
from evoae.options import option
from evoae.spaces import Choice, Float, Genome, Int, Parts, Space

#: The samplers of :mod:`optuna.samplers` that ``--optuna-sampler`` accepts (they are
#: built from a seed alone and sample float, integer and categorical domains), with the
#: packages each imports lazily.
SAMPLERS: dict[str, tuple[str, ...]] = {
    "TPESampler": (),
    "RandomSampler": (),
    "CmaEsSampler": ("cmaes",),
    "NSGAIISampler": (),
    "NSGAIIISampler": (),
    "QMCSampler": ("scipy",),
    "GPSampler": ("scipy",),
}


@dataclass
class OptunaOptions:
    """Settings of the Optuna strategy."""

    optuna_sampler: str = option("TPESampler", "Optuna sampler class (default settings, seeded)")
    evaluations: int = option(
        120,
        "candidates to evaluate (120 = the seed preset's compute)",
        low=1,
        high=10_000_000,
        grows=True,
        short="-e",
    )
    batch: int = option(1, "candidates asked for at once (for parallel executors)", low=1)
    multivariate: bool = option(
        True,
        "TPESampler: model the genes jointly (multivariate TPE, Optuna 5's default); "
        "--no-multivariate: one by one (independent TPE, Optuna 4's default)",
        legacy=True,
    )


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise EvoaeError(
            "strategy tpe needs Optuna: pip install 'evoae[optuna]' (or optuna>=4)"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


class OptunaSearch(Strategy):
    """An Optuna sampler over the space's gene domains, rebuilt from the told trials."""

    name = "tpe"
    unit = "evaluations"
    Options = OptunaOptions

    def __init__(
        self, space: Space, options: OptunaOptions | None = None, *, seed: int = 0, **kw: Any
    ) -> None:
        super().__init__(space, options, seed=seed, **kw)
        options = self.options
        self.optuna = _optuna()
        name = options.optuna_sampler
        cls = getattr(self.optuna.samplers, name, None)
        if name not in SAMPLERS or not isinstance(cls, type):
            raise EvoaeError(
                f"unknown Optuna sampler {name!r}: choose from {', '.join(SAMPLERS)} "
                "(samplers that take only a seed and handle every gene domain)"
            )
        if not options.multivariate and name != "TPESampler":
            raise EvoaeError(
                f"--no-multivariate applies to the TPESampler, not {name}: leave it out"
            )
        missing = [m for m in SAMPLERS[name] if importlib.util.find_spec(m) is None]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cls(seed=0)
        except ImportError as e:
            missing = missing or [e.name or "a missing package"]
        if missing:  # CmaEsSampler imports cmaes only when it first samples
            raise EvoaeError(
                f"Optuna sampler {name} needs {', '.join(missing)}: "
                "install it or choose another sampler"
            )
        self.sampler_class = cls
        self.seed = int(seed)
        self.distributions = self._distributions()
        #: Told trials: {"params", "value" (None when failed), "system_attrs"}.
        self.trials: list[dict[str, Any]] = []
        self._pending: tuple[Any, list[Any]] | None = None

    def _sampler_kwargs(self) -> dict[str, Any]:
        """Options passed to the sampler besides its seed (explicit: Optuna 4 and 5
        differ in TPE's default, and a run must sample the same on both)."""
        if self.sampler_class.__name__ != "TPESampler":
            return {}
        return {"multivariate": bool(self.options.multivariate)}

    # ------------------------------------------------------------ genes <-> params

    def _distributions(self) -> dict[str, Any]:
        d = self.optuna.distributions
        out: dict[str, Any] = {}
        for gene in self.space.genes:
            if gene.domain is None:
                raise EvoaeError(
                    f"gene {gene.name!r} of the {self.space.family} space declares no domain: "
                    "strategy tpe needs every gene's domain"
                )
            parts = gene.domain.parts if isinstance(gene.domain, Parts) else (gene.domain,)
            for j, dom in enumerate(parts):
                key = f"{gene.name}.{j}" if isinstance(gene.domain, Parts) else gene.name
                if isinstance(dom, Float):
                    out[key] = d.FloatDistribution(dom.low, dom.high, log=dom.log)
                elif isinstance(dom, Int):
                    out[key] = d.IntDistribution(dom.low, dom.high, log=dom.log)
                elif isinstance(dom, Choice):
                    out[key] = d.CategoricalDistribution(dom.options)
                else:
                    raise EvoaeError(f"gene {gene.name!r}: unsupported domain {dom!r}")
        return out

    def _genome(self, params: dict[str, Any]) -> Genome:
        values = []
        for gene in self.space.genes:
            if isinstance(gene.domain, Parts):
                n = len(gene.domain.parts)
                values.append(tuple(params[f"{gene.name}.{j}"] for j in range(n)))
            else:
                values.append(params[gene.name])
        return self.space.validate(tuple(values))

    def _params(self, genome: Genome) -> dict[str, Any]:
        """The inverse of :meth:`_genome`: one Optuna parameter per gene (or part)."""
        out: dict[str, Any] = {}
        for gene, value in zip(self.space.genes, genome, strict=True):
            if isinstance(gene.domain, Parts):
                out.update({f"{gene.name}.{j}": v for j, v in enumerate(value)})
            else:
                out[gene.name] = value
        return out

    # ------------------------------------------------------------ ask / tell

    def _study(self) -> Any:
        """A fresh study holding the told trials, its sampler seeded from their count."""
        optuna = self.optuna
        seed = int(np.random.SeedSequence([self.seed, len(self.trials)]).generate_state(1)[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental-feature warnings of some samplers
            sampler = self.sampler_class(seed=seed, **self._sampler_kwargs())
            study = optuna.create_study(sampler=sampler, direction="minimize")
            for t in self.trials:
                failed = t["value"] is None
                study.add_trial(
                    optuna.trial.create_trial(
                        state=optuna.trial.TrialState.FAIL
                        if failed
                        else optuna.trial.TrialState.COMPLETE,
                        value=None if failed else dec(t["value"]),
                        params=t["params"],
                        distributions=self.distributions,
                        system_attrs=t["system_attrs"],
                    )
                )
        return study

    @property
    def done(self) -> bool:
        return len(self.trials) >= self.options.evaluations

    def progress(self) -> tuple[int, int]:
        return len(self.trials), self.options.evaluations

    def ask(self) -> list[Genome]:
        if self._pending is not None:
            raise RuntimeError("ask() called twice without tell()")
        n = min(self.options.batch, self.options.evaluations - len(self.trials))
        study = self._study()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if not self.trials:  # the space's seed genomes (the PCA seed) come first
                for genome in self.seeds[:n]:
                    study.enqueue_trial(self._params(genome))
            trials = [study.ask(self.distributions) for _ in range(n)]
        self._pending = (study, trials)
        return [self._genome(t.params) for t in trials]

    def tell(self, genomes: Sequence[Genome], fitness: Sequence[Any]) -> None:
        if self._pending is None:
            raise RuntimeError("tell() called without ask()")
        study, trials = self._pending
        self._pending = None
        if len(fitness) != len(trials) or len(genomes) != len(trials):
            raise ValueError("one fitness value per asked genome is needed")
        optuna = self.optuna
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for trial, f in zip(trials, fitness, strict=True):
                f = float(f)
                if math.isfinite(f):
                    study.tell(trial, f)
                else:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
        for trial, f in zip(trials, fitness, strict=True):
            frozen = study.trials[trial.number]
            self.trials.append(
                {
                    "params": dict(frozen.params),
                    "value": enc(float(f)) if math.isfinite(float(f)) else None,
                    "system_attrs": _json_only(frozen.system_attrs),
                }
            )

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "trials": self.trials}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        trials = [dict(t) for t in state["trials"]]
        optuna = self.optuna
        for i, t in enumerate(trials):
            value = t.get("value")
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise ValueError(f"trial {i}: value {value!r} is not a finite number or null")
            if not isinstance(t.get("params"), dict) or not isinstance(t.get("system_attrs"), dict):
                raise ValueError(f"trial {i}: params and system_attrs must be objects")
            if set(t["params"]) != set(self.distributions):
                raise ValueError(f"trial {i}: its parameters are not this space's genes")
            # Optuna's own check: every parameter inside its distribution.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                optuna.trial.create_trial(
                    state=optuna.trial.TrialState.FAIL,
                    params=t["params"],
                    distributions=self.distributions,
                )
        self.trials = trials
        self._pending = None


def _json_only(attrs: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able system attributes (Optuna's own storages require them to be)."""
    import json

    out = {}
    for k, v in attrs.items():
        try:
            out[k] = json.loads(json.dumps(v))
        except (TypeError, ValueError):
            continue
    return out
