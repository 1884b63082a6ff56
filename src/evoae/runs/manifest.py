"""The run-folder manifest ``evoae-run.json``: which entries of a folder evoae owns.

Written first when a run folder is prepared, before the journal; every later artifact
written into the folder (``report.html``, ``export/``) is added to it. ``--overwrite``
removes only the entries it lists (and evoae's own temporary files), so files a user
put into a run folder are never deleted.

Since evoae 0.3 the manifest also holds ``digests``: for every file evoae wrote in the
run (``plots/fitness.png``, ``export/encoder.onnx``...), the SHA-256 of its content
(the current one, and the next one while a replacement is in flight). A file is
evoae's only when its content still has a recorded digest (:mod:`evoae.runs.guard`).
A manifest without ``digests`` is from an older evoae: its run keeps the older rules.
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
#: Largest manifest read back (a few hundred bytes, plus ~200 per digest entry).
MAX_BYTES = 4 * 1024 * 1024
MAX_ENTRIES = 256
#: Most digest entries (files evoae wrote inside the run folder).
MAX_DIGESTS = 16384
DIGESTS = "digests"
_SHA = re.compile(r"^[0-9a-f]{64}$")

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
    data = _read(folder)
    return None if data is None else data["files"]


def read_digests(folder: str | Path) -> dict[str, list[str]] | None:
    """The recorded digests by relative path; None without a manifest or for an older
    manifest that records none."""
    data = _read(folder)
    return None if data is None else data[DIGESTS]


def _read(folder: str | Path) -> dict[str, Any] | None:
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
    names = [_check_name(n, where) for n in files]
    digests = data.get(DIGESTS)
    if digests is not None:
        if not isinstance(digests, dict) or len(digests) > MAX_DIGESTS:
            raise EvoaeError(f"{where} is damaged (field digests is not a mapping)")
        for rel, shas in digests.items():
            for part in str(rel).split("/"):
                _check_name(part, where)
            if (
                not isinstance(shas, list)
                or not 1 <= len(shas) <= 2
                or not all(isinstance(h, str) and _SHA.match(h) for h in shas)
            ):
                raise EvoaeError(f"{where} is damaged (digests of {rel!r} are not SHA-256)")
    return {"files": names, DIGESTS: digests}


def write_manifest(
    folder: str | Path,
    files: list[str] | tuple[str, ...],
    digests: dict[str, list[str]] | None = None,
) -> None:
    """Write ``folder``'s manifest listing ``files`` (atomically); ``digests`` None
    writes an older-format manifest (a run made before digests keeps its rules)."""
    from evoae.runs.atomic import atomic_write_text

    names = sorted({_check_name(n, "manifest entry") for n in files})
    data: dict[str, Any] = {"format": FORMAT, "version": VERSION, "files": names}
    if digests is not None:
        data[DIGESTS] = {k: digests[k] for k in sorted(digests)}
    text = json.dumps(data, indent=1)
    atomic_write_text(manifest_path(folder), text, record=False)


def set_digests(folder: str | Path, changes: dict[str, list[str] | None]) -> None:
    """Record (a list) or forget (None) the digests of paths relative to ``folder``; a
    recorded top-level file also joins ``files``. An older manifest (no digests) is
    left as it is."""
    data = _read(folder)
    if data is None or data[DIGESTS] is None:
        return
    digests = dict(data[DIGESTS])
    files = list(data["files"])
    for rel, shas in changes.items():
        if shas is None:
            digests.pop(rel, None)
        else:
            digests[rel] = shas
            top = rel.split("/")[0]
            if top not in files:
                files.append(top)
    if len(digests) > MAX_DIGESTS // 4:  # forget files that are gone (old PBT weights)
        digests = {k: v for k, v in digests.items() if (Path(folder) / k).exists()}
    if digests != data[DIGESTS] or files != data["files"]:
        write_manifest(folder, files, digests)


def add_to_manifest(folder: str | Path, name: str) -> bool:
    """Record ``name`` (a direct child of ``folder``) as evoae's; False when no manifest.

    A folder without a manifest (a pre-manifest run, or not a run) is left alone.
    """
    data = _read(folder)
    if data is None:
        return False
    if name not in data["files"]:
        write_manifest(folder, [*data["files"], name], data[DIGESTS])
    return True


def record_write(path: Path) -> None:
    """Called after every atomic write: a new file in a run folder joins its manifest."""
    if path.name == MANIFEST or not manifest_path(path.parent).is_file():
        return
    try:
        add_to_manifest(path.parent, path.name)
    except EvoaeError:
        pass  # a damaged manifest is reported when it matters (--overwrite), not here
