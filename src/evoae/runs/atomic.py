"""Crash-safe file writes: temporary file, fsync, rename."""

from __future__ import annotations

import os
from pathlib import Path

from evoae.runs.killpoints import kill_point


def atomic_write_bytes(path: str | Path, data: bytes, *, record: bool = True) -> None:
    """Replace ``path`` with ``data`` so a reader sees the old or the new file, never a mix.

    The bytes go to a temporary file in the same folder, are fsynced, then renamed over
    the target; the folder is fsynced so the rename itself survives a power loss. With
    ``record``, the write goes through :func:`evoae.runs.guard.claim` (a file that is
    not evoae's, or a link on the way, is refused) and a file written into a run folder
    is recorded in its manifest with its digest, so ``--overwrite`` knows it is evoae's.
    """
    path = Path(path)
    if record:
        from evoae.runs.guard import claim, stamp

        data = stamp(path, data)  # an image or page outside a run carries its own digest
        claim(path, data)  # refuses a file that is not evoae's, or a link on the way
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        with os.fdopen(os.open(tmp, flags, 0o666), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        kill_point(f"before_rename:{path.name}")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    if record:
        from evoae.runs.manifest import record_write

        record_write(path)


def atomic_write_text(path: str | Path, text: str, *, record: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), record=record)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
