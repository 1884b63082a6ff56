"""The run journal: one SQLite row per evaluation, committed as it happens.

SQLite in WAL mode through the standard library. Each evaluation is committed before
the strategy hears of it, so a killed run loses at most the evaluation in flight.
Genomes, specs and loss terms are stored as JSON text; nothing is pickled.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evoae.errors import EvoaeError

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

    def comparable(self) -> dict[str, Any]:
        """The row without wall-clock fields: equal for equal runs on one machine."""
        d = asdict(self)
        d.pop("seconds")
        return d


class Journal:
    """An open journal file. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path, *, create: bool = False, readonly: bool = False) -> None:
        """Open (or with ``create``, make) a journal.

        ``readonly`` opens it without any write, not even the WAL checkpoint SQLite does
        on close: checks that may refuse a resume leave the file's bytes untouched.
        """
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise EvoaeError(f"{self.path} is missing: this folder is not an evoae run")
        if not create:
            _check_header(self.path)
        try:
            if readonly:
                # Without a -wal file the main file is complete: "immutable" then skips
                # the -shm/-wal files a read-only WAL reader would otherwise create.
                wal = self.path.with_name(self.path.name + "-wal").exists()
                uri = f"{self.path.resolve().as_uri()}?mode=ro" + ("" if wal else "&immutable=1")
                self._db = sqlite3.connect(uri, uri=True, isolation_level=None)
            else:
                self._db = sqlite3.connect(str(self.path), isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
            if create:
                self._db.executescript(_SCHEMA)
                self._db.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            self._db.execute("SELECT count(*) FROM evaluations").fetchone()
            if not create:
                # A torn or overwritten file can open fine and fail on a later page.
                check = self._db.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise sqlite3.DatabaseError(check)
        except sqlite3.DatabaseError as e:
            raise EvoaeError(
                f"{self.path} is not a usable run journal ({e}); it may be corrupted"
            ) from None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def set_meta(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def append(self, row: Row) -> None:
        """Commit one evaluation (autocommit: durable when this returns)."""
        self._db.execute(
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
        return (_decode(r) for r in cur)

    def get(self, eval_id: int) -> Row | None:
        r = self._db.execute("SELECT * FROM evaluations WHERE id = ?", (eval_id,)).fetchone()
        return None if r is None else _decode(r)

    def best(self) -> Row | None:
        cur = self._db.execute(
            "SELECT id FROM evaluations WHERE status != 'failed' ORDER BY fitness, id LIMIT 1"
        ).fetchone()
        return None if cur is None else self.get(cur[0])


def _decode(r: tuple[Any, ...]) -> Row:
    """A stored row back to a :class:`Row`."""
    return Row(
        id=r[0],
        generation=r[1],
        genome=json.loads(r[2]),
        spec=json.loads(r[3]),
        fitness=r[4] if r[4] is not None else float("inf"),
        train_loss=r[5],
        val_loss=r[6],
        params=r[7],
        seconds=r[8],
        seed=r[9],
        status=r[10],
        cached=bool(r[11]),
        terms=json.loads(r[12]),
        error=r[13],
    )


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _check_header(path: Path) -> None:
    """Refuse a file that is not SQLite or is shorter than its header says, before opening.

    Opening a damaged file with SQLite can rewrite its header (switching it to WAL); this
    check reads 100 bytes and never writes.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(100)
        size = path.stat().st_size
    except OSError as e:
        raise EvoaeError(
            f"run journal {path} cannot be read ({e.strerror}): fix its permissions"
        ) from None
    if len(head) < 100 or not head.startswith(_SQLITE_MAGIC):
        raise EvoaeError(
            f"{path} is not a usable run journal (not an SQLite database); it is corrupted"
        )
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    expected = page * int.from_bytes(head[28:32], "big")
    if size < expected:
        raise EvoaeError(
            f"run journal {path} is truncated ({size} of {expected} bytes); it is corrupted"
        )
