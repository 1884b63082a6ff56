"""Schemas for every file evoae reads back, checked before anything uses the data.

Run files can be hand-edited, truncated or written by another version: they are
untrusted input. A small hand-written validator (standard library only) checks types,
bounds, sizes and nesting depth, and names the file and the field in a one-line
:class:`~evoae.errors.EvoaeError`, e.g. ``checkpoint RUN/checkpoint.json is damaged
(field next_id: expected an integer >= 0, got -3)``.

Files: ``settings.json`` and the journal's stored settings (:func:`validate_settings`),
``checkpoint.json`` (:func:`validate_checkpoint`), ``summary.json``
(:func:`validate_summary`), ``model.json`` (:func:`validate_model_json`; its spec by
the family's schema, :func:`evoae.families.check_spec`), ``best_genome.json`` and
``export.json``. :func:`load_json` reads a file with a size cap and no recursion blow-up.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evoae.errors import EvoaeError
from evoae.seeds import MAX_SEED

#: Deepest nesting accepted anywhere (real files nest at most 6 levels).
MAX_DEPTH = 32
#: Largest JSON file read back (a checkpoint of a large population is a few MiB).
MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_WIDTH = 65536
MAX_LIST = 1_000_000
#: Largest model a spec may describe (parameters); 2**28 float32 = 1 GiB.
MAX_PARAMS = 2**28
_BIG = 2**63


class Invalid(Exception):
    """A field that does not fit its schema: ``path`` (``a.b[3]``) and what was expected."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path or 'top level'}: {message}")
        self.path = path
        self.message = message


def _show(v: Any) -> str:
    text = json.dumps(v) if _depth(v, 4) <= 3 else type(v).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _depth(v: Any, limit: int = MAX_DEPTH + 1) -> int:
    """Nesting depth of ``v``, iteratively (never recurses), stopping at ``limit``."""
    stack = [(v, 1)]
    deepest = 0
    while stack:
        x, d = stack.pop()
        deepest = max(deepest, d)
        if deepest >= limit:
            return deepest
        if isinstance(x, dict):
            stack.extend((y, d + 1) for y in x.values())
        elif isinstance(x, list | tuple):
            stack.extend((y, d + 1) for y in x)
    return deepest


# ------------------------------------------------------------------ checkers
# A checker is a callable (value, path) -> None that raises Invalid.

Checker = Callable[[Any, str], None]


def integer(lo: int = -_BIG, hi: int = _BIG, *, null: bool = False) -> Checker:
    def check(v: Any, path: str) -> None:
        if v is None and null:
            return
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            if hi >= 2**62:
                want = f"an integer >= {lo}" if lo > -(2**62) else "an integer"
            else:
                want = f"an integer in [{lo}, {hi}]"
            want += " or null" if null else ""
            raise Invalid(path, f"expected {want}, got {_show(v)}")

    return check


def number(
    lo: float = -math.inf, hi: float = math.inf, *, null: bool = False, inf: bool = False
) -> Checker:
    """A finite int/float in [lo, hi]; ``inf`` also allows +infinity (``"inf"`` too)."""

    def check(v: Any, path: str) -> None:
        if v is None and null:
            return
        if inf and (v == "inf" or (isinstance(v, float) and v == math.inf)):
            return
        ok = isinstance(v, int | float) and not isinstance(v, bool)
        if not ok or not math.isfinite(v) or not lo <= v <= hi:
            bounds = "" if (lo, hi) == (-math.inf, math.inf) else f" in [{lo:g}, {hi:g}]"
            if (lo, hi) == (0.0, math.inf):
                bounds = " >= 0"
            want = f"a finite number{bounds}" + (" or null" if null else "")
            raise Invalid(path, f"expected {want}, got {_show(v)}")

    return check


def string(
    max_len: int = 4096, *, choices: tuple[str, ...] | None = None, null: bool = False
) -> Checker:
    def check(v: Any, path: str) -> None:
        if v is None and null:
            return
        if not isinstance(v, str) or len(v) > max_len:
            raise Invalid(path, f"expected a string of at most {max_len} characters")
        if choices is not None and v not in choices:
            raise Invalid(path, f"expected one of {', '.join(choices)}, got {_show(v)}")

    return check


def boolean(*, null: bool = False) -> Checker:
    def check(v: Any, path: str) -> None:
        if not (isinstance(v, bool) or (v is None and null)):
            raise Invalid(path, f"expected true or false, got {_show(v)}")

    return check


def anything(max_depth: int = MAX_DEPTH) -> Checker:
    """Any JSON value nested at most ``max_depth`` levels."""

    def check(v: Any, path: str) -> None:
        if _depth(v, max_depth + 1) > max_depth:
            raise Invalid(path, f"nested deeper than {max_depth} levels")

    return check


def list_of(
    item: Checker, *, min_len: int = 0, max_len: int = MAX_LIST, null: bool = False
) -> Checker:
    def check(v: Any, path: str) -> None:
        if v is None and null:
            return
        if not isinstance(v, list) or not min_len <= len(v) <= max_len:
            raise Invalid(path, f"expected a list of {min_len} to {max_len} items")
        for i, x in enumerate(v):
            item(x, f"{path}[{i}]")

    return check


def tuple_of(*items: Checker) -> Checker:
    def check(v: Any, path: str) -> None:
        if not isinstance(v, list) or len(v) != len(items):
            raise Invalid(path, f"expected a list of {len(items)} items, got {_show(v)}")
        for i, (x, c) in enumerate(zip(v, items, strict=True)):
            c(x, f"{path}[{i}]")

    return check


def mapping(value: Checker, *, max_len: int = 10_000, null: bool = False) -> Checker:
    """A dict with string keys and values that pass ``value``."""

    def check(v: Any, path: str) -> None:
        if v is None and null:
            return
        if not isinstance(v, dict) or len(v) > max_len:
            raise Invalid(path, f"expected an object of at most {max_len} entries")
        for k, x in v.items():
            if not isinstance(k, str) or len(k) > 256:
                raise Invalid(path, f"key {_show(k)} is not a short string")
            value(x, f"{path}.{k}" if path else k)

    return check


def record(
    required: dict[str, Checker],
    optional: dict[str, Checker] | None = None,
    *,
    extra: Checker | None = None,
    null: bool = False,
) -> Checker:
    """A dict with ``required`` and ``optional`` fields; other keys must pass ``extra``."""
    optional = optional or {}

    def check(v: Any, path: str) -> None:
        if v is None and null:
            return
        if not isinstance(v, dict):
            raise Invalid(path, f"expected an object, got {_show(v)}")
        for k, c in required.items():
            sub = f"{path}.{k}" if path else k
            if k not in v:
                raise Invalid(sub, "missing")
            c(v[k], sub)
        for k, x in v.items():
            sub = f"{path}.{k}" if path else str(k)
            if k in required:
                continue
            if k in optional:
                optional[k](x, sub)
            elif extra is not None:
                if not isinstance(k, str) or len(k) > 256:
                    raise Invalid(path, f"key {_show(k)} is not a short string")
                extra(x, sub)
            else:
                raise Invalid(sub, "unknown field")

    return check


def one_of(*checkers: Checker) -> Checker:
    def check(v: Any, path: str) -> None:
        errors = []
        for c in checkers:
            try:
                c(v, path)
                return
            except Invalid as e:
                errors.append(e.message)
        raise Invalid(path, " or ".join(errors))

    return check


# ------------------------------------------------------------------ entry points


def validate(data: Any, checker: Checker, where: str, hint: str = "") -> Any:
    """``data`` if it passes ``checker``; else one line naming ``where`` and the field."""
    try:
        anything()(data, "")
        checker(data, "")
    except Invalid as e:
        tail = f"; {hint}" if hint else ""
        raise EvoaeError(f"{where} is damaged (field {e}){tail}") from None
    return data


def load_json(path: str | Path, what: str, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse a JSON file after checking its size; one-line errors for every failure."""
    path = Path(path)
    try:
        if not path.is_file():
            if path.exists():
                raise EvoaeError(f"{what} {path} is not a regular file")
            raise EvoaeError(f"{what} {path} is missing")
        size = path.stat().st_size
        if size > max_bytes:
            raise EvoaeError(
                f"{what} {path} is {size} bytes, more than the {max_bytes} evoae reads: "
                "it is damaged or not evoae's"
            )
        text = path.read_text(encoding="utf-8")
        return json.loads(text, parse_constant=_no_constant)
    except EvoaeError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as e:
        detail = " ".join(str(getattr(e, "strerror", None) or e).split())[:200]
        raise EvoaeError(f"{what} {path} is unreadable or corrupted ({detail})") from None
    except RecursionError:
        raise EvoaeError(f"{what} {path} is corrupted (nested too deeply)") from None


def _no_constant(name: str) -> float:
    """JSON files evoae writes never hold NaN or Infinity literals."""
    if name == "Infinity":  # older files may hold an infinite fitness
        return math.inf
    raise ValueError(f"the literal {name} is not valid JSON")


# ------------------------------------------------------------------ settings

#: The declared settings (``evoae.settings.schema()``), generated into this JSON file so
#: the run reader checks stored settings without importing the settings layer (torch).
SETTINGS_SCHEMA = Path(__file__).with_name("settings_schema.json")
_settings_checker: tuple[Checker, dict[str, Checker]] | None = None


def _declared(d: dict[str, Any]) -> Checker:
    """The checker of one declared setting (see ``evoae.settings._declaration``)."""
    null, lo, hi = bool(d["null"]), d["low"], d["high"]
    kind = d["kind"]
    if kind == "bool":
        return boolean(null=null)
    if kind == "int":
        return integer(-_BIG if lo is None else lo, _BIG if hi is None else hi, null=null)
    if kind == "float":
        return number(-math.inf if lo is None else lo, math.inf if hi is None else hi, null=null)
    if kind == "str":
        choices = tuple(d["choices"]) if d["choices"] else None
        return string(256 if d["registry"] else 4096, choices=choices, null=null)
    if kind == "list":
        return list_of(string(4096), max_len=4096, null=null)
    if kind == "dict":
        return mapping(anything(4), max_len=64, null=null)
    return anything(4)


def _settings_checkers() -> tuple[Checker, dict[str, Checker]]:
    """(nested settings checker, strategy name -> options checker), built once."""
    global _settings_checker
    if _settings_checker is None:
        decl = json.loads(SETTINGS_SCHEMA.read_text(encoding="utf-8"))
        fields = {
            sec: record({}, {k: _declared(d) for k, d in opts.items()}, extra=anything(4))
            for sec, opts in decl["sections"].items()
        }
        strategy = record(
            {"name": string(256)}, {"options": mapping(anything(4), max_len=256)}, extra=anything(4)
        )
        strategies = {
            name: record({}, {k: _declared(d) for k, d in opts.items()}, extra=anything(4))
            for name, opts in decl["strategies"].items()
        }
        # evoae 0.1 stored every setting flat (the microbial GA's options among them).
        flat: dict[str, Checker] = {"seed": integer(0, MAX_SEED)}
        for opts in [*decl["sections"].values(), decl["strategies"].get("microbial", {})]:
            for k, d in opts.items():
                flat.setdefault("space_options" if k == "options" else k, _declared(d))
        strategies[""] = record({}, flat, extra=anything(4))
        # A flat name beside the sections is a hand edit: it must still be a valid value.
        nested = record(
            {"data": fields["data"]},
            {**flat, **fields, "strategy": strategy},
            extra=anything(4),
        )
        _settings_checker = nested, strategies
    return _settings_checker


def stored_settings(v: Any, path: str) -> None:
    """Checker of stored search settings, nested (evoae >= 0.2) or flat (0.1), against
    the declared settings' kinds and bounds (a known strategy's options too)."""
    nested, strategies = _settings_checkers()
    if not (isinstance(v, dict) and isinstance(v.get("data"), dict)):
        strategies[""](v, path)
        return
    nested(v, path)
    name = (v.get("strategy") or {}).get("name", "")
    if name and name in strategies:
        strategies[name](v["strategy"].get("options") or {}, f"{path}.strategy.options".lstrip("."))


def validate_settings(data: Any, where: str) -> dict[str, Any]:
    """Stored search settings (``settings.json`` or the journal's ``settings`` meta)."""
    return validate(data, stored_settings, where, "restore it or start a new run")


# ------------------------------------------------------------------ checkpoint

_HISTORY_ROW = mapping(number(null=True, inf=True), max_len=64)
CHECKPOINT = record(
    {
        "strategy": mapping(anything(16), max_len=256),
        "next_id": integer(0, 2**62),
        "history": list_of(_HISTORY_ROW),
        "trainings": integer(0, 2**62),
    },
    {"batches": integer(0, 2**62), "seconds": number(0, 1e10)},
    extra=anything(8),
)


def validate_checkpoint(
    data: Any, where: str = "checkpoint", *, journal_rows: int | None = None
) -> dict[str, Any]:
    """A ``checkpoint.json`` ready for ``restore``: shape, bounds and consistency.

    With ``journal_rows`` (the journal's row count) the checkpoint may not point past the
    journal: ``next_id <= journal_rows``. The strategy's own state is the strategy's to
    check (its ``load_state_dict`` raises ``ValueError``), whatever keys it names.
    """
    hint = "the run cannot be resumed from it; start a new run"
    validate(data, CHECKPOINT, where, hint)
    if data["trainings"] > data["next_id"]:
        raise EvoaeError(
            f"{where} is damaged (field trainings: {data['trainings']} trainings but only "
            f"{data['next_id']} evaluations); {hint}"
        )
    if journal_rows is not None and data["next_id"] > journal_rows:
        raise EvoaeError(
            f"{where} is damaged (field next_id: {data['next_id']} but the journal holds "
            f"{journal_rows} evaluations); {hint}"
        )
    return data


# ------------------------------------------------------------------ model.json, summary

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _sha256(v: Any, path: str) -> None:
    if not isinstance(v, str) or not _HEX64.match(v):
        raise Invalid(path, "expected a SHA-256 hex digest")


MODEL_JSON = record(
    {
        "format": string(32, choices=("evoae-model",)),
        "version": integer(1, 1),
        "spec": mapping(anything(4), max_len=64),
        "weights_sha256": _sha256,
    },
    {
        "family": string(32),
        "space": mapping(anything(6), max_len=256, null=True),
        "genome": mapping(anything(6), max_len=4096, null=True),
        "metrics": mapping(anything(4), max_len=256, null=True),
    },
    extra=anything(6),
)


def validate_model_json(data: Any, where: str) -> dict[str, Any]:
    """``model.json``: its format and digest, the spec an object (the spec's own schema
    is its family's: :func:`evoae.families.check_spec`)."""
    if isinstance(data, dict) and data.get("format") != "evoae-model":
        raise EvoaeError(f"{where} is not an evoae model description (field format)")
    validate(data, MODEL_JSON, where, "restore the file or retrain the model")
    if "family" in data and data["family"] != data["spec"].get("family"):
        raise EvoaeError(f"{where} is damaged (field family: differs from spec.family)")
    return data


#: ``final["vae"]``: a final VAE's collapse verdict and likelihood figures.
_VAE = record(
    {},
    {
        "active_units": integer(0, 2**31),
        "code_size": integer(1, 2**31),
        "sample_spread": number(0.0, 1e6),
        "collapsed": boolean(),
        "collapse_reason": string(4096, null=True),
        "health_split": string(32),
        "binarize": string(32),
        "nll_samples": integer(0, 2**31),
        "test_nll": number(null=True),
        "test_neg_elbo": number(null=True),
        # KL from the prior per latent dimension on the validation split (nats).
        "kl_per_dim": list_of(number(0.0), max_len=4096),
        "kl_threshold": number(0.0),
    },
    extra=anything(2),
    null=True,
)
#: ``final["candidates"]``: each finalist's final training (summaries before the final
#: stage trained several lack it).
_CANDIDATE = record(
    {},
    {
        "evaluation": integer(0, 2**62),
        "search_fitness": number(null=True, inf=True),
        "architecture": string(4096),
        "val_loss": number(null=True, inf=True),
        "fitness": number(null=True, inf=True),
        "epochs": integer(0, 10**9, null=True),
        "stop": string(32, choices=("plateau", "epochs", "time budget"), null=True),
        "status": string(32),
        "kept": boolean(),
        # Continued from the search's saved state of evaluation N (after E epochs) or
        # trained from scratch (with why, when a state was expected).
        "start": string(32, choices=("continued", "scratch")),
        "continued_from": integer(0, 2**62),
        "epochs_before": integer(0, 10**9),
        "start_note": string(4096),
    },
    extra=anything(2),
)
_FINAL = record(
    {},
    {
        "candidates": list_of(_CANDIDATE, max_len=100),
        "terms": mapping(number(null=True), max_len=64),
        "status": string(32),
        "error": string(4096, null=True),
        "pca_note": string(4096, null=True),
        "fallback": string(32, null=True),
        "fallback_message": string(4096, null=True),
        "pbt": mapping(anything(3), max_len=64, null=True),
        # What ended the final training (summaries before issue 19 lack both).
        "stop": string(32, choices=("plateau", "epochs", "time budget"), null=True),
        "converged": boolean(null=True),
        "vae": _VAE,
    },
    extra=number(null=True, inf=True),
)
#: What the search spent before the final stage (summaries before issue 19 lack it).
_SPENT = record(
    {},
    {
        "evaluations": integer(0, 2**62),
        "trainings": integer(0, 2**62),
        "epochs": integer(0, 2**62, null=True),
        "steps": integer(0, 2**62, null=True),
        "seconds": number(0.0),
    },
    null=True,
)
SUMMARY = record(
    {},
    {
        "run_dir": string(4096),
        "best_genome": mapping(anything(6), max_len=4096, null=True),
        "best_spec": mapping(anything(4), max_len=64, null=True),
        "best_fitness": number(null=True, inf=True),
        # The journal id of the returned model's candidate (summaries before it lack it).
        "best_evaluation": integer(0, 2**62, null=True),
        "final": _FINAL,
        "n_evaluations": integer(0, 2**62),
        "n_trainings": integer(0, 2**62),
        "seconds": number(0.0, null=True),
        "settings": stored_settings,
        "history": list_of(_HISTORY_ROW),
        "spent": _SPENT,
    },
    extra=anything(8),
)


def validate_summary(data: Any, where: str) -> dict[str, Any]:
    return validate(data, SUMMARY, where, "delete it and resume the run to rewrite it")


BEST_GENOME = record(
    {},
    {
        "genome": mapping(anything(6), max_len=4096),
        "spec": mapping(anything(4), max_len=64),
        "fitness": number(null=True, inf=True),
        "evaluation": integer(0, 2**62),
    },
    extra=anything(6),
)

_SHAPE = list_of(integer(0, 2**31, null=True), max_len=8)
EXPORT_JSON = record(
    {"files": list_of(mapping(anything(4), max_len=32), max_len=64)},
    {
        "source": string(4096),
        "family": string(32, null=True),
        "spec": mapping(anything(4), max_len=64),
        "weights_sha256": one_of(_sha256, lambda v, p: None if v is None else _sha256(v, p)),
    },
    extra=anything(6),
)


def validate_export_json(data: Any, where: str) -> dict[str, Any]:
    validate(data, EXPORT_JSON, where, "delete the export folder and export again")
    for i, f in enumerate(data["files"]):
        for side in ("input", "output"):
            shape = f.get(side, {}).get("shape", []) if isinstance(f.get(side), dict) else None
            try:
                if shape is None:
                    raise Invalid(f"files[{i}].{side}", "expected an object")
                _SHAPE(shape, f"files[{i}].{side}.shape")
            except Invalid as e:
                raise EvoaeError(f"{where} is damaged (field {e})") from None
    return data


#: File name -> validator, for :func:`evoae.runs.folder.read_json`.
BY_NAME: dict[str, Callable[[Any, str], Any]] = {
    "settings.json": validate_settings,
    "checkpoint.json": validate_checkpoint,
    "summary.json": validate_summary,
    "model.json": validate_model_json,
    "best_genome.json": lambda d, w: validate(d, BEST_GENOME, w),
    "export.json": validate_export_json,
}
