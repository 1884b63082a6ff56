"""Resume rules: what a resumed run must match (data, space, objective) and which
settings it may change (budgets grow, execution options and final epochs are free)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from evoae import evolution
from evoae.data import Splits
from evoae.errors import EvoaeError
from evoae.evolution import DEFAULT_STRATEGY, PUBLISHED_STRATEGY, Strategy
from evoae.loop.lineage import jsonable
from evoae.objectives import Objective
from evoae.options import options_of
from evoae.runs import folder as rf
from evoae.runs.journal import Journal
from evoae.runs.reader import data_digest
from evoae.settings import SECTIONS, SearchSettings
from evoae.spaces import Space
from evoae.training.budget import FLOORS, honour_counts


def strategy_name(strategy: str | Strategy | None, preset: Any = None) -> str:
    """The registered name a search runs: the given one, an instance's, or else the
    published microbial GA for an explicit ``preset="seed"`` (the published protocol)
    and the default for anything else."""
    if strategy is None:
        return PUBLISHED_STRATEGY if preset == "seed" else DEFAULT_STRATEGY
    if isinstance(strategy, Strategy):
        return strategy.name or type(strategy).__name__
    return strategy


def data_fingerprint(splits: Splits) -> str:
    """SHA-256 of the training and validation data: a resume must see the same bytes."""
    return data_digest(splits.train.x, splits.val.x)


def check_resumed_run(run_dir: Path, space: Space, fingerprint: str, obj: Objective) -> None:
    """Refuse to resume when the data, the space or the objective are not the run's own."""
    with Journal(run_dir / rf.JOURNAL, readonly=True) as j:
        stored_space = j.get_meta("space")
        stored_data = j.get_meta("data_sha256")
        stored_obj = j.get_meta("objective")
    if stored_space is not None and stored_space != jsonable(space.config()):
        raise EvoaeError(
            f"the search space of run {run_dir} differs from the one these settings give "
            "(the data shape or evoae's space definition changed): start a new run"
        )
    if stored_data is not None and stored_data != fingerprint:
        raise EvoaeError(
            f"the data of run {run_dir} changed since it started (its SHA-256 differs): "
            "restore the original data or start a new run"
        )
    if stored_obj is not None and stored_obj != jsonable(obj.config()):
        raise EvoaeError(
            f"run {run_dir} was scored with objective {stored_obj!r}, not {obj.config()!r}: "
            "pass the run's own objective to resume it"
        )


def resumed_settings(
    run_dir: Path,
    dataset: str | None,
    overrides: dict[str, Any],
    strategy: str | Strategy | None,
    objective: Objective | None,
) -> SearchSettings:
    """The run's stored settings with the changes a resume allows (budgets may grow,
    execution options and final epochs may change); anything else must match."""
    if not rf.is_run(run_dir):
        raise EvoaeError(
            f"{run_dir} is not an evoae run folder (no {rf.JOURNAL}): nothing to resume"
        )
    rf.check_writable(run_dir)
    with Journal(run_dir / rf.JOURNAL, readonly=True) as j:
        raw = j.get_meta("settings")
    if not isinstance(raw, dict):
        raise EvoaeError(f"{run_dir / rf.JOURNAL} holds no settings: the journal is corrupted")
    try:
        s = SearchSettings.from_dict(raw)
    except EvoaeError as e:
        where = run_dir / rf.JOURNAL
        raise EvoaeError(f"the settings stored in {where} are invalid ({e})") from None
    name = strategy_name(strategy) if strategy is not None else s.strategy.name
    if name != s.strategy.name:
        raise EvoaeError(
            f"run {run_dir} was searched with strategy {s.strategy.name}, not {name}: "
            "resume it with its own strategy"
        )
    if isinstance(strategy, Strategy):
        options_cls = type(strategy.options)
    else:
        options_cls = evolution.strategy_class(name).Options
    stored_flat = s.flat()
    given = dict(overrides)
    if dataset is not None:
        given["dataset"] = dataset
    if objective is not None:
        given["objective"] = objective.name
    if isinstance(strategy, Strategy):  # a user's instance: its options follow the same rules
        given.update(jsonable(strategy.options_dict()))
    rules = _resume_rules(options_cls)
    # A count given on resume is what trains, as on a new run (see training.budget); a
    # floor that cannot change on resume (min_steps: candidates) stays as stored.
    given = honour_counts(given, [(c, f) for c, f in FLOORS if rules.get(f) == "free"])
    for key, value in given.items():
        if value is None:
            continue
        if key not in stored_flat:
            raise EvoaeError(f"unknown search setting {key!r}")
        rule = rules.get(key)
        old = stored_flat[key]
        if rule == "grows":
            if old is not None and value < old:
                raise EvoaeError(
                    f"cannot shrink the budget on resume ({key} {old} -> {value}): "
                    "pass the same or more"
                )
        elif rule != "free" and old != value:
            raise EvoaeError(
                f"cannot change {key.replace('_', ' ')} on resume (run has {old!r}, "
                f"asked {value!r}): start a new run instead"
            )
        _set_flat(s, key, value)
    s.validate()
    return s


def _resume_rules(options_cls: type) -> dict[str, str]:
    """Flat setting name -> "grows" (a budget) or "free" (may change on resume)."""
    rules: dict[str, str] = {}
    for cls in (*SECTIONS.values(), options_cls):
        for f in options_of(cls):
            if f.metadata["grows"]:
                rules[f.name] = "grows"
            elif f.metadata["resumable"]:
                rules[f.name] = "free"
    return rules


def _set_flat(s: SearchSettings, key: str, value: Any) -> None:
    for name, cls in SECTIONS.items():
        if key in {f.name for f in fields(cls)}:
            setattr(getattr(s, name), key, value)
            return
    if key == "seed":
        s.seed = value
    elif key == "space_options":
        s.space.options = dict(value)
    else:
        s.strategy.options[key] = value
