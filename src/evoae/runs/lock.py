"""One writer per run: an advisory ``flock`` on the run folder itself.

The lock is taken on a file descriptor of the run *folder* (Linux and macOS allow
``flock`` on a directory), so taking it creates and changes no file: a refused command
leaves the folder byte-identical, and ``--overwrite`` never has to delete a lock file
that another process might be holding. The operating system releases the lock when the
holding process exits or is killed, so a crashed run never stays locked.

Within one process the lock is re-entrant: :class:`RunLock` contexts and the counted
holds of :func:`hold` / :func:`release_hold` share one entry per folder, dropped when
both counts reach zero. :func:`evoae.runs.folder.prepare_new` takes a hold that the
new run's :class:`~evoae.runs.journal.Journal` adopts (:func:`adopt`) and releases when
it is closed.
"""

from __future__ import annotations

import errno
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from evoae.errors import EvoaeError

__all__ = ["RunLock", "adopt", "check_free", "hold", "holder_pid", "is_locked", "release_hold"]


@dataclass
class _Entry:
    fd: int
    contexts: int = 0
    holds: int = 0
    handoff: bool = False  # a hold of prepare_new, waiting for the run's journal


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


def hold(folder: str | Path, *, handoff: bool = False) -> None:
    """Take (or count once more) the run lock of ``folder`` for this process.

    With ``handoff`` the hold is meant for the journal that :func:`adopt` s it next.
    """
    entry = _acquire(Path(folder))
    if handoff and entry.handoff:
        return  # already waiting for its journal
    entry.holds += 1
    entry.handoff = entry.handoff or handoff


def adopt(folder: str | Path) -> None:
    """Take over a :func:`hold` with ``handoff`` (else take a new hold)."""
    entry = _held.get(_key(Path(folder)))
    if entry is not None and entry.handoff:
        entry.handoff = False
        return
    hold(folder)


def try_hold(folder: str | Path) -> EvoaeError | None:
    """:func:`hold`, or the "in use" error (returned, not raised) when another has it."""
    try:
        hold(folder)
    except EvoaeError as e:
        return e
    return None


def release_hold(folder: str | Path) -> None:
    """Give back one :func:`hold`; the lock goes when no hold or context is left."""
    entry = _held.get(_key(Path(folder)))
    if entry is None:
        return
    entry.holds = max(0, entry.holds - 1)
    if entry.holds == 0 and entry.contexts == 0:
        _drop(Path(folder))


def check_free(folder: str | Path) -> None:
    """Raise the "in use" error when another process holds ``folder``'s lock."""
    if _key(Path(folder)) in _held:
        return
    if is_locked(folder):
        raise _in_use(Path(folder))


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
        entry.contexts = max(0, entry.contexts - 1)
        if entry.contexts == 0 and entry.holds == 0:
            _drop(self.folder)
