"""A search's settings, nested by layer: data, space, strategy, training, execution.

Each section is a dataclass of declared options (:func:`evoae.options.option`); the
strategy's own options come from its registered class. The CLI's flags and help, the
checks and the resume rules are all generated from these declarations. Settings are
stored (``settings.json`` and the journal) in nested form; runs of evoae 0.1 stored
them flat, and :meth:`SearchSettings.from_dict` still reads those.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import KeysView
from dataclasses import asdict, dataclass, field
from typing import Any

from evoae import evolution
from evoae.data import load_splits
from evoae.errors import EvoaeError
from evoae.evolution import DEFAULT_STRATEGY, LEGACY_STRATEGY
from evoae.evolution.asha import rung_epochs
from evoae.execution import EXECUTORS
from evoae.families import FAMILIES
from evoae.families.dense.space import MAX_RATIO
from evoae.objectives import OBJECTIVES
from evoae.options import build, check, default_of, options_of, with_legacy
from evoae.options import option as opt
from evoae.seeds import check_seed
from evoae.spaces.base import OPTIMIZERS

#: Largest side of an image after resizing, and most hidden genes or conv blocks.
MAX_IMAGE_SIZE = 1024
MAX_DEPTH = 64
MAX_CODE_SIZE = 65_536
#: Most epochs a candidate or the final training may ask for.
MAX_EPOCHS = 100_000
#: Space settings of VAE families (a family declares them in ``Family.space_options``).
VAE_OPTIONS = ("free_bits", "kl_warmup", "collapse_penalty")
#: Most copies --final-pbt trains.
MAX_PBT_COPIES = 1024


@dataclass
class DataSettings:
    """Which data, how it is resized and split."""

    dataset: str = opt(
        "digits",
        "digits (bundled), mnist, fashion-mnist, or a .npy/.npz/.csv path",
        short="-d",
    )
    data_dir: str | None = opt(
        None,
        "folder holding mnist/ and fashion-mnist/ IDX files",
        default_text="$EVOAE_DATA_DIR or ~/.cache/evoae/data",
        kind=str,
    )
    image_size: int | None = opt(
        None,
        "resize images to SIZE x SIZE",
        low=1,
        high=MAX_IMAGE_SIZE,
        default_text="16 for MNIST-like data, else native",
        kind=int,
    )
    limit: int | None = opt(
        None,
        "use only the first N rows of the training pool",
        low=1,
        kind=int,
        default_text="all",
    )
    split: str = opt(
        "auto",
        "seed: the published 10,000/5,000 split; random: seeded 70/15/15; "
        "auto: seed for MNIST-like data",
        choices=("auto", "seed", "random"),
    )
    download: bool = opt(
        False,
        "fetch missing MNIST / Fashion-MNIST files into --data-dir (MD5-checked)",
        resumable=True,
    )
    columns: list[str] | None = opt(
        None,
        "CSV feature columns: comma-separated header names or 0-based indices",
        default_text="every column but the label",
        kind=list,
    )
    label_column: str | None = opt(
        None,
        "CSV column of labels (name or 0-based index): kept for objectives and plots, "
        "never trained on",
        kind=str,
    )
    binarize: str = opt(
        "none",
        "dynamic: a VAE trains on a fresh Bernoulli draw of each training image every "
        "epoch (seeded), validation and test images are binarised once with a fixed seed "
        "(the likelihood protocol of VAE papers; needs --model conv-vae)",
        choices=("none", "dynamic"),
        legacy="none",
    )


@dataclass
class SpaceSettings:
    """Which model family, and the space its genomes live in."""

    model: str = opt("dense", "model family", choices=FAMILIES.keys(), short="-m")
    preset: str = opt(
        "seed",
        "seed (the published space; named explicitly without --strategy, also the published "
        "microbial GA: the published protocol) or extended",
        choices=("seed", "extended"),
    )
    code_size: int = opt(
        4,
        "width of the code (latent) layer",
        low=1,
        high=MAX_CODE_SIZE,
        flag="--code-size",
        short="-k",
    )
    max_depth: int | None = opt(
        None,
        "number of hidden genes (conv: blocks)",
        low=0,
        high=MAX_DEPTH,
        default_text="3 for seed, 4 for extended",
        kind=int,
    )
    activations: list[str] | None = opt(
        None,
        "comma-separated activation choices, e.g. relu,tanh,linear",
        default_text="the preset's",
        kind=list,
    )
    optimizers: list[str] | None = opt(
        None,
        f"comma-separated optimizer choices among {','.join(OPTIMIZERS)}",
        default_text="the preset's",
        kind=list,
    )
    pca_seed: bool = opt(
        True,
        "seed the search with a linear autoencoder initialised from PCA of the training "
        "split (dense family; --no-pca-seed to leave it out)",
        legacy=False,
    )
    residual: bool = opt(
        True,
        "dense: candidates with hidden layers are PCA-residual: a linear path initialised "
        "from PCA of the training split plus the evolved layers as zero-started branches, "
        "so every candidate starts at PCA's error (--no-residual: train them from scratch)",
        legacy=False,
    )
    max_ratio: float | None = opt(
        None,
        "dense: widest hidden layer relative to the one before (above 1: overcomplete "
        "layers such as 256-512-256; at most the code and input stay as given)",
        low=0.0,
        high=MAX_RATIO,
        default_text="1, the published space",
        kind=float,
    )
    free_bits: float | None = opt(
        None,
        "conv-vae: each latent dimension's KL counts as at least this many nats in the "
        "training loss (free bits against posterior collapse; 0: off)",
        low=0.0,
        high=100.0,
        default_text="0.1",
        kind=float,
        legacy=0.0,
    )
    kl_warmup: int | None = opt(
        None,
        "conv-vae: optimizer steps over which the KL weight rises from 0 to beta (0: off)",
        low=0,
        high=10**9,
        default_text="100",
        kind=int,
        legacy=0,
    )
    collapse_penalty: float | None = opt(
        None,
        "conv-vae: nats added to the fitness of a candidate with fewer than half its "
        "latent units active, so the search ranks collapsed VAEs last (0: off)",
        low=0.0,
        high=1e9,
        default_text="1000",
        kind=float,
        legacy=0.0,
    )
    options: dict[str, Any] = opt({}, "other options of the space", cli=False, kind=dict)

    def space_options(self) -> dict[str, Any]:
        """Keyword options for :func:`evoae.families.make_space`."""
        out = {"max_depth": self.max_depth, **self.options}
        if self.max_ratio is not None:
            if "max_ratio" not in FAMILIES[self.model].space_options:
                raise EvoaeError(
                    f"--max-ratio applies to the dense family, not {self.model!r}: leave it out"
                )
            out["max_ratio"] = float(self.max_ratio)
        for name in VAE_OPTIONS:
            value = getattr(self, name)
            if value is None or name not in FAMILIES[self.model].space_options:
                if value:  # 0 (off, or a stored run's legacy value) applies to every family
                    raise EvoaeError(
                        f"--{name.replace('_', '-')} applies to VAE families, not "
                        f"{self.model!r}: leave it out"
                    )
                continue
            out[name] = value
        if self.pca_seed and FAMILIES[self.model].pca_init:
            out["pca_init"] = True
        if self.residual and "residual" in FAMILIES[self.model].space_options:
            out["residual"] = True
        for name in ("activations", "optimizers"):
            if getattr(self, name) is not None:
                out[name] = list(getattr(self, name))
        return out


@dataclass
class TrainingSettings:
    """How each candidate and the final model are trained and scored."""

    epochs: int = opt(2, "epochs per candidate", low=1, high=MAX_EPOCHS, short="-E")
    min_steps: int = opt(
        200,
        "optimizer steps each candidate trains at least (more epochs on small data; "
        "0: epochs alone; 0 unless set when --epochs is given)",
        low=0,
        high=10_000_000,
        legacy=0,
    )
    final_epochs: int = opt(
        100,
        "most epochs to retrain the best (fewer on a validation plateau or at the time "
        "budget; more for --final-min-steps only while --final-epochs is not set)",
        low=0,
        high=MAX_EPOCHS,
        resumable=True,
        grows=False,
    )
    final_min_steps: int = opt(
        8000,
        "optimizer steps the final training may take at least: its epoch cap is raised to "
        "them, and with --final-lr-cuts 0 it never stops on a plateau before them (0 unless "
        "set when --final-epochs is given)",
        low=0,
        high=10_000_000,
        resumable=True,
        legacy=0,
    )
    final_patience: int = opt(
        5,
        "stop the final training after this many epochs without a better validation loss, "
        "keeping the best weights (0: train every epoch, keep the last weights)",
        low=0,
        high=MAX_EPOCHS,
        resumable=True,
        legacy=0,
    )
    final_candidates: int = opt(
        3,
        "architectures the final stage trains (the search's best distinct ones); the one "
        "with the best validation loss is kept (1 with --final-pbt)",
        low=1,
        high=100,
        resumable=True,
        legacy=1,
    )
    final_lr_cuts: int = opt(
        5,
        "halve the final training's learning rate on a validation plateau up to this many "
        "times before stopping (its plateau then lasts at least 300 optimizer steps; 0: stop "
        "on the first plateau of --final-patience epochs)",
        low=0,
        high=100,
        resumable=True,
        legacy=0,
    )
    final_continue: bool = opt(
        True,
        "the search keeps the trained states of its best --final-candidates architectures "
        "and the final stage continues them (else, or when a state is missing, it trains "
        "them from scratch)",
        resumable=True,
        legacy=False,
    )
    pca_fallback: bool = opt(
        True,
        "return the PCA-initialised linear autoencoder when the retrained best reconstructs "
        "the validation split worse than PCA (dense, MSE; --no-pca-fallback to keep it)",
        resumable=True,
        legacy=False,
    )
    final_pbt: int = opt(
        0,
        "retrain the best with population-based training: N copies, each trained the final "
        "epochs (N times the compute, no plateau stop; every --final-pbt-ready epochs the "
        "worst quarter copies the best and perturbs lr, batch size and a VAE's beta); the "
        "best copy is kept (0: one plain training)",
        low=0,
        high=MAX_PBT_COPIES,
        resumable=True,
        legacy=0,
    )
    final_pbt_ready: int = opt(
        2,
        "epochs between --final-pbt's exploit/explore steps",
        low=1,
        high=MAX_EPOCHS,
        resumable=True,
    )
    trainer: str = opt(
        "kernel",
        "kernel: a hand-written training step (dense family; others use autograd); "
        "autograd: PyTorch's backward and optimizer, the reference (runs made before "
        "the kernel read as autograd)",
        choices=("kernel", "autograd"),  # evoae.training.trainer.TRAINERS
        legacy="autograd",
    )
    nll_samples: int | None = opt(
        None,
        "importance samples per test image for the final VAE's test NLL (the IWAE bound, "
        "reported beside the ELBO; 0: off)",
        low=0,
        high=1_000_000,
        default_text="100 with --binarize dynamic, else 0",
        kind=int,
        resumable=True,
        legacy=0,
    )
    objective: str = opt(
        "recon",
        f"what candidates are scored on, always minimised ({', '.join(OBJECTIVES)}; "
        "mix:W and knn:K take an argument)",
    )


@dataclass
class FidelitySettings:
    """Multi-fidelity scheduling around the strategy (added after 0.2: old runs read "none")."""

    fidelity: str = opt(
        "none",
        "asha: train every candidate --min-epochs, promote the best 1/--eta of each rung "
        "to eta times more epochs (up to --max-epochs), continuing from saved weights; "
        "the strategy learns from rung-0 results (--min-steps does not apply to rungs)",
        choices=("none", "asha"),
        legacy="none",
    )
    min_epochs: int = opt(1, "asha: epochs of the first rung", low=1, high=MAX_EPOCHS, legacy=1)
    eta: int = opt(3, "asha: promote the best 1/ETA of each rung", low=2, high=1000, legacy=3)
    max_epochs: int = opt(4, "asha: epochs of the top rung", low=1, high=MAX_EPOCHS, legacy=4)
    epoch_budget: int | None = opt(
        None,
        "asha: training epochs the search spends (a promotion costs its extra epochs)",
        low=1,
        high=10**12,
        kind=int,
        grows=True,
        default_text="the strategy's evaluations x --epochs",
        legacy=None,
    )


@dataclass
class ExecutionSettings:
    """Where and how candidates are trained; free to change on resume."""

    device: str = opt("cpu", "where to train", choices=("auto", "cpu", "cuda"), resumable=True)
    executor: str = opt(
        "auto",
        "how to evaluate candidates",
        choices=EXECUTORS.keys(),
        resumable=True,
        short="-x",
    )
    workers: int | None = opt(
        None,
        "workers for parallel executors",
        low=1,
        high=4096,
        kind=int,
        default_text="the machine's cores",
        resumable=True,
    )
    threads: int | None = opt(
        None,
        "torch intra-op threads per candidate trained in this process",
        low=1,
        high=1024,
        kind=int,
        default_text="1",
        resumable=True,
    )
    time_budget: float | None = opt(
        None,
        "seconds for the whole run: the search stops asking after three quarters of it "
        "(all of it with --final-time-budget) and finishes the running batch; the final "
        "training stops when it ends (after at least one epoch)",
        low=0.0,
        kind=float,
        default_text="none",
        resumable=True,
    )
    final_time_budget: float | None = opt(
        None,
        "seconds for the final training alone (then --time-budget bounds the search only)",
        low=0.0,
        kind=float,
        default_text="the rest of --time-budget",
        resumable=True,
    )
    ray_address: str | None = opt(
        None,
        "join this Ray cluster (executor ray)",
        kind=str,
        resumable=True,
        default_text="a local Ray",
    )


@dataclass
class StrategySettings:
    """The strategy's registered name and its own options (see its ``Options``)."""

    name: str = DEFAULT_STRATEGY
    options: dict[str, Any] = field(default_factory=dict)


#: The sections, in CLI order: attribute name -> settings class.
SECTIONS: dict[str, type] = {
    "data": DataSettings,
    "space": SpaceSettings,
    "training": TrainingSettings,
    "fidelity": FidelitySettings,
    "execution": ExecutionSettings,
}


@dataclass
class SearchSettings:
    """Everything that defines a search. JSON-able; stored in the run folder."""

    data: DataSettings = field(default_factory=DataSettings)
    space: SpaceSettings = field(default_factory=SpaceSettings)
    strategy: StrategySettings = field(default_factory=StrategySettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    fidelity: FidelitySettings = field(default_factory=FidelitySettings)
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, strategy: str = DEFAULT_STRATEGY, **flat: Any) -> SearchSettings:
        """Settings from flat names, defaults elsewhere: ``SearchSettings.of(limit=300)``."""
        return cls.from_flat(flat, strategy=strategy)

    def load_splits(self, data: Any = None) -> Any:
        """The run's train / validation / test splits (:func:`evoae.data.load_splits`)."""
        return load_splits(**asdict(self.data), seed=self.seed, data=data)

    def space_options(self) -> dict[str, Any]:
        """Keyword options for :func:`evoae.families.make_space`, ``binarize`` included."""
        out = self.space.space_options()
        if self.data.binarize != "none":
            if "binarize" not in FAMILIES[self.space.model].space_options:
                raise EvoaeError(
                    f"--binarize {self.data.binarize} needs a VAE with a Bernoulli decoder, "
                    f"not {self.space.model!r}: use --model conv-vae or leave it out"
                )
            out["binarize"] = self.data.binarize
        return out

    def nll_samples(self) -> int:
        """Importance samples for the final test NLL (the default follows ``binarize``)."""
        k = self.training.nll_samples
        if k is None:
            return 100 if self.data.binarize == "dynamic" else 0
        return int(k)

    def validate(self) -> None:
        for name in SECTIONS:
            check(getattr(self, name))
        check_seed(self.seed)
        if self.training.final_pbt == 1:
            raise EvoaeError(
                "final pbt must be 0 (a plain final training) or at least 2 copies, got 1"
            )
        if self.strategy.name in evolution.STRATEGIES:  # a user's instance checks its own
            evolution.make_options(self.strategy.name, self.strategy.options)
        if self.fidelity.fidelity == "asha":
            self._check_asha()

    def refuse_ignored(self, given: dict[str, Any]) -> None:
        """Refuse options the user set (``given``, flat names) that these settings would
        silently ignore: ASHA's without ``--fidelity asha``, ``--final-pbt-ready``
        without ``--final-pbt``, ``--ray-address`` without ``--executor ray``. Turning the
        switch off explicitly (``--fidelity none``, ``--final-pbt 0``) keeps the rest of a
        command line usable."""
        if self.fidelity.fidelity != "asha" and given.get("fidelity") is None:
            for key in ("min_epochs", "eta", "max_epochs", "epoch_budget"):
                if given.get(key) is not None:
                    raise EvoaeError(
                        f"--{key.replace('_', '-')} only applies with --fidelity asha: add "
                        "--fidelity asha or leave it out"
                    )
        address = given.get("ray_address")
        if address is not None and self.execution.executor != "ray":
            raise EvoaeError(
                "--ray-address only applies with --executor ray: add --executor ray or leave it out"
            )
        if address is not None and not str(address).strip():
            raise EvoaeError("--ray-address is empty: pass HOST:PORT of the cluster's head")
        ready = given.get("final_pbt_ready") is not None
        if self.training.final_pbt == 0 and ready and given.get("final_pbt") is None:
            raise EvoaeError(
                "--final-pbt-ready only applies with --final-pbt N (N >= 2): add --final-pbt "
                "or leave it out"
            )

    def _check_asha(self) -> None:
        f, ex = self.fidelity, self.execution
        rung_epochs(f.min_epochs, f.eta, f.max_epochs)
        if self.strategy.options.get("reevaluate"):
            raise EvoaeError(
                "--fidelity asha continues candidates by their seed: it cannot be combined "
                "with --reevaluate"
            )
        address = ex.ray_address
        if ex.executor == "ray" and address and not address.startswith("local"):
            raise EvoaeError(
                f"--fidelity asha keeps candidates' training states in the run folder, which "
                f"Ray workers at {address} may not see: use a local Ray (no --ray-address) "
                "or another executor"
            )

    # ------------------------------------------------------------ flat names

    @classmethod
    def from_flat(
        cls, values: dict[str, Any], *, strategy: str = DEFAULT_STRATEGY, strict: bool = True
    ) -> SearchSettings:
        """Settings from flat names (``code_size=4, population=20``), routed to sections.

        A name no section and no option of ``strategy`` declares is an error (with
        ``strict``), naming the strategies that do take it.
        """
        sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        owner = {f.name: sec for sec, c in SECTIONS.items() for f in dataclasses.fields(c)}
        strategy_fields = {f.name for f in dataclasses.fields(_options_class(strategy))}
        strat: dict[str, Any] = {}
        seed = 0
        for key, value in values.items():
            if key == "seed":
                seed = value
            elif key == "space_options":
                sections["space"]["options"] = dict(value or {})
            elif key in owner:
                sections[owner[key]][key] = value
            elif key in strategy_fields:
                if value is not None:
                    strat[key] = value
            elif strict:
                takers = [n for n, c in evolution.STRATEGIES.items() if _has_option(c, key)]
                hint = (
                    f": it is an option of strategy {', '.join(takers)}, not {strategy}"
                    f"; pass --strategy {takers[0]}"
                    if takers
                    else ""
                )
                if takers and strategy == DEFAULT_STRATEGY:
                    hint += f" (the default strategy is {DEFAULT_STRATEGY})"
                raise EvoaeError(f"unknown search setting {key!r}{hint}")
        kwargs = {
            name: build(SECTIONS[name], {k: v for k, v in sec.items() if v is not None}, name)
            for name, sec in sections.items()
        }
        return cls(
            **kwargs,
            strategy=StrategySettings(strategy, _changed_defaults(strategy, strat, legacy=False)),
            seed=seed,
        )

    def flat(self) -> dict[str, Any]:
        """Every setting by its flat name (sections merged, strategy options included)."""
        out: dict[str, Any] = {}
        for name in SECTIONS:
            out.update(asdict(getattr(self, name)))
        out["space_options"] = out.pop("options")
        out.update(self.strategy.options)
        out["strategy"] = self.strategy.name
        out["seed"] = self.seed
        return out

    @classmethod
    def from_dict(cls, data: Any) -> SearchSettings:
        """Settings as stored: nested (evoae >= 0.2) or flat (evoae 0.1)."""
        if not isinstance(data, dict):
            raise EvoaeError("stored settings must be a JSON object")
        if "data" in data and isinstance(data.get("data"), dict):
            strat = data.get("strategy") or {}
            if not isinstance(strat, dict) or not isinstance(strat.get("name"), str):
                raise EvoaeError("stored settings: strategy must be {name, options}")
            out = cls(
                **{
                    name: build(c, with_legacy(c, _known(c, data.get(name) or {})), name)
                    for name, c in SECTIONS.items()
                },
                strategy=StrategySettings(
                    strat["name"],
                    _changed_defaults(strat["name"], dict(strat.get("options") or {}), legacy=True),
                ),
                seed=data.get("seed", 0),
            )
            out.validate()
            return out
        flat = dict(data)  # evoae 0.1: everything flat, the microbial GA implied
        flat.pop("strategy", None)
        for c in (*SECTIONS.values(), _options_class(LEGACY_STRATEGY)):
            flat = with_legacy(c, flat)
        return cls.from_flat(flat, strategy=LEGACY_STRATEGY, strict=False)


def _known(cls: type, values: Any) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise EvoaeError(f"stored settings: section of {cls.__name__} must be a JSON object")
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names}


def _options_class(strategy: str) -> type:
    if strategy in evolution.STRATEGIES:
        return evolution.STRATEGIES[strategy].Options
    return evolution.NoOptions


def _changed_defaults(strategy: str, given: dict[str, Any], *, legacy: bool) -> dict[str, Any]:
    """``given`` plus every option whose default changed since runs were stored (it
    declares a ``legacy`` value that differs) that ``given`` lacks: its default for a new
    run (stored explicitly, so it never reads back as an older run's), its ``legacy``
    value for stored settings (``legacy=True``)."""
    out = dict(given)
    for f in options_of(_options_class(strategy)):
        old = f.metadata.get("legacy", dataclasses.MISSING)
        if f.name not in out and old is not dataclasses.MISSING and old != default_of(f):
            out[f.name] = old if legacy else default_of(f)
    return out


def _has_option(cls: type, name: str) -> bool:
    return any(f.name == name for f in dataclasses.fields(cls.Options))


def declared(section: str) -> list[Any]:
    """The declared options of one section (for the CLI)."""
    return options_of(SECTIONS[section])


def default(name: str) -> Any:
    """The declared default of setting ``name`` (any section): one place for the CLI,
    :func:`evoae.search` and the estimator's parameters."""
    for cls in SECTIONS.values():
        for f in options_of(cls):
            if f.name == name:
                return default_of(f)
    raise KeyError(name)


# ------------------------------------------------------------ generated files
# The run-file schema (``runs/settings_schema.json``, read by the torch-free run reader)
# and the docs table (``docs/settings.md``) are derived from the declarations above;
# ``python -m evoae.settings --write`` regenerates both and a test checks they match.

SCHEMA_FILE = "runs/settings_schema.json"
DOCS_FILE = "docs/settings.md"


def _declaration(f: Any) -> dict[str, Any]:
    """One declared option as JSON: what the run reader needs to check a stored value."""
    meta = f.metadata
    kind = meta["kind"]
    value = default_of(f)
    choices = meta["choices"]
    legacy = meta.get("legacy", dataclasses.MISSING)
    return {
        "kind": {bool: "bool", int: "int", float: "float", str: "str"}.get(kind, kind.__name__),
        "default": value,
        "low": meta["low"],
        "high": meta["high"],
        # A registry's names (families, executors, objectives) are open to registration:
        # the reader checks them as names, the settings layer against the live registry.
        "choices": None if choices is None or isinstance(choices, KeysView) else list(choices),
        "registry": isinstance(choices, KeysView),
        "null": value is None or legacy is None,
        "help": meta["help"],
        "flag": meta["flag"] or "--" + f.name.replace("_", "-"),
        "default_text": meta["default_text"],
        "resume": "grows" if meta["grows"] else "free" if meta["resumable"] else "fixed",
        "cli": meta["cli"],
    }


def schema() -> dict[str, Any]:
    """Every declared setting by section, and each built-in strategy's options, as JSON."""
    return {
        "sections": {
            name: {f.name: _declaration(f) for f in options_of(cls)}
            for name, cls in SECTIONS.items()
        },
        "strategies": {
            name: {f.name: _declaration(f) for f in options_of(cls.Options)}
            for name, cls in sorted(evolution.STRATEGIES.items())
        },
        "default_strategy": DEFAULT_STRATEGY,
    }


def schema_text() -> str:
    return json.dumps(schema(), indent=1, sort_keys=True) + "\n"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _bounds(d: dict[str, Any]) -> str:
    if d["choices"]:
        return ", ".join(f"`{c}`" for c in d["choices"])
    if d["registry"]:
        return "a registered name"
    lo, hi = d["low"], d["high"]
    if lo is None and hi is None:
        return ""
    if hi is None:
        return f">= {lo:g}"
    if lo is None:
        return f"<= {hi:g}"
    return f"{lo:g} .. {hi:g}"


def _rows(options: dict[str, dict[str, Any]]) -> list[str]:
    out = [
        "| flag | default | allowed | on resume | meaning |",
        "|---|---|---|---|---|",
    ]
    for name, d in options.items():
        default = d["default_text"] or ("" if d["default"] is None else json.dumps(d["default"]))
        flag = f"`{d['flag']}`" if d["cli"] else f"`{name}` (file only)"
        out.append(
            f"| {flag} | {_cell(default)} | {_cell(_bounds(d))} | {d['resume']} "
            f"| {_cell(d['help'])} |"
        )
    return out


def docs_text() -> str:
    """``docs/settings.md``: one table per section and per strategy."""
    s = schema()
    lines = [
        "# Settings",
        "",
        "Generated from the declarations in `src/evoae/settings.py` and each strategy's",
        "`Options` by `python -m evoae.settings --write` (a test checks it is current). The",
        "same declarations give `evoae search`'s flags, the estimator's defaults and the",
        "schema `settings.json` is checked against when a run is read back.",
        "`on resume`: `fixed` must match the stored run, `grows` may only increase, `free`",
        "may change.",
        "",
    ]
    for name, options in s["sections"].items():
        doc = (SECTIONS[name].__doc__ or "").strip()
        lines += [f"## {name}", "", doc, "", *_rows(options), ""]
    lines += [
        "## strategy",
        "",
        f"`--strategy NAME` (default `{s['default_strategy']}`); each strategy's own options:",
        "",
    ]
    for name, options in s["strategies"].items():
        lines += [f"### {name}", "", *_rows(options), ""]
    return "\n".join(lines)


def _write(argv: list[str] | None = None) -> int:
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m evoae.settings")
    parser.add_argument("--write", action="store_true", help="rewrite the generated files")
    args = parser.parse_args(argv)
    package = Path(__file__).resolve().parent
    targets = {
        package / SCHEMA_FILE: schema_text(),
        package.parent.parent / DOCS_FILE: docs_text(),
    }
    stale = 0
    for path, text in targets.items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            stale += 1
            if args.write:
                path.write_text(text, encoding="utf-8")
                print(f"wrote {path}")
            else:
                print(f"stale: {path}")
    return 0 if args.write or not stale else 1


if __name__ == "__main__":
    raise SystemExit(_write())
