"""The one write guard: every file evoae writes or deletes is checked here first.

Rules, for any path evoae is about to replace or remove:

* Links are resolved before deciding: a symbolic link on the way (a linked ``plots/``,
  ``front/``, ``states/`` or export folder) or at the target itself is refused, so no
  write or deletion ever lands outside the run folder or the named destination.
* Inside a run folder (the nearest folder up to :data:`DEPTH` levels above holding an
  ``evoae-run.json``), an existing file is evoae's only when the manifest records the
  SHA-256 of its current content (:mod:`evoae.runs.manifest`). A file the user put
  there, or one they edited since, is never replaced or deleted. Before a replacement,
  the new content's digest is recorded beside the old one, so a process killed between
  the rename and the manifest update still leaves a file whose content is recorded.
* Runs made before digests existed (a manifest without ``digests``) keep the older
  name-based rules, so they can still be resumed and overwritten.
* Outside a run there is no manifest: an image or HTML page evoae writes there carries
  its own record (:func:`stamp`: the SHA-256 of the rest of the file, in a PNG text
  chunk or a trailing comment), so :func:`check_new_file` replaces it again while it is
  unchanged and refuses any other existing file.

Every refusal is one :class:`~evoae.errors.EvoaeError` line naming the file and the fix.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import zlib
from pathlib import Path

from evoae.errors import EvoaeError
from evoae.runs.manifest import MANIFEST, read_digests, read_manifest, set_digests

__all__ = [
    "check_inside",
    "check_new_file",
    "claim",
    "digest",
    "forget",
    "is_recorded",
    "record",
    "run_root",
    "stamp",
]

#: How far above a written file its run folder may be (``RUN/front/N/model/model.json``).
DEPTH = 4


def digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_root(path: str | Path) -> Path | None:
    """The run folder ``path`` lies in (lexically, links not followed), or None."""
    path = Path(os.path.abspath(path))
    for parent in list(path.parents)[:DEPTH]:
        m = parent / MANIFEST
        if m.is_file() and not m.is_symlink():
            return parent
    return None


def check_inside(root: str | Path, path: str | Path) -> None:
    """Refuse ``path`` (in ``root``) when a symbolic link on its way or at it would lead
    the write elsewhere; the folders themselves may not exist yet."""
    root = Path(os.path.abspath(root))
    path = Path(os.path.abspath(path))
    try:
        rel = path.relative_to(root)
    except ValueError:
        raise EvoaeError(f"{path} is not inside {root}: evoae writes only there") from None
    if ".." in rel.parts:
        raise EvoaeError(f"{path} leaves {root}: evoae writes only inside it")
    cur = root
    for part in rel.parts:
        cur = cur / part
        if cur.is_symlink():
            raise EvoaeError(
                f"{cur} is a symbolic link, which evoae never writes through: remove the link "
                "or choose another destination; nothing was written"
            )
    real_root = os.path.realpath(root)
    if os.path.realpath(path) != os.path.join(real_root, *rel.parts):
        raise EvoaeError(
            f"{path} resolves outside {root}: remove the link on its way or choose another "
            "destination; nothing was written"
        )


def _rel(root: Path, path: Path) -> str:
    return Path(os.path.abspath(path)).relative_to(Path(os.path.abspath(root))).as_posix()


def _regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def is_recorded(root: str | Path, path: str | Path) -> bool:
    """Whether the file at ``path`` in run ``root`` still has the content evoae wrote."""
    digests = read_digests(root)
    if digests is None or not _regular(Path(path)):
        return False
    return digest(path) in digests.get(_rel(Path(root), Path(path)), [])


def _legacy_owned(root: Path, path: Path, files: list[str]) -> bool:
    """A run from before digests: the manifest's top-level names, and in its sub-folders
    the names evoae writes there (the rules those runs were made under)."""
    from evoae.runs.folder import legacy_owned

    return legacy_owned(root, path, files)


def claim(path: str | Path, data: bytes | None = None) -> None:
    """Check that evoae may write ``path`` and, inside a run, record ``data``'s digest.

    Call before writing ``data`` to ``path`` (None: the caller records the digest itself
    with :func:`record` once written). Outside a run folder nothing is recorded and the
    caller decides (see :func:`check_new_file`).
    """
    path = Path(path)
    root = run_root(path)
    if root is None:
        if path.is_symlink():
            raise EvoaeError(
                f"{path} is a symbolic link, which evoae never writes through: remove it or "
                "choose another destination; nothing was written"
            )
        return
    check_inside(root, path)
    exists = path.exists() or path.is_symlink()
    if exists and not _regular(path):
        raise EvoaeError(
            f"{path} is not a regular file, so not one evoae wrote: move it away or choose "
            "another destination; nothing was written"
        )
    digests = read_digests(root)
    rel = _rel(root, path)
    old: list[str] = []
    if exists:
        if digests is None:
            files = read_manifest(root) or []
            if not _legacy_owned(root, path, files):
                _refuse(path)
        else:
            old = [digest(path)]
            if old[0] not in digests.get(rel, []):
                _refuse(path)
    if data is not None and digests is not None:
        new = hashlib.sha256(data).hexdigest()
        set_digests(root, {rel: list(dict.fromkeys([*old, new]))})


def record(path: str | Path) -> None:
    """Record the digest of a file evoae has just written (for writers that cannot hand
    :func:`claim` their bytes first, such as SQLite or third-party savers)."""
    path = Path(path)
    root = run_root(path)
    if root is not None and _regular(path):
        set_digests(root, {_rel(root, path): [digest(path)]})


def forget(root: str | Path, paths: list[Path]) -> None:
    """Drop the digests of files evoae removed from run ``root``."""
    root = Path(root)
    set_digests(root, {_rel(root, p): None for p in paths})


def _refuse(path: Path) -> None:
    raise EvoaeError(
        f"{path} is not a file evoae writes (not recorded, or changed since evoae wrote "
        "it): move it away or choose another destination; nothing was written"
    )


#: Outputs that carry their own record outside a run (:func:`stamp`).
STAMPED = (".png", ".html", ".htm", ".svg", ".pdf", ".jpg", ".jpeg")
_KEY = b"evoae-sha256"
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_TRAILER = re.compile(rb"\n(?:<!-- |%)evoae-sha256:([0-9a-f]{64})(?: -->)?\n\Z")
#: Largest file :func:`is_stamped` reads.
_MAX_STAMPED = 1 << 30


def stamp(path: str | Path, data: bytes) -> bytes:
    """``data`` carrying its own SHA-256 when ``path`` is an image or page outside a run:
    a ``tEXt`` chunk before a PNG's end, else a trailing comment (HTML/SVG ``<!-- -->``,
    PDF ``%``; JPEG readers stop at the end-of-image marker before it)."""
    path = Path(path)
    if path.suffix.lower() not in STAMPED or run_root(path) is not None:
        return data
    hexdigest = hashlib.sha256(data).hexdigest().encode()
    if path.suffix.lower() == ".png" and data.endswith(_IEND):
        body = _KEY + b"\x00" + hexdigest
        chunk = struct.pack(">I", len(body)) + b"tEXt" + body
        chunk += struct.pack(">I", zlib.crc32(b"tEXt" + body))
        return data[: -len(_IEND)] + chunk + _IEND
    if path.suffix.lower() in (".html", ".htm", ".svg"):
        return data + b"\n<!-- evoae-sha256:" + hexdigest + b" -->\n"
    return data + b"\n%evoae-sha256:" + hexdigest + b"\n"


def is_stamped(path: str | Path) -> bool:
    """Whether ``path`` is an unchanged file that :func:`stamp` marked."""
    path = Path(path)
    try:
        if not _regular(path) or path.stat().st_size > _MAX_STAMPED:
            return False
        data = path.read_bytes()
    except OSError:
        return False
    mark = _TRAILER.search(data[-100:])
    if mark is not None:
        return hashlib.sha256(data[: len(data) - len(mark.group(0))]).hexdigest() == (
            mark.group(1).decode()
        )
    at = data.rfind(b"tEXt" + _KEY + b"\x00")
    if at < 4 or not data.endswith(_IEND):
        return False
    (length,) = struct.unpack(">I", data[at - 4 : at])
    end = at + 4 + length + 4
    if length != len(_KEY) + 1 + 64 or data[end:] != _IEND:
        return False
    recorded = data[at + 4 + len(_KEY) + 1 : at + 4 + length].decode("ascii", "replace")
    return hashlib.sha256(data[: at - 4] + _IEND).hexdigest() == recorded


def check_new_file(path: str | Path, what: str = "--out") -> Path:
    """Refuse to replace an existing file evoae has no record of writing.

    Inside a run folder a file whose recorded digest matches may be replaced (a second
    ``evoae report``); elsewhere an unchanged image or page evoae wrote (:func:`stamp`)
    may be, and any other existing path, or a link, is refused.
    """
    path = Path(path)
    root = run_root(path)
    if root is not None:
        claim(path)
        return path
    if path.suffix.lower() in STAMPED and is_stamped(path):
        return path
    if path.exists() or path.is_symlink():
        raise EvoaeError(
            f"{what} {path} already exists and is not an unchanged file evoae wrote: remove "
            "it yourself or choose another name; nothing was written"
        )
    return path
