"""One writer per run: an advisory ``flock`` on the run folder itself.

The lock is taken on a file descriptor of the run *folder* (Linux and macOS allow
``flock`` on a directory), so taking it creates and changes no file: a refused command
leaves the folder byte-identical, and ``--overwrite`` never has to delete a lock file
that another process might be holding. The operating system releases the lock when the
holding process exits or is killed, so a crashed run never stays locked.

Within one process the lock is re-entrant: :class:`RunLock` contexts nest and count, and
the "holds" taken by :func:`hold` (used by :func:`evoae.runs.folder.prepare_new` and by
a writable :class:`~evoae.runs.journal.Journal`) join the same entry. A hold is dropped
by :func:`release_hold` unless a :class:`RunLock` context is still open on that folder.
"""

from __future__ import annotations

import errno
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from evoae.errors import EvoaeError

__all__ = ["RunLock", "hold", "release_hold", "is_locked", "holder_pid"]


@dataclass
class _Entry:
    fd: int
    contexts: int = 0


_held: dict[str, _Entry] = {}


def _key(folder: Path) -> str:
    return os.path.realpath(folder)


def holder_pid(folder: str | Path) -> int | None:
    """The pid holding a ``flock`` on ``folder``, read from ``/proc/locks`` (Linux), or None."""
    try:
        st = os.stat(folder)
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" ("->" marks a waiter)
        if "->" in parts or len(parts) < 6 or parts[1] != "FLOCK":
            continue
        if parts[5].lower() == dev.lower() and parts[4].isdigit():
            return int(parts[4])
    return None


def _in_use(folder: Path) -> EvoaeError:
    pid = holder_pid(folder)
    who = f"pid {pid}" if pid is not None else "pid unknown"
    return EvoaeError(
        f"run {folder} is in use by another evoae process ({who}); wait for it to finish or "
        "stop it, then try again"
    )


def _acquire(folder: Path) -> _Entry:
    key = _key(folder)
    entry = _held.get(key)
    if entry is not None:
        return entry
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_CLOEXEC)
    except OSError as e:
        raise EvoaeError(
            f"cannot open run folder {folder} to lock it ({e.strerror}): check that it exists "
            "and is readable"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise _in_use(folder) from None
        raise EvoaeError(
            f"cannot lock run folder {folder} ({e.strerror}): use a local file system"
        ) from None
    entry = _Entry(fd)
    _held[key] = entry
    return entry


def _drop(folder: Path) -> None:
    entry = _held.pop(_key(folder), None)
    if entry is not None:
        os.close(entry.fd)  # closing the only descriptor releases the flock


def hold(folder: str | Path) -> None:
    """Take the run lock of ``folder`` for this process (no-op if already held here)."""
    _acquire(Path(folder))


def release_hold(folder: str | Path) -> None:
    """Release a :func:`hold` unless a :class:`RunLock` context still holds ``folder``."""
    entry = _held.get(_key(Path(folder)))
    if entry is not None and entry.contexts == 0:
        _drop(Path(folder))


def is_locked(folder: str | Path) -> bool:
    """True when some process (this one included) holds the lock of ``folder``."""
    if _key(Path(folder)) in _held:
        return True
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


class RunLock:
    """``with RunLock(run_dir):`` the run is this process's until the block ends.

    Raises :class:`EvoaeError` ("run X is in use by another evoae process (pid N) ...")
    when another process holds it. Re-entrant within a process.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def __enter__(self) -> RunLock:
        _acquire(self.folder).contexts += 1
        return self

    def __exit__(self, *exc: object) -> None:
        entry = _held.get(_key(self.folder))
        if entry is None:
            return
        entry.contexts -= 1
        if entry.contexts <= 0:
            _drop(self.folder)
