"""An Optuna storage mirroring a run's journal, so ``optuna-dashboard`` can open any run.

The journal stays the source of truth; the mirror is derived from it and rebuilt when
it is missing or stale. One study per run, one trial per evaluation:

* parameters: the genome's genes (a tuple-valued gene such as a dense hidden layer as
  ``hidden_1.0``, ``hidden_1.1``, as ``--strategy tpe`` names them), with the
  distributions of the space's gene domains; a gene without a domain, or whose values
  fall outside it, gets a categorical distribution of the values observed;
* value: the fitness (minimised); for a strategy with several objectives (``nsga2``:
  fitness and parameter count) one value per objective, so the dashboard draws the
  Pareto front; a failed evaluation is a ``FAIL`` trial;
* intermediate values: the per-epoch validation loss, when the journal records learning
  curves (``Journal.curves("search")``); the training loss is the user attribute
  ``train_curve``; the final training's curves are the study attribute ``final_curves``;
* user attributes: ``eval_id``, ``generation``, ``terms`` (the validation loss among
  them), ``status``, ``seconds``, ``spec``, ``params``, ``cached``, ``train_loss`` and,
  for a failed one, ``error`` (each costs a database row per trial: few are kept).

Staleness: the study's user attribute ``evoae_fingerprint`` holds the journal's row
count, last id, curve count, the modification times and sizes of ``journal.sqlite`` and
its ``-wal`` file, and :data:`FORMAT`. A mirror whose fingerprint differs from the
journal's is rebuilt (:func:`ensure_mirror`); a study served live is extended in place
when the journal only grew (:func:`sync_study`).

Where: ``RUN/optuna.sqlite3`` when evoae may write there (a run whose manifest records
digests, a writable folder, no live search holding it), written atomically through the
write guard, so ``--overwrite`` removes it and a user's file of that name is never
replaced. Otherwise (a read-only folder, a run made before digests, a search still
running) under ``$XDG_CACHE_HOME/evoae/dashboard/`` (``~/.cache`` by default): the run's
bytes are never touched.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sqlite3
import tempfile
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from evoae.errors import EvoaeError
from evoae.runs import folder as rf
from evoae.runs import lock as run_lock
from evoae.runs.guard import is_recorded
from evoae.runs.journal import Journal, Row
from evoae.runs.manifest import read_digests
from evoae.runs.reader import flat_settings

#: The mirror's file name in a run folder.
MIRROR = "optuna.sqlite3"
#: Bumped when the mirror's layout changes: older mirrors are then stale.
FORMAT = 1
#: Study user attribute holding the journal fingerprint the mirror was built from.
FINGERPRINT_ATTR = "evoae_fingerprint"
_INSTALL = "pip install 'evoae[dashboard]'"


def optuna_module() -> Any:
    """Optuna, or the one-line error naming the extra to install."""
    try:
        import optuna
    except ImportError:
        raise EvoaeError(f"the dashboard needs Optuna and optuna-dashboard: {_INSTALL}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@dataclass
class Snapshot:
    """What the mirror is built from: a run's journal read once (read-only)."""

    run: Path
    rows: list[Row]
    settings: dict[str, Any]
    space: dict[str, Any] | None
    #: Per-epoch (epoch, train loss, validation loss) of each evaluation's training...
    curves: dict[int, list[tuple[int, float | None, float | None]]]
    #: ... and of the final training(s), by the id of the evaluation retrained (-1: none).
    final_curves: dict[int, list[tuple[int, float | None, float | None]]]
    fingerprint: dict[str, Any]
    #: When the run started, as near as the folder tells (its settings file's time).
    started: float = 0.0

    def times(self) -> dict[int, tuple[datetime, datetime]]:
        """Each evaluation's start and end for Optuna (which needs both): the run's start
        plus the seconds of the evaluations before it, so durations are the journal's
        and the order is the journal's; wall-clock times only for a serial executor."""
        out, t = {}, self.started
        for row in self.rows:
            out[row.id] = (datetime.fromtimestamp(t), datetime.fromtimestamp(t + row.seconds))
            t += row.seconds
        return out


def _stat(path: Path) -> list[int]:
    try:
        st = path.stat()
    except OSError:
        return [0, 0]
    return [st.st_mtime_ns, st.st_size]


def journal_stats(run: Path) -> list[int]:
    """Modification times and sizes of the journal and its ``-wal`` file: they change
    with every committed row (and with a WAL checkpoint, which only costs a re-read)."""
    path = run / rf.JOURNAL
    return [*_stat(path), *_stat(path.with_name(path.name + "-wal"))]


def read_snapshot(run: str | Path) -> Snapshot:
    """Read ``run``'s journal without writing a byte (WAL-aware: a live search's
    uncommitted-to-main pages are read from a private copy)."""
    run = Path(run)
    if not rf.is_run(run):
        raise EvoaeError(f"{run} is not an evoae run folder (no {rf.JOURNAL})")
    # Stat before reading: a row committed in between makes the next check see a change.
    stats = journal_stats(run)
    with Journal(run / rf.JOURNAL, readonly=True) as j:
        rows = list(j.rows())
        settings = j.get_meta("settings")
        space = j.get_meta("space")
        curves = j.curves("search")  # every point checked: damage is one line
        final = j.curves("final")
    if (run / rf.SETTINGS).is_file():
        settings = rf.read_json(run / rf.SETTINGS, "run settings")
    if not isinstance(settings, dict):
        raise EvoaeError(f"run {run} has no settings: the run folder is damaged")
    fingerprint = {
        "format": FORMAT,
        "rows": len(rows),
        "last_id": rows[-1].id if rows else -1,
        "curves": [sum(len(c) for c in curves.values()), sum(len(c) for c in final.values())],
        "files": stats,
    }
    return Snapshot(
        run=run,
        rows=rows,
        settings=flat_settings(settings),
        space=space if isinstance(space, dict) else None,
        curves=curves,
        final_curves=final,
        fingerprint=fingerprint,
        started=_started(run),
    )


def _started(run: Path) -> float:
    for name in (rf.SETTINGS, rf.JOURNAL):
        try:
            return (run / name).stat().st_mtime
        except OSError:
            continue
    return 0.0


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


# ---------------------------------------------------------------- parameters


def _scalar(v: Any) -> Any:
    """A value Optuna's categorical distribution accepts (nested values as JSON text)."""
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return json.dumps(v, sort_keys=True)


def _flat_params(genome: dict[str, Any], parts: dict[str, int]) -> dict[str, Any]:
    """Genes as Optuna parameters: a tuple gene of the space splits into ``name.j``."""
    out: dict[str, Any] = {}
    for name, value in genome.items():
        n = parts.get(name)
        if n is not None and isinstance(value, list | tuple) and len(value) == n:
            out.update({f"{name}.{j}": _scalar(v) for j, v in enumerate(value)})
        else:
            out[name] = _scalar(value)
    return out


def _space_domains(space_cfg: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, int]]:
    """Parameter name -> the space's domain (Float / Int / Choice), and the tuple genes'
    part counts. An unreadable space gives none: every parameter is then categorical."""
    if space_cfg is None:
        return {}, {}
    try:
        from evoae.families import space_from_config
        from evoae.spaces import Parts

        space = space_from_config(space_cfg)
    except (EvoaeError, KeyError, TypeError, ValueError):
        return {}, {}
    domains: dict[str, Any] = {}
    parts: dict[str, int] = {}
    for gene in space.genes:
        if isinstance(gene.domain, Parts):
            parts[gene.name] = len(gene.domain.parts)
            for j, dom in enumerate(gene.domain.parts):
                domains[f"{gene.name}.{j}"] = dom
        elif gene.domain is not None:
            domains[gene.name] = gene.domain
    return domains, parts


def distributions(snap: Snapshot) -> tuple[dict[str, Any], dict[str, int]]:
    """Each parameter's Optuna distribution (from the space where every observed value
    fits it, else categorical over the observed values), and the tuple genes."""
    optuna = optuna_module()
    d = optuna.distributions
    from evoae.spaces import Choice, Float, Int

    domains, parts = _space_domains(snap.space)
    observed: dict[str, list[Any]] = {}
    for row in snap.rows:
        for k, v in _flat_params(row.genome, parts).items():
            observed.setdefault(k, []).append(v)
    out: dict[str, Any] = {}
    for name, values in observed.items():
        dom = domains.get(name)
        dist: Any = None
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if isinstance(dom, Float) and numbers:
            dist = d.FloatDistribution(dom.low, dom.high, log=dom.log)
        elif isinstance(dom, Int) and all(isinstance(v, int) for v in values) and numbers:
            dist = d.IntDistribution(dom.low, dom.high, log=dom.log)
        elif isinstance(dom, Choice):
            try:
                dist = d.CategoricalDistribution(tuple(_scalar(o) for o in dom.options))
            except ValueError:
                dist = None
        if dist is None or not all(_contains(dist, v) for v in values):
            unique = list(dict.fromkeys(values))
            try:
                unique.sort(key=lambda v: (type(v).__name__, v))
            except TypeError:
                pass
            dist = d.CategoricalDistribution(tuple(unique))
        out[name] = dist
    return out, parts


def _contains(dist: Any, value: Any) -> bool:
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError, AssertionError):
        return False


# ---------------------------------------------------------------- studies


def objectives(settings: dict[str, Any]) -> tuple[str, ...]:
    """The objectives the run's strategy minimised (``("fitness",)`` for most)."""
    name = settings.get("strategy")
    if not isinstance(name, str):
        return ("fitness",)
    try:
        from evoae.evolution import strategy_class

        names = tuple(strategy_class(name).objectives)
    except (EvoaeError, AttributeError, TypeError):
        return ("fitness",)
    return names if names and all(isinstance(n, str) for n in names) else ("fitness",)


def _objective_value(row: Row, name: str) -> float | None:
    if name == "fitness":
        v: Any = row.fitness
    elif name == "params":
        v = row.params
    else:
        v = row.terms.get(name)
    return _finite(v)


def _rows_digest(rows: Sequence[Row]) -> str:
    """One digest of the rows as mirrored (wall-clock seconds included: they are shown)."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(row.__dict__, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _trial(
    snap: Snapshot,
    row: Row,
    dists: dict[str, Any],
    parts: dict[str, int],
    times: dict[int, tuple[datetime, datetime]],
) -> Any:
    optuna = optuna_module()
    names = objectives(snap.settings)
    values = [_objective_value(row, n) for n in names]
    failed = row.status == "failed" or any(v is None for v in values)
    curve = snap.curves.get(row.id, [])
    attrs: dict[str, Any] = {
        "eval_id": row.id,
        "generation": row.generation,
        "status": row.status,
        "cached": row.cached,
        "seconds": row.seconds,
        "params": row.params,
        "train_loss": _finite(row.train_loss),
        "terms": {k: _finite(v) for k, v in row.terms.items()},
        "spec": row.spec,
    }
    if row.error:
        attrs["error"] = row.error[:2000]
    if curve:
        attrs["train_curve"] = [[e, t] for e, t, _ in curve]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trial = optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL if failed else optuna.trial.TrialState.COMPLETE,
            values=None if failed else values,
            params=_flat_params(row.genome, parts),
            distributions={k: dists[k] for k in _flat_params(row.genome, parts)},
            user_attrs=attrs,
            intermediate_values={e: v for e, _, v in curve if v is not None},
        )
    trial.datetime_start, trial.datetime_complete = times[row.id]
    return trial


def _study_attrs(snap: Snapshot, dists: dict[str, Any]) -> dict[str, Any]:
    s = snap.settings
    return {
        "evoae_run": str(snap.run.resolve()),
        "evoae_distributions": _dists_key(dists),
        "evoae_rows": _rows_digest(snap.rows),
        "evoae_curved": sum(1 for i in snap.curves if i < len(snap.rows)),
        "strategy": s.get("strategy"),
        "model": s.get("model"),
        "code_size": s.get("code_size"),
        "dataset": s.get("dataset"),
        "seed": s.get("seed"),
        "objectives": list(objectives(s)),
        "times": "run start + the seconds of the evaluations before (exact for a serial "
        "executor; durations always the journal's)",
        "final_curves": {
            str(k): [list(p) for p in v] for k, v in sorted(snap.final_curves.items())
        },
    }


def _dists_key(dists: dict[str, Any]) -> str:
    optuna = optuna_module()
    text = json.dumps(
        {k: optuna.distributions.distribution_to_json(v) for k, v in sorted(dists.items())}
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_study(
    storage: Any, snap: Snapshot, name: str, stop: threading.Event | None = None
) -> Any:
    """Create study ``name`` in ``storage`` holding every evaluation of ``snap``
    (``stop``: checked between chunks of trials, see :func:`ensure_mirror`)."""
    optuna = optuna_module()
    dists, parts = distributions(snap)
    names = objectives(snap.settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # set_metric_names is experimental
        study = optuna.create_study(
            storage=storage, study_name=name, directions=["minimize"] * len(names)
        )
        study.set_metric_names(list(names))
    for key, value in _study_attrs(snap, dists).items():
        study.set_user_attr(key, value)
    times = snap.times()
    for i in range(0, len(snap.rows), 32):
        if stop is not None and stop.is_set():
            raise Stopped()
        chunk = snap.rows[i : i + 32]
        study.add_trials([_trial(snap, row, dists, parts, times) for row in chunk])
    study.set_user_attr(FINGERPRINT_ATTR, snap.fingerprint)
    return study


def sync_study(storage: Any, snap: Snapshot, name: str) -> str:
    """Bring study ``name`` up to date with ``snap``: nothing when its fingerprint matches,
    the new trials when the journal only grew, else the study rebuilt. Returns what was
    done: ``"fresh"``, ``"extended"`` or ``"rebuilt"``."""
    optuna = optuna_module()
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        build_study(storage, snap, name)
        return "rebuilt"
    attrs = study.user_attrs
    if attrs.get(FINGERPRINT_ATTR) == snap.fingerprint:
        return "fresh"
    n = len(study.get_trials(deepcopy=False))
    dists, parts = distributions(snap)
    grew = (
        0 < n <= len(snap.rows)
        and attrs.get("evoae_rows") == _rows_digest(snap.rows[:n])
        and attrs.get("evoae_distributions") == _dists_key(dists)
        # a curve recorded late for a mirrored row: intermediate values cannot be added
        and attrs.get("evoae_curved") == sum(1 for i in snap.curves if i < n)
    )
    if not grew:
        optuna.delete_study(study_name=name, storage=storage)
        build_study(storage, snap, name)
        return "rebuilt"
    times = snap.times()
    study.add_trials([_trial(snap, row, dists, parts, times) for row in snap.rows[n:]])
    for key, value in _study_attrs(snap, dists).items():
        study.set_user_attr(key, value)
    study.set_user_attr(FINGERPRINT_ATTR, snap.fingerprint)
    return "extended"


def storage_for(path: Path) -> Any:
    """An Optuna RDB storage on the SQLite file ``path``, a private file evoae builds: no
    fsync per trial (it is copied into place whole, or thrown away)."""
    optuna = optuna_module()

    def connect() -> sqlite3.Connection:
        db = sqlite3.connect(str(path), check_same_thread=False)
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA journal_mode=MEMORY")
        return db

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optuna.storages.RDBStorage(f"sqlite:///{path}", engine_kwargs={"creator": connect})


def close_storage(storage: Any) -> None:
    engine = getattr(storage, "engine", None)
    if engine is not None:
        engine.dispose()


# ---------------------------------------------------------------- the mirror file


def cache_dir() -> Path:
    """Where mirrors of runs evoae may not write into live."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join("~", ".cache")
    return Path(base).expanduser() / "evoae" / "dashboard"


def writable_run(run: Path) -> bool:
    """Whether the mirror may go into ``run`` itself: a run whose manifest records digests
    (so the guard can prove the file is evoae's), a writable folder, no live search."""
    try:
        if read_digests(run) is None:
            return False
    except EvoaeError:
        return False
    if not os.access(run, os.W_OK) or run_lock.is_locked(run):
        return False
    # a file of that name evoae did not write (the user's own, a link, or one edited
    # since) stays untouched: the mirror then goes to the cache
    mirror = run / MIRROR
    return not (mirror.exists() or mirror.is_symlink()) or is_recorded(run, mirror)


def mirror_path(run: str | Path) -> Path:
    """Where run ``run``'s mirror lives (in the run, or in the cache)."""
    run = Path(run)
    return run / MIRROR if writable_run(run) else _cached_path(run)


def _cached_path(run: Path) -> Path:
    key = hashlib.sha256(os.fsencode(os.path.realpath(run))).hexdigest()[:16]
    return cache_dir() / key / MIRROR


def stored_fingerprint(path: Path) -> Any:
    """The fingerprint a mirror file was built from, read without writing; None for a
    missing, foreign or damaged file (then it is rebuilt)."""
    if not path.is_file() or path.is_symlink():
        return None
    try:
        uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
        db = sqlite3.connect(uri, uri=True)
        try:
            found = db.execute(
                "SELECT value_json FROM study_user_attributes WHERE key = ?", (FINGERPRINT_ATTR,)
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    if len(found) != 1 or not isinstance(found[0][0], str) or len(found[0][0]) > 10_000:
        return None
    try:
        return json.loads(found[0][0])
    except ValueError:
        return None


def study_name(run: Path) -> str:
    return run.resolve().name or "run"


class Stopped(Exception):
    """A mirror build abandoned on request (the server is shutting down)."""


def ensure_mirror(
    run: str | Path, stop: threading.Event | None = None
) -> tuple[Path, Snapshot, bool]:
    """Build ``run``'s mirror when missing or stale. Returns its path, the snapshot it
    reflects and whether it was (re)built. ``stop``, once set, abandons the build
    (:class:`Stopped`) and leaves the previous mirror in place."""
    run = Path(run)
    snap = read_snapshot(run)
    path = mirror_path(run)
    if stored_fingerprint(path) == snap.fingerprint:
        return path, snap, False
    tmp: Path | None = None
    try:
        # Built in a private folder, without the run's lock (a search may start meanwhile)
        tmp = Path(tempfile.mkdtemp(prefix="evoae-mirror-"))
        built = tmp / MIRROR
        storage = storage_for(built)
        try:
            build_study(storage, snap, study_name(run), stop)
        finally:
            close_storage(storage)
        # ... and put in place whole: in the run while holding its lock, so no search
        # starts (and rewrites the manifest) during the write; else in the cache.
        if path.parent == run:
            if run_lock.try_hold(run) is None:
                try:
                    from evoae.runs.atomic import atomic_write_bytes

                    # claim: a file of that name the user put there, or edited, is refused
                    atomic_write_bytes(path, built.read_bytes())
                finally:
                    run_lock.release_hold(run)
                return path, snap, True
            path = _cached_path(run)  # a search started meanwhile: leave the run alone
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        shutil.copyfile(built, part)
        os.replace(part, path)
    except OSError as e:
        raise EvoaeError(
            f"cannot write the dashboard mirror {path} ({e.strerror or e}): free some space "
            "or fix the folder's permissions"
        ) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return path, snap, True


def unique_names(runs: Sequence[Path]) -> list[str]:
    """One study name per run (its folder name; repeats get ``-2``, ``-3``...)."""
    names: list[str] = []
    for run in runs:
        base = study_name(run)
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names.append(name)
    return names
