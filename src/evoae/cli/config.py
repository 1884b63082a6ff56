"""``evoae search --config FILE``: a search's settings from a file.

FILE is TOML (``.toml``) or JSON (``.json``: the ``settings.json`` an earlier run wrote)
in the nested layout of ``settings.json``: a top-level ``seed``, then one table per
section (``[data]``, ``[space]``, ``[training]``, ``[fidelity]``, ``[execution]``) holding
settings by their flat names (``code_size``, not ``code-size``), and ``[strategy]`` with
``name`` and a table ``[strategy.options]``. Every key is optional; a ``null`` (JSON)
is the default. Flags given on the command line override the file.

The file is untrusted input: its size is capped, every key must be a declared setting
(an unknown one is refused in one line, with the closest real key), every value is
checked against its declaration before the search starts, and nothing in it is run.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from pathlib import Path
from typing import Any

from evoae import evolution
from evoae.errors import EvoaeError
from evoae.options import check_value, options_of
from evoae.runs.schema import load_json
from evoae.seeds import check_seed
from evoae.settings import SECTIONS

#: Largest config file read (a settings.json is about 2 KiB).
MAX_CONFIG_BYTES = 1024 * 1024
#: Longest string and list accepted in a value (a path, a list of activations).
_MAX_TEXT = 4096
_MAX_ITEMS = 1024


def read_config(path: str | Path) -> tuple[dict[str, Any], str | None]:
    """The settings in ``path`` by flat name (strategy options included) and the
    strategy's name (None when the file names none)."""
    path = Path(path)
    where = f"config {path}"
    data = _load(path, where)
    if not isinstance(data, dict):
        raise EvoaeError(f"{where}: expected a table of sections (data, space, ...) at the top")
    known = ("seed", "strategy", *SECTIONS)
    flat: dict[str, Any] = {}
    strategy: str | None = None
    for key, value in data.items():
        if key not in known:
            _unknown(where, str(key))
        if value is None:
            continue
        if key == "seed":
            flat["seed"] = _checked(where, "seed", lambda v=value: check_seed(v))
        elif key == "strategy":
            strategy, options = _strategy(where, value)
            flat.update(options)
        else:
            flat.update(_section(where, key, value))
    return flat, strategy


def _load(path: Path, where: str) -> Any:
    """The parsed file: TOML by its suffix, else JSON; one line for every failure."""
    if path.suffix.lower() != ".toml":
        if path.suffix.lower() != ".json":
            raise EvoaeError(
                f"{where}: give a .toml file or the settings.json of a run (not {path.suffix!r})"
            )
        return load_json(path, "config", max_bytes=MAX_CONFIG_BYTES)
    try:
        if not path.is_file():
            raise EvoaeError(f"{where} is {'not a file' if path.exists() else 'missing'}")
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise EvoaeError(f"{where} is {size} bytes, more than the {MAX_CONFIG_BYTES} read")
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except EvoaeError:
        raise
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        detail = " ".join(str(getattr(e, "strerror", None) or e).split())[:200]
        raise EvoaeError(f"{where} is not readable TOML ({detail})") from None
    except RecursionError:
        raise EvoaeError(f"{where} is not readable TOML (nested too deeply)") from None


def _section(where: str, section: str, values: Any) -> dict[str, Any]:
    """One section's settings, each checked against its declaration."""
    if not isinstance(values, dict):
        raise EvoaeError(f"{where}: {section} must be a table of settings, got {_show(values)}")
    fields = {f.name: f for f in options_of(SECTIONS[section])}
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{section}.{key}"
        if key not in fields:
            _unknown(where, name)
        if value is None:
            continue
        kind = fields[key].metadata["kind"]
        if kind is list:
            out[key] = _strings(where, name, value)
        elif kind is dict:
            out["space_options"] = _options(where, name, value)
        else:
            out[key] = _checked(where, name, lambda f=fields[key], v=value: check_value(f, v))
    return out


def _strategy(where: str, value: Any) -> tuple[str | None, dict[str, Any]]:
    """``[strategy]``: its ``name`` and ``options`` (names any strategy declares)."""
    if not isinstance(value, dict):
        raise EvoaeError(f"{where}: strategy must be a table (name, options), got {_show(value)}")
    for key in value:
        if key not in ("name", "options"):
            _unknown(where, f"strategy.{key}")
    name = value.get("name")
    if name is not None:
        if not isinstance(name, str):
            raise EvoaeError(f"{where}: strategy.name must be a string, got {_show(name)}")
        if name not in evolution.STRATEGIES:
            close = difflib.get_close_matches(name, list(evolution.STRATEGIES), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise EvoaeError(
                f"{where}: unknown strategy {_show(name)}{hint} (choose from "
                f"{', '.join(evolution.STRATEGIES)})"
            )
    options = value.get("options")
    if options is None:
        return name, {}
    if not isinstance(options, dict):
        raise EvoaeError(f"{where}: strategy.options must be a table, got {_show(options)}")
    declared = _strategy_options(name)
    for key in options:
        if key not in declared:
            _unknown(where, f"strategy.options.{key}")
    out = {k: v for k, v in options.items() if v is not None}
    if name is not None:  # checked here so the error names the file and the key
        fields = {f.name: f for f in dataclasses.fields(evolution.STRATEGIES[name].Options)}
        for key, v in out.items():
            if "kind" in fields[key].metadata:
                check = lambda f=fields[key], v=v: check_value(f, v)  # noqa: E731
                out[key] = _checked(where, f"strategy.options.{key}", check)
    # Otherwise types and bounds: the strategy's own Options, when the search builds them.
    return name, out


def _strategy_options(name: str | None) -> set[str]:
    """The options of strategy ``name``, or of every strategy when the file names none
    (the command line's --strategy decides; the search refuses one it does not take)."""
    classes = [evolution.STRATEGIES[name]] if name else list(evolution.STRATEGIES.values())
    return {f.name for c in classes for f in dataclasses.fields(c.Options)}


def _all_keys() -> list[str]:
    keys = ["seed", "strategy.name"]
    keys += [f"{s}.{f.name}" for s, c in SECTIONS.items() for f in options_of(c)]
    keys += [f"strategy.options.{k}" for k in sorted(_strategy_options(None))]
    return keys


def _unknown(where: str, key: str) -> None:
    """Refuse ``key`` in one line, naming the real key it was probably meant to be."""
    keys = _all_keys()
    leaf = key.rsplit(".", 1)[-1]
    same = [k for k in keys if k.rsplit(".", 1)[-1] == leaf]
    close = same or difflib.get_close_matches(key, keys, n=1, cutoff=0.7)
    if not close:  # a mistyped name in the right section: compare the names alone
        leaves = {k.rsplit(".", 1)[-1]: k for k in keys if k.startswith(key.rpartition(".")[0])}
        near = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.7)
        close = [leaves[near[0]]] if near else []
    hint = (
        f"; did you mean {close[0]}?"
        if close
        else f" (keys: seed, strategy.name, strategy.options.NAME, and SECTION.NAME for "
        f"sections {', '.join(SECTIONS)})"
    )
    raise EvoaeError(f"{where}: unknown key {_show(key)}{hint}")


def _checked(where: str, name: str, check: Any) -> Any:
    try:
        return check()
    except EvoaeError as e:
        raise EvoaeError(f"{where}: {name}: {e}") from None


def _strings(where: str, name: str, value: Any) -> list[str]:
    """A list of names (CSV columns may be 0-based indices: kept as text, as the flag does)."""
    ok = isinstance(value, list) and 0 < len(value) <= _MAX_ITEMS
    if ok:
        for v in value:
            text = v if isinstance(v, str) else str(v) if type(v) is int and v >= 0 else ""
            ok = ok and 0 < len(text) <= _MAX_TEXT
    if not ok:
        raise EvoaeError(f"{where}: {name} must be a list of names, got {_show(value)}")
    return [str(v) for v in value]


def _options(where: str, name: str, value: Any) -> dict[str, Any]:
    """``space.options``: a flat table of plain values (the space checks the names)."""
    plain = (str, int, float, bool)
    if not isinstance(value, dict) or len(value) > _MAX_ITEMS:
        raise EvoaeError(f"{where}: {name} must be a table, got {_show(value)}")
    for k, v in value.items():
        if not isinstance(v, plain) and not (
            isinstance(v, list) and len(v) <= _MAX_ITEMS and all(isinstance(x, plain) for x in v)
        ):
            raise EvoaeError(f"{where}: {name}.{k} must be a plain value, got {_show(v)}")
    return dict(value)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def apply_config(
    path: str | Path, given: dict[str, Any], dataset: str | None, strategy: str | None
) -> tuple[dict[str, Any], str | None, str | None]:
    """The file's settings with the command line's on top: (settings by flat name,
    dataset, strategy name)."""
    flat, file_strategy = read_config(path)
    file_dataset = flat.pop("dataset", None)
    return (
        {**flat, **given},
        dataset if dataset is not None else file_dataset,
        strategy if strategy is not None else file_strategy,
    )


__all__ = ["MAX_CONFIG_BYTES", "apply_config", "read_config"]
