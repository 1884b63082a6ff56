"""Declared settings: one place says a setting's type, default, bounds, choices and help.

Every layer declares its settings as a dataclass whose fields are made with
:func:`option`. From that one declaration come the defaults, the validation
(:func:`check`), the command-line flags and their help text (shown once, with the
real default), and the resume rules (``grows``: a budget that may only grow on
resume; ``resumable``: free to change on resume). A setting added after runs were
stored without it declares ``legacy``: the value those runs are read (and resumed) with,
so they keep the behaviour they were made with.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import KeysView, Sequence
from dataclasses import MISSING, Field
from typing import Any

from evoae.errors import EvoaeError


def option(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: Sequence[Any] | None = None,
    flag: str | None = None,
    short: str | None = None,
    default_text: str | None = None,
    grows: bool = False,
    resumable: bool = False,
    cli: bool = True,
    kind: type | None = None,
    legacy: Any = MISSING,
) -> Any:
    """A dataclass field carrying the metadata of one setting.

    ``kind`` is the scalar type for the CLI and checks (default: the type of
    ``default``); ``default_text`` replaces the default in help where it is computed
    (e.g. "1/genes"); ``cli=False`` keeps a setting out of the command line;
    ``legacy`` is the value of stored settings that lack the field (see the module);
    ``choices`` may be a registry's ``keys()``, read when a value is checked.
    """
    meta = {
        "help": help,
        "low": low,
        "high": high,
        # A registry's keys view stays live: a family registered later is a valid choice.
        "choices": choices if choices is None or isinstance(choices, KeysView) else tuple(choices),
        "flag": flag,
        "short": short,
        "default_text": default_text,
        "grows": grows,
        "resumable": resumable,
        "cli": cli,
        "kind": kind if kind is not None else (type(default) if default is not None else str),
        "legacy": legacy,
    }
    if isinstance(default, list | dict):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def options_of(cls: type) -> list[Field[Any]]:
    """The declared settings of a settings dataclass, in declaration order."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def default_of(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def check_value(f: Field[Any], value: Any, where: str = "") -> Any:
    """Check one value against its declaration; returns it normalised (e.g. int from 3.0)."""
    meta = f.metadata
    label = f.name.replace("_", " ")
    if value is None:
        return None
    kind = meta["kind"]
    if kind is bool:
        if not isinstance(value, bool):
            raise EvoaeError(f"{label} must be true or false, got {value!r}")
        return value
    if kind is int:
        # numbers.Integral: numpy integers too (a grid search's np.arange of code sizes).
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Integral)
            and not (isinstance(value, float) and value.is_integer())
        ):
            raise EvoaeError(f"{label} must be an integer, got {value!r}")
        value = int(value)
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise EvoaeError(f"{label} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise EvoaeError(f"{label} must be a finite number, got {value!r}")
    elif kind is str and not isinstance(value, str):
        raise EvoaeError(f"{label} must be a string, got {value!r}")
    if meta["choices"] is not None and value not in meta["choices"]:
        raise EvoaeError(
            f"unknown {label} {value!r}{where}: choose from "
            f"{', '.join(str(c) for c in meta['choices'])}"
        )
    if meta["low"] is not None and value < meta["low"]:
        raise EvoaeError(f"{label} must be at least {_num(meta['low'])}, got {value!r}")
    if meta["high"] is not None and value > meta["high"]:
        raise EvoaeError(f"{label} must be at most {_num(meta['high'])}, got {value!r}")
    return value


def check(obj: Any) -> None:
    """Check every declared setting of a settings dataclass instance, in place."""
    for f in options_of(type(obj)):
        setattr(obj, f.name, check_value(f, getattr(obj, f.name)))


def build(cls: type, values: dict[str, Any], what: str) -> Any:
    """An instance of settings class ``cls`` from ``values``; unknown keys are an error."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise EvoaeError(
            f"unknown {what} setting {unknown[0]!r}: choose from {', '.join(sorted(known))}"
        )
    obj = cls(**values)
    check(obj)
    return obj


def with_legacy(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Stored ``values`` of settings class ``cls`` with each missing ``legacy`` field filled."""
    out = dict(values)
    for f in options_of(cls):
        legacy = f.metadata.get("legacy", MISSING)
        if legacy is not MISSING and f.name not in out:
            out[f.name] = legacy
    return out


def help_text(f: Field[Any], extra: str = "") -> str:
    """The flag's help: the text, then the default once (none for flags off by default)."""
    meta = f.metadata
    text = meta["help"] + extra
    default = meta["default_text"]
    if default is None:
        value = default_of(f)
        if value is None or value is False:
            return text
        default = str(value)
    return f"{text} [default: {default}]"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
