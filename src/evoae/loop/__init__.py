"""The search: settings, data, space, strategy and run folder, then the loop.

Read top to bottom: :func:`search` resolves the settings (a new run's, or a resumed
run's with the changes a resume allows: :mod:`evoae.loop.resume`), loads the data,
makes the space and the strategy, checks everything that can refuse the input before the
run folder is touched, and hands over to :func:`evoae.loop.run.run`: the loop
(:mod:`evoae.loop.core`: ask -> decode -> cache -> evaluate -> journal -> tell ->
checkpoint) and the final training (:mod:`evoae.finish`).
"""

from __future__ import annotations

import numbers
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from evoae import evolution
from evoae.data import Dataset, Splits, load_splits
from evoae.errors import EvoaeError
from evoae.evolution import Asha, Strategy
from evoae.execution import make_evaluator
from evoae.families import make_space
from evoae.finish import SearchResult
from evoae.loop.lineage import jsonable
from evoae.loop.resume import (
    check_resumed_run,
    data_fingerprint,
    resumed_settings,
    strategy_name,
)
from evoae.loop.run import run
from evoae.objectives import Objective, make_objective
from evoae.report import PlotReporter
from evoae.report.progress import ProgressReporter, Reporter
from evoae.runs import folder as rf
from evoae.runs.killpoints import arm_forward
from evoae.seeds import derive_seed
from evoae.settings import SearchSettings, StrategySettings
from evoae.spaces import Space
from evoae.training import Evaluator
from evoae.training.budget import epochs_for, honour_counts, steps_per_epoch
from evoae.training.evaluator import resolve_device

__all__ = ["SearchResult", "SearchSettings", "derive_seed", "runs_root", "search"]


def search(
    dataset: str | None = None,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    reporters: Sequence[Reporter] = (),
    evaluator: Evaluator | None = None,
    data: Dataset | Splits | np.ndarray | tuple[Any, Any] | None = None,
    strategy: str | Strategy | None = None,
    objective: str | Objective | None = None,
    finish: bool = False,
    verbose: int = 0,
    runs_dir: str | Path | None = None,
    **settings: Any,
) -> SearchResult:
    """Evolve an autoencoder for ``dataset`` and return the retrained best.

    Parameters
    ----------
    dataset
        ``digits`` (bundled with scikit-learn, the default), ``mnist``, ``fashion-mnist``,
        or a path to ``.npy`` / ``.npz`` / ``.csv`` data.
    out, overwrite, resume, finish
        Run folder (default: a new folder, never an existing one, under ``runs_dir``;
        see :func:`runs_root`); replace an existing run there, or continue it (only
        budgets, ``final_epochs`` and execution options may change), with ``finish``
        evaluating nothing more before the final training.
    verbose
        0 (default): silent, as scikit-learn's estimators are; 1: a progress line on
        stderr every 10 seconds (generations, evaluations, best fitness, the final
        training's epochs with an ETA); 2 or more: a line after every evaluation and
        every epoch of the final training. ``reporters`` add to it.
    runs_dir
        Where a run without ``out`` goes (``runs_dir/NAME``; the ``evoae`` command passes
        ``$EVOAE_RUNS``, else ``./runs``). Default: ``$EVOAE_RUNS`` when set, else a new
        temporary folder (``tempfile.mkdtemp``, kept): the Python API never writes into
        the working directory unasked. ``result.run_dir`` says where the run is.
    reporters, evaluator
        Progress hooks (:class:`evoae.report.progress.Reporter`); a ready evaluator to
        use instead of the one ``executor`` names.
    data
        In-memory data instead of loading ``dataset`` (which then only names it): a
        :class:`evoae.data.Dataset`, rows ``(N, F)`` (min-max scaled per column), images
        ``(N, H, W)`` / ``(N, C, H, W)``, or ``(X, y)`` (see :mod:`evoae.data.arrays`), split
        70/15/15 with the seed; or ready :class:`evoae.data.Splits`, used as given.
    strategy, objective
        A registered name (see :data:`evoae.evolution.STRATEGIES`,
        :data:`evoae.objectives.OBJECTIVES`) or a ready instance of any class.
    **settings
        Any field of :class:`evoae.settings.SearchSettings` by name (``code_size``,
        ``epochs``, ``seed``...) or an option of the strategy (``population``...).

    Returns
    -------
    SearchResult
        Best genome and spec, the retrained model, figures and history; e.g.
        ``evoae.search("digits", code_size=4, generations=10).model``.
    """
    t0 = time.perf_counter()
    arm_forward()  # a no-op outside the kill tests
    reporters = [*reporters, *_verbose_reporters(verbose)]
    instance, obj_instance = _instances(strategy, objective, settings)
    if finish and not resume:
        raise EvoaeError("finish ends an existing run: pass it with resume=True (or --resume)")
    if resume:
        if out is None:
            raise EvoaeError("--resume needs the run folder to continue")
        s = resumed_settings(Path(out), dataset, settings, strategy, obj_instance)
    else:
        s = _new_settings(dataset, data, settings, strategy, instance, obj_instance)
    _check(s, settings, resume and data is None, out)
    obj = obj_instance if obj_instance is not None else make_objective(s.training.objective)
    splits = _splits(s, obj, data)
    opts = s.space_options()
    space = make_space(s.space.model, s.space.preset, splits.train, s.space.code_size, **opts)
    strat = _strategy(s, space, instance)
    fingerprint = data_fingerprint(splits)
    if resume:
        check_resumed_run(Path(out), space, fingerprint, obj)  # type: ignore[arg-type]
    # Everything that can refuse the input is checked before the run folder is touched.
    own = evaluator is None
    evaluator = _evaluator(s, splits, obj, strat, finish) if evaluator is None else evaluator
    try:
        if resume:
            run_dir = Path(out)  # type: ignore[arg-type]
        else:
            target = out
            if target is None:
                root = Path(runs_dir) if runs_dir is not None else runs_root()
                target = rf.default_out(root, _run_name(s))
            run_dir = rf.prepare_new(target, overwrite=overwrite)
        args = (s, space, strat, obj, evaluator, splits, run_dir, resume, fingerprint)
        return run(*args, [*reporters, PlotReporter()], t0, finish=finish)
    finally:
        if own:
            evaluator.close()


def _instances(
    strategy: Any, objective: Any, settings: dict[str, Any]
) -> tuple[Strategy | None, Objective | None]:
    """The user's strategy and objective instances (None for names); a named objective
    joins the flat settings."""
    instance = strategy if isinstance(strategy, Strategy) else None
    if strategy is not None and instance is None and not isinstance(strategy, str):
        raise EvoaeError(
            f"strategy must be a registered name or a Strategy instance, got {strategy!r}"
        )
    obj_instance = objective if isinstance(objective, Objective) else None
    if objective is not None and obj_instance is None:
        settings["objective"] = objective
    elif obj_instance is not None:
        settings.pop("objective", None)
    return instance, obj_instance


def _check(s: SearchSettings, given: dict[str, Any], from_disk: bool, out: Any) -> None:
    """Settings in bounds, none given that the run would ignore, the device usable, and
    a resume from disk not of a run made from in-memory data."""
    s.validate()
    s.refuse_ignored(given)
    resolve_device(s.execution.device)
    if from_disk and s.data.dataset.startswith("<"):
        raise EvoaeError(
            f"run {out} was made from in-memory data: it cannot be resumed from the CLI"
        )


def _new_settings(
    dataset: str | None,
    data: Any,
    settings: dict[str, Any],
    strategy: str | Strategy | None,
    instance: Strategy | None,
    objective: Objective | None,
) -> SearchSettings:
    """A new run's settings from the flat names given."""
    name = strategy_name(strategy, settings.get("preset"))
    default = "digits" if data is None else "<array>"
    # An epoch count the user sets is what trains: its step floor is stored as 0 unless
    # the user sets that too (training.budget).
    given = honour_counts({"dataset": dataset if dataset is not None else default, **settings})
    if instance is not None:
        s = SearchSettings.from_flat(given, strategy="", strict=True)
        s.strategy = StrategySettings(name, jsonable(instance.options_dict()))
    else:
        evolution.strategy_class(name)
        s = SearchSettings.from_flat(given, strategy=name)
    if objective is not None:
        s.training.objective = objective.name
    return s


def _splits(s: SearchSettings, obj: Objective, data: Any) -> Splits:
    """The run's train / validation / test splits, with labels where ``obj`` needs them."""
    splits = load_splits(**asdict(s.data), seed=s.seed, data=data)
    if obj.needs_labels and (splits.train.y is None or splits.val.y is None):
        raise EvoaeError(
            f"objective {obj.name} needs labels but dataset {s.data.dataset!r} has none: "
            "use labelled data (MNIST, .npz with y, CSV --label-column) or --objective recon"
        )
    obj.check_labels(splits.val.y)
    return splits


def _strategy(s: SearchSettings, space: Space, instance: Strategy | None) -> Strategy:
    """The run's strategy (the user's instance, or the registered one), wrapped in ASHA
    when asked, with the space's seed genomes; its full options stored in ``s``."""
    strat = (
        instance
        if instance is not None
        else evolution.make_strategy(s.strategy.name, space, s.strategy.options, seed=s.seed)
    )
    if instance is not None and instance.space is not space:
        instance.space = space  # the user's strategy searches the space of this run
    f = s.fidelity
    if f.fidelity == "asha" and getattr(strat.options, "morph", False):
        strat.options.morph = False  # rungs continue their own state (stored as off)
    if f.fidelity == "asha" and getattr(strat.options, "inherit", False):
        raise EvoaeError(
            "--inherit cannot be combined with --fidelity asha (a promotion continues its "
            "own state, an offspring its parent's): drop one of them"
        )
    if f.fidelity == "asha":  # the stored options stay the strategy's own (see Asha.around)
        strat = Asha.around(
            strat,
            seed=s.seed,
            epochs=s.training.epochs,
            min_epochs=f.min_epochs,
            eta=f.eta,
            max_epochs=f.max_epochs,
            epoch_budget=f.epoch_budget,
            rebuild=instance is None,
        )
    strat.add_seeds(space.seed_genomes())  # the PCA seed of dense spaces
    s.strategy.options = jsonable(strat.options_dict())  # stored in full, defaults included
    return strat


def _evaluator(
    s: SearchSettings, splits: Splits, obj: Objective, strat: Strategy, finish: bool = False
) -> Evaluator:
    ex = s.execution
    return make_evaluator(
        ex.executor,
        splits.train,
        splits.val,
        device=ex.device,
        objective=obj,
        workers=ex.workers,
        threads=ex.threads,
        ray_address=ex.ray_address,
        parallelism=strat.parallelism,
        steps=_pool_steps(s, len(splits.train), strat, finish),
    )


def _pool_steps(s: SearchSettings, n_train: int, strat: Strategy, finish: bool) -> int:
    """About how many optimizer steps the work a process pool would share takes (batch
    32): the whole search's (the initial population counted once), or, for a run that
    only finishes, its other finalists' at their epoch cap. What ``auto`` weighs against
    starting workers."""
    t = s.training
    per_epoch = steps_per_epoch(max(n_train, 1), 32)
    if finish:
        cap = epochs_for(t.final_epochs, t.final_min_steps, max(n_train, 1), 32)
        return max(t.final_candidates - 1, 0) * cap * per_epoch
    total = strat.progress()[1] + int(getattr(strat.options, "population", 0) or 0)
    return total * max(int(t.min_steps or 0), int(t.epochs) * per_epoch)


def runs_root() -> Path:
    """Where :func:`search` puts a run given neither ``out`` nor ``runs_dir``:
    ``$EVOAE_RUNS``, else a new temporary folder (never the working directory)."""
    root = os.environ.get("EVOAE_RUNS")
    return Path(root) if root else Path(tempfile.mkdtemp(prefix="evoae-runs-"))


def _verbose_reporters(verbose: Any) -> list[Reporter]:
    """Plain progress lines on stderr for ``verbose`` > 0 (every 10 s; every event at 2+).
    A bool counts as 0 or 1, as scikit-learn's ``verbose=True`` does."""
    if not isinstance(verbose, numbers.Integral) or verbose < 0:
        raise EvoaeError(f"verbose must be an integer of at least 0 (or a bool), got {verbose!r}")
    if verbose == 0:
        return []
    return [ProgressReporter(stream=sys.stderr, interval=10.0 if verbose == 1 else 0.0)]


def _run_name(s: SearchSettings) -> str:
    d = s.data.dataset
    name = Path(d).stem if d not in ("digits", "mnist", "fashion-mnist") else d
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name.strip("<>")) or "data"
    return f"{name}-{s.space.model}-code{s.space.code_size}-seed{s.seed}"
