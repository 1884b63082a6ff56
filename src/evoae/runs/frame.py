"""A run's evaluations as one flat table: a pandas data frame or CSV.

One row per journal evaluation, like Optuna's ``study.trials_dataframe()``: the row's
own fields, one ``genome.<gene>`` column per gene, one ``terms.<name>`` column per
objective term, and with ``curves`` the learning curve of the evaluation (a list of
``(epoch, train_loss, val_loss)``; empty for a cache hit). Columns are the same for the
data frame and :func:`write_csv` (stdlib only), so ``runs show --csv`` needs no pandas.
"""

from __future__ import annotations

import csv
import json
import math
from typing import IO, TYPE_CHECKING, Any

from evoae.errors import EvoaeError

if TYPE_CHECKING:
    import pandas as pd

    from evoae.runs.reader import RunView

#: The row's own columns, first and in this order.
BASE_COLUMNS = (
    "id",
    "generation",
    "status",
    "fitness",
    "train_loss",
    "val_loss",
    "params",
    "seconds",
    "seed",
    "cached",
)


def columns(view: RunView, *, curves: bool = False) -> list[str]:
    """The table's columns: base, then genes and terms in first-seen order."""
    genes: dict[str, None] = {}
    terms: dict[str, None] = {}
    for r in view.rows:
        genes.update(dict.fromkeys(r.genome))
        terms.update(dict.fromkeys(r.terms))
    cols = [*BASE_COLUMNS, *(f"genome.{g}" for g in genes), *(f"terms.{t}" for t in terms)]
    return [*cols, "curve"] if curves else cols


def records(view: RunView, *, curves: bool = False) -> list[dict[str, Any]]:
    """One dict per evaluation, keyed by :func:`columns` (a missing gene or term: None).

    ``fitness`` of a failed evaluation is ``inf``, as in the journal."""
    cols = columns(view, curves=curves)
    out = []
    for r in view.rows:
        d: dict[str, Any] = dict.fromkeys(cols)
        d.update(
            id=r.id,
            generation=r.generation,
            status=r.status,
            fitness=r.fitness,
            train_loss=r.train_loss,
            val_loss=r.val_loss,
            params=r.params,
            seconds=r.seconds,
            seed=r.seed,
            cached=r.cached,
        )
        for k, v in r.genome.items():
            d[f"genome.{k}"] = v
        for k, v in r.terms.items():
            d[f"terms.{k}"] = v
        if curves:
            d["curve"] = list(view.curves.get(r.id, []))
        out.append(d)
    return out


def to_pandas(view: RunView, *, curves: bool = False) -> pd.DataFrame:
    """:func:`records` as a pandas data frame (pandas is the optional extra
    ``evoae[pandas]``)."""
    try:
        import pandas as pd
    except ImportError:
        raise EvoaeError(
            "a data frame needs pandas, which is not installed: pip install 'evoae[pandas]'"
        ) from None
    return pd.DataFrame.from_records(
        records(view, curves=curves), columns=columns(view, curves=curves)
    )


def _cell(v: Any) -> Any:
    """A CSV cell: lists and dicts (a gene such as ``[0.6, "relu"]``) as JSON; None empty."""
    if v is None:
        return ""
    if isinstance(v, list | tuple | dict):
        return json.dumps(v)
    if isinstance(v, float) and not math.isfinite(v):
        return "inf" if v > 0 else ("-inf" if v < 0 else "nan")
    if isinstance(v, str) and v[:1] in _FORMULA:
        return "'" + v  # a spreadsheet would run "=..." from a hand-edited journal as a formula
    return v


#: First characters a spreadsheet reads as a formula (OWASP's CSV-injection list).
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def write_csv(view: RunView, out: IO[str]) -> None:
    """The table as CSV (header row, then one row per evaluation) on ``out``."""
    cols = columns(view)
    w = csv.DictWriter(out, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for d in records(view):
        w.writerow({k: _cell(v) for k, v in d.items()})
