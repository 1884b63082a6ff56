"""The run-folder manifest ``evoae-run.json``: which entries of a folder evoae owns.

Written first when a run folder is prepared, before the journal; every later artifact
written into the folder (``report.html``, ``export/``) is added to it. ``--overwrite``
removes only the entries it lists (and evoae's own temporary files), so files a user
put into a run folder are never deleted.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from evoae.errors import EvoaeError

MANIFEST = "evoae-run.json"
FORMAT = "evoae-run"
VERSION = 1
#: Largest manifest read back (a real one is a few hundred bytes).
MAX_BYTES = 64 * 1024
MAX_ENTRIES = 256

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")


def manifest_path(folder: str | Path) -> Path:
    return Path(folder) / MANIFEST


def _check_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise EvoaeError(
            f"{where} is damaged (entry {name!r} is not a plain file name); restore it or "
            "choose another --out"
        )
    return name


def read_manifest(folder: str | Path) -> list[str] | None:
    """The entries ``folder``'s manifest lists, None when it has none; damage is an error."""
    path = manifest_path(folder)
    if not path.exists() and not path.is_symlink():
        return None
    where = f"run manifest {path}"
    if path.is_symlink() or not path.is_file():
        raise EvoaeError(f"{where} is not a regular file; remove it or choose another --out")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise EvoaeError(f"{where} is too large ({size} bytes); it is damaged")
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise EvoaeError(f"{where} is unreadable ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise EvoaeError(f"{where} is damaged (field format is not {FORMAT!r})")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise EvoaeError(f"{where} is damaged (field version is not a positive integer)")
    if version > VERSION:
        raise EvoaeError(
            f"{where} has format version {version}, newer than this evoae ({VERSION}): "
            "upgrade evoae"
        )
    files = data.get("files")
    if not isinstance(files, list) or len(files) > MAX_ENTRIES:
        raise EvoaeError(f"{where} is damaged (field files is not a list of names)")
    return [_check_name(n, where) for n in files]


def write_manifest(folder: str | Path, files: list[str] | tuple[str, ...]) -> None:
    """Write ``folder``'s manifest listing ``files`` (atomically)."""
    from evoae.runs.atomic import atomic_write_text

    names = sorted({_check_name(n, "manifest entry") for n in files})
    text = json.dumps({"format": FORMAT, "version": VERSION, "files": names}, indent=2)
    atomic_write_text(manifest_path(folder), text, record=False)


def add_to_manifest(folder: str | Path, name: str) -> bool:
    """Record ``name`` (a direct child of ``folder``) as evoae's; False when no manifest.

    A folder without a manifest (a pre-manifest run, or not a run) is left alone.
    """
    files = read_manifest(folder)
    if files is None:
        return False
    if name not in files:
        write_manifest(folder, [*files, name])
    return True


def record_write(path: Path) -> None:
    """Called after every atomic write: a new file in a run folder joins its manifest."""
    if path.name == MANIFEST or not manifest_path(path.parent).is_file():
        return
    try:
        add_to_manifest(path.parent, path.name)
    except EvoaeError:
        pass  # a damaged manifest is reported when it matters (--overwrite), not here
