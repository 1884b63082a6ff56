"""The run journal: one SQLite row per evaluation, committed as it happens.

SQLite in WAL mode through the standard library. Each evaluation is committed before
the strategy hears of it, so a killed run loses at most the evaluation in flight.
Genomes, specs and loss terms are stored as JSON text; nothing is pickled.

Learning curves (:mod:`evoae.runs.curves`) live in the ``curves`` table, one row per
(evaluation, stage, epoch), written in the transaction of their evaluation row. Journals
written before curves existed have no such table: it is created by the first write
(never by a reader), and reading one gives no curves.
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evoae.errors import EvoaeError
from evoae.runs import curves as lc
from evoae.runs import lock as run_lock
from evoae.runs.schema import MAX_DEPTH, _depth, validate_settings

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS evaluations (
    id INTEGER PRIMARY KEY,
    generation INTEGER NOT NULL,
    genome TEXT NOT NULL,
    spec TEXT NOT NULL,
    fitness REAL NOT NULL,
    train_loss REAL,
    val_loss REAL,
    params INTEGER NOT NULL,
    seconds REAL NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,
    cached INTEGER NOT NULL,
    terms TEXT NOT NULL,
    error TEXT
);
"""
#: Learning curves (:mod:`evoae.runs.curves`): stage "search" (evaluation: its row id) or
#: "final" (evaluation: the retrained candidate's row id, -1 for none).
_CURVES = """
CREATE TABLE IF NOT EXISTS curves (
    evaluation INTEGER NOT NULL,
    stage TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    train_loss REAL,
    val_loss REAL,
    PRIMARY KEY (evaluation, stage, epoch)
)
"""


@dataclass
class Row:
    """One evaluation as stored. ``fitness`` is ``inf`` for failed candidates."""

    id: int
    generation: int
    genome: dict[str, Any]
    spec: dict[str, Any]
    fitness: float
    train_loss: float | None
    val_loss: float | None
    params: int
    seconds: float
    seed: int
    status: str
    cached: bool
    terms: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    #: The training's learning curve (:mod:`evoae.runs.curves`), journaled with the row
    #: in the ``curves`` table; rows read back leave it empty (see :meth:`Journal.curves`).
    curve: list[tuple[int, float | None, float | None]] = field(default_factory=list)

    def comparable(self) -> dict[str, Any]:
        """The row without wall-clock fields and curve: equal for equal runs on one
        machine (compare :meth:`Journal.curves` for the curves)."""
        d = asdict(self)
        d.pop("seconds")
        d.pop("curve")
        return d


class Journal:
    """An open journal file. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path, *, create: bool = False, readonly: bool = False) -> None:
        """Open (or with ``create``, make) a journal.

        ``readonly`` opens it without any write, not even the WAL checkpoint SQLite does
        on close: checks that may refuse a resume leave the file's bytes untouched.
        """
        self.path = Path(path)
        self.run = self.path.parent
        self.readonly = readonly
        self._locked = False
        self._lock_error: EvoaeError | None = None
        if not create and not self.path.is_file():
            raise EvoaeError(f"{self.path} is missing: this folder is not an evoae run")
        if not create:
            _check_header(self.path)
        if create:
            run_lock.adopt(self.run)  # the hold prepare_new took, or a new one
            self._locked = True
        elif not readonly:
            # One writer per run: the lock is needed to write, not to read. Held by
            # another process, the error is raised by the first write (set_meta, append).
            self._lock_error = run_lock.try_hold(self.run)
            self._locked = self._lock_error is None
        self._tmp: str | None = None
        self._rw = create
        try:
            if create:
                self._db = _connect_rw(self.path)
            else:
                # Reads never write: the connection that can write (and checkpoints the
                # WAL into the journal when closed) is opened by the first write, so a
                # command refused before writing leaves every byte as it found it.
                self._db, self._tmp = _connect_ro(self.path)
            if create:
                self._db.executescript(_SCHEMA + _CURVES + ";")
                self._db.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            self._db.execute("SELECT count(*) FROM evaluations").fetchone()
            if not create:
                # A torn or overwritten file can open fine and fail on a later page.
                # quick_check reads through the -wal file: a journal whose main file is
                # short because its pages still live in the WAL is complete.
                check = self._db.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise sqlite3.DatabaseError(check)
                self._check_ids()
                if not readonly:
                    # Every row is validated before anything is written: opening for
                    # writing can rewrite the header.
                    for _ in self.rows():
                        pass
        except sqlite3.DatabaseError as e:
            self.close()
            if create:
                raise EvoaeError(
                    f"cannot create the run journal {self.path} ({e}): free some space or fix "
                    "the folder, then start the run again with --overwrite"
                ) from None
            if "no such table" in str(e):
                raise EvoaeError(
                    f"run {self.run} never started: its journal {self.path.name} was not "
                    "completely created (a full disk?); nothing was evaluated, so start it "
                    "again with --overwrite"
                ) from None
            text = str(e)
            if isinstance(e, sqlite3.OperationalError) and any(
                w in text for w in ("unable to open", "disk I/O", "full", "readonly", "locked")
            ):
                raise EvoaeError(
                    f"cannot read the run journal {self.path} ({text}): check the disk's free "
                    "space and the folder's permissions"
                ) from None
            raise EvoaeError(
                f"{self.path} is not a usable run journal ({e}); it may be corrupted"
            ) from None
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
            self._db = None  # type: ignore[assignment]
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            self._tmp = None
        self._release()

    def _release(self) -> None:
        if self._locked:
            self._locked = False
            run_lock.release_hold(self.run)

    def _check_ids(self) -> None:
        """Evaluation ids must be 0, 1, ..., n-1: no negative ids, no gaps."""
        lo, hi, n = self._db.execute(
            "SELECT min(id), max(id), count(*) FROM evaluations"
        ).fetchone()
        if n and (lo != 0 or hi != n - 1):
            raise EvoaeError(
                f"the journal of run {self.run} is damaged (evaluation ids run from {lo} to {hi} "
                f"for {n} rows; they must be 0 to {n - 1}): restore it or start a new run"
            )

    def _writable(self) -> sqlite3.Connection:
        if self._lock_error is not None:
            raise self._lock_error
        if self.readonly:
            raise EvoaeError(f"the run journal {self.path} was opened read-only")
        if not self._rw:
            try:
                rw = _connect_rw(self.path)
            except sqlite3.DatabaseError as e:
                raise EvoaeError(
                    f"cannot write the run journal {self.path} ({e}): fix the disk or the "
                    "folder's permissions"
                ) from None
            self._db.close()
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
                self._tmp = None
            self._db, self._rw = rw, True
        return self._db

    def set_meta(self, key: str, value: Any) -> None:
        self._writable().execute(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value))
        )

    def get_meta(self, key: str, default: Any = None) -> Any:
        """A stored value; ``settings`` is checked against its schema."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            return default
        where = f"journal meta {key!r} of run {self.run}"
        value = _json_field(row[0], where, max_len=MAX_META)
        if key == "settings":
            validate_settings(value, where)
        return value

    def append(self, row: Row) -> None:
        """Commit one evaluation and its learning curve in one transaction (durable when
        this returns; a kill leaves both or neither)."""
        with self._transaction() as db:
            self._insert(db, row)
            self._put_curve(db, "search", row.id, row.curve)

    def set_final_curve(self, evaluation: int, curve: lc.Curve) -> None:
        """Replace the final stage's curve (``evaluation``: the journal id of the
        candidate retrained, -1 for none) in one transaction."""
        with self._transaction() as db:
            db.execute(_CURVES)
            db.execute("DELETE FROM curves WHERE stage = 'final'")
            self._put_curve(db, "final", evaluation, curve)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._writable()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    @staticmethod
    def _put_curve(db: sqlite3.Connection, stage: str, evaluation: int, curve: lc.Curve) -> None:
        points = lc.downsample([lc.check_point(*p) for p in curve])
        if points:
            db.execute(_CURVES)  # journals written before curves existed
            db.executemany(
                "INSERT INTO curves VALUES (?,?,?,?,?)",
                [(evaluation, stage, e, t, v) for e, t, v in points],
            )

    def curves(self, stage: str | None = None) -> dict[int, lc.Curve]:
        """Learning curves by evaluation id, each sorted by epoch: of ``stage``
        ("search" or "final"; None: both, merged per id, so pass a stage). A journal
        written before curves existed gives ``{}``. Every stored value is checked."""
        if stage is not None and stage not in lc.STAGES:
            raise ValueError(f"stage must be one of {lc.STAGES} or None, got {stage!r}")
        has = self._db.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'curves'"
        ).fetchone()[0]
        if not has:
            return {}
        n = len(self)
        where = "" if stage is None else "WHERE stage = ?"
        cur = self._db.execute(
            f"SELECT evaluation, stage, epoch, train_loss, val_loss FROM curves {where} "
            "ORDER BY evaluation, epoch, stage",
            () if stage is None else (stage,),
        )
        out: dict[int, lc.Curve] = {}
        limit = lc.MAX_CURVE * (len(lc.STAGES) if stage is None else 1)
        try:
            for ev, st, epoch, train, val in cur:
                if not isinstance(ev, int) or isinstance(ev, bool) or not -1 <= ev < n:
                    raise ValueError(f"evaluation {ev!r} is not -1 or a journal row id"[:100])
                if st not in lc.STAGES:
                    raise ValueError(f"stage {st!r} is not search or final"[:100])
                points = out.setdefault(ev, [])
                if len(points) >= limit:
                    raise ValueError(f"evaluation {ev} has more than {limit} points")
                points.append(lc.check_point(epoch, train, val))
        except ValueError as e:
            raise EvoaeError(
                f"the learning curves of run {self.run} are damaged ({e}): restore the "
                "journal or start a new run"
            ) from None
        return out

    def _insert(self, db: sqlite3.Connection, row: Row) -> None:
        db.execute(
            "INSERT INTO evaluations VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                row.id,
                row.generation,
                json.dumps(row.genome),
                json.dumps(row.spec),
                row.fitness,
                row.train_loss,
                row.val_loss,
                row.params,
                row.seconds,
                row.seed,
                row.status,
                int(row.cached),
                json.dumps(row.terms),
                row.error,
            ),
        )

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM evaluations").fetchone()[0])

    def rows(self, start: int = 0) -> Iterator[Row]:
        """Rows with ``id >= start`` in id order."""
        cur = self._db.execute("SELECT * FROM evaluations WHERE id >= ? ORDER BY id", (start,))
        return self._decoded(cur, max(start, 0))

    def _decoded(self, cur: sqlite3.Cursor, start: int) -> Iterator[Row]:
        for expected, r in enumerate(cur, start=start):
            row = decode_row(r, self.run)
            if row.id != expected:
                raise EvoaeError(
                    f"journal row {row.id} of run {self.run} is damaged (field id: expected "
                    f"{expected}, the ids have a gap)"
                )
            yield row

    def get(self, eval_id: int) -> Row | None:
        r = self._db.execute("SELECT * FROM evaluations WHERE id = ?", (eval_id,)).fetchone()
        return None if r is None else decode_row(r, self.run)

    def best(self) -> Row | None:
        cur = self._db.execute(
            "SELECT id FROM evaluations WHERE status != 'failed' ORDER BY fitness, id LIMIT 1"
        ).fetchone()
        return None if cur is None else self.get(cur[0])


#: Largest JSON text accepted in a journal field (a genome or spec is < 2 KiB).
MAX_FIELD = 1024 * 1024
MAX_META = 16 * 1024 * 1024
STATUSES = ("ok", "failed")


class _BadField(Exception):
    pass


def _json_field(text: Any, where: str, *, max_len: int = MAX_FIELD) -> Any:
    if not isinstance(text, str) or len(text) > max_len:
        raise EvoaeError(f"{where} is damaged (not JSON text of at most {max_len} characters)")
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError):
        raise EvoaeError(f"{where} is damaged (not valid JSON)") from None
    if _depth(value, MAX_DEPTH + 1) > MAX_DEPTH:
        raise EvoaeError(f"{where} is damaged (nested deeper than {MAX_DEPTH} levels)")
    return value


def _int(v: Any, name: str, lo: int = 0, hi: int = 2**63 - 1) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise _BadField(f"field {name}: expected an integer in [{lo}, {hi}], got {v!r}"[:160])
    return v


def _float(v: Any, name: str, *, null: bool, inf: bool = False) -> float | None:
    if v is None:
        if null:
            return None
        raise _BadField(f"field {name}: missing")
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise _BadField(f"field {name}: expected a number, got {type(v).__name__}")
    v = float(v)
    if not (math.isfinite(v) or (inf and v == math.inf)):
        raise _BadField(f"field {name}: expected a finite number, got {v}")
    return v


def _dict(text: Any, name: str) -> dict[str, Any]:
    if not isinstance(text, str) or len(text) > MAX_FIELD:
        raise _BadField(f"field {name}: not JSON text of at most {MAX_FIELD} characters")
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError):
        raise _BadField(f"field {name}: not valid JSON") from None
    if not isinstance(value, dict):
        raise _BadField(f"field {name}: expected a JSON object")
    if _depth(value, MAX_DEPTH + 1) > MAX_DEPTH:
        raise _BadField(f"field {name}: nested deeper than {MAX_DEPTH} levels")
    return value


def decode_row(r: tuple[Any, ...], run: Path | str = "?") -> Row:
    """A stored row back to a :class:`Row`, every field checked.

    A bad field is one line: "journal row N of RUN is damaged (field ...)".
    """
    rid = r[0] if r else "?"
    try:
        if len(r) != 14:
            raise _BadField(f"{len(r)} columns instead of 14")
        rid = _int(r[0], "id")
        status = r[10]
        if status not in STATUSES:
            raise _BadField(f"field status: expected ok or failed, got {status!r}"[:120])
        terms = _dict(r[12], "terms")
        for k, v in terms.items():
            _float(v, f"terms.{k}", null=True)
        error = r[13]
        if error is not None and (not isinstance(error, str) or len(error) > 100_000):
            raise _BadField("field error: expected text or null")
        cached = _int(r[11], "cached", 0, 1)
        return Row(
            id=rid,
            generation=_int(r[1], "generation"),
            genome=_dict(r[2], "genome"),
            spec=_dict(r[3], "spec"),
            # SQLite stores NaN as NULL: a failed candidate's fitness reads back as inf.
            fitness=_float(r[4], "fitness", null=True, inf=True) if r[4] is not None else math.inf,
            train_loss=_float(r[5], "train_loss", null=True, inf=True),
            val_loss=_float(r[6], "val_loss", null=True, inf=True),
            params=_int(r[7], "params"),
            seconds=_float(r[8], "seconds", null=False),  # type: ignore[arg-type]
            seed=_int(r[9], "seed"),
            status=status,
            cached=bool(cached),
            terms=terms,
            error=error,
        )
    except _BadField as e:
        raise EvoaeError(
            f"journal row {rid} of run {run} is damaged ({e}): restore the journal or start a "
            "new run"
        ) from None


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _connect_rw(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


def _connect_ro(path: Path) -> tuple[sqlite3.Connection, str | None]:
    """A connection that reads ``path`` and never writes a byte near it.

    Without a non-empty ``-wal`` file the main file is complete and is opened
    ``immutable`` (SQLite then creates no ``-shm``, takes no lock and checkpoints
    nothing). With one, even a read-only connection would write the ``-shm`` index (and
    cannot open at all on a read-only medium), so a private copy of the journal and its
    WAL is read instead; the copy is deleted on close. Returns the connection and the
    copy's folder (None when the journal itself is opened).
    """
    wal = path.with_name(path.name + "-wal")
    try:
        pending = wal.is_file() and wal.stat().st_size > 0
        if not pending:
            uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
            return sqlite3.connect(uri, uri=True, isolation_level=None), None
        tmp = tempfile.mkdtemp(prefix="evoae-journal-")
        try:
            copy = Path(tmp) / path.name
            # The WAL first: a checkpoint by a live writer in between only moves pages
            # into the main file, whose copy then holds them too.
            shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
            shutil.copyfile(path, copy)
            uri = f"{copy.as_uri()}?mode=ro"
            return sqlite3.connect(uri, uri=True, isolation_level=None), tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    except OSError as e:
        raise EvoaeError(
            f"cannot read the run journal {path} ({e.strerror or e}): free some space in "
            f"{tempfile.gettempdir()} or fix the permissions"
        ) from None


def looks_like_journal(path: Path) -> bool:
    """True for a readable SQLite file with an ``evaluations`` table (never writes)."""
    if not path.is_file() or path.is_symlink():
        return False
    try:
        with Journal(path, readonly=True):
            return True
    except EvoaeError:
        return False


def _check_header(path: Path) -> None:
    """Refuse a file that is not SQLite before opening it (opening never fixes one).

    Only the magic string is checked here; completeness is SQLite's own ``quick_check``,
    which sees the pages still held in the ``-wal`` file (a run stopped by a full disk
    has a main file shorter than its header says until the WAL is checkpointed).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(100)
    except OSError as e:
        raise EvoaeError(
            f"run journal {path} cannot be read ({e.strerror}): fix its permissions"
        ) from None
    wal = path.with_name(path.name + "-wal")
    if not head and wal.is_file() and wal.stat().st_size > 0:
        return  # every page, the first included, may still be in the WAL
    if len(head) < 100 or not head.startswith(_SQLITE_MAGIC):
        raise EvoaeError(
            f"{path} is not a usable run journal (not an SQLite database); it is corrupted"
        )
