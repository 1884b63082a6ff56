"""The run folder: where a search writes everything it produces.

Layout::

    journal.sqlite      one row per evaluation (WAL mode)
    checkpoint.json     strategy state + journal position, replaced atomically
    settings.json       the run's settings (also in the journal's meta table)
    best_genome.json    the best genome, readable
    model/              model.json + model.safetensors of the retrained best
    states/             <row id>.safetensors + .json: saved training states (ASHA), pruned
    plots/              fitness.png, reconstructions.png, ...
    summary.json        the figures the CLI prints at the end
    pbt/KEY/            the final training's PBT checkpoint (--final-pbt), one per training
    front/N/            model/ and export/ of front member N (evoae export --pick N)
    evoae-run.json      the manifest: which of these entries evoae owns (written first)
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from evoae.errors import EvoaeError
from evoae.runs.atomic import atomic_write_text
from evoae.runs.lock import check_free, hold
from evoae.runs.manifest import (
    MANIFEST,
    add_to_manifest,
    read_digests,
    read_manifest,
    write_manifest,
)
from evoae.runs.schema import BY_NAME, load_json, validate_checkpoint

__all__ = ["add_to_manifest", "check_path", "plan_overwrite", "prepare_new", "read_json"]

JOURNAL = "journal.sqlite"
CHECKPOINT = "checkpoint.json"
SETTINGS = "settings.json"
BEST_GENOME = "best_genome.json"
MODEL_DIR = "model"
PLOTS_DIR = "plots"
SUMMARY = "summary.json"
REPORT = "report.html"
EXPORT_DIR = "export"
#: Saved training states of candidates (multi-fidelity promotion, weight inheritance).
STATES_DIR = "states"
#: Checkpoints of the final training's population-based training (``--final-pbt``).
PBT_DIR = "pbt"
#: Pareto-front members retrained by ``evoae export --pick`` (``front/N/model``, ``export``).
FRONT_DIR = "front"


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete temporary files that a killed run left behind in ``folder``, ``model/`` and
    ``states/``.

    They are never read (a write only counts once renamed), so removing them loses
    nothing; it keeps a resumed folder identical to one that was never interrupted.
    """
    folder = Path(folder)
    check_free(folder)  # a live run's in-flight temporary files are not stale
    removed = []
    pbt = folder / PBT_DIR
    nested = (
        sorted(p for p in pbt.iterdir() if p.is_dir())
        if pbt.is_dir() and not pbt.is_symlink()
        else []
    )
    listed = read_manifest(folder)
    owned = None if listed is None else set(listed) | {MANIFEST}
    for sub in (folder, folder / MODEL_DIR, folder / STATES_DIR, *nested):
        if not sub.is_dir() or (sub != folder and sub.is_symlink()):
            continue
        for p in sub.iterdir():
            if p.is_symlink() or not p.is_file():
                continue
            states_tmp = sub == folder / STATES_DIR and _STATE_TEMP.match(p.name)
            m = _TEMP.match(p.name)
            if sub == folder and m is not None and owned is not None:
                # Top level: only the temporary file of a name the manifest lists (a
                # user's ".thesis.123.tmp" is not evoae's).
                if m.group("name") not in owned:
                    continue
            if m or states_tmp or (sub != folder and p.name.endswith(".safetensors.tmp")):
                p.unlink()
                removed.append(p)
    return removed


def is_run(folder: str | Path) -> bool:
    return (Path(folder) / JOURNAL).is_file()


def default_out(base: str | Path, name: str) -> Path:
    """``base/name``, or ``base/name-2``, ``-3``... : never an existing folder."""
    base = Path(base)
    path, n = base / name, 1
    while path.exists():
        n += 1
        path = base / f"{name}-{n}"
    return path


#: What a new run's manifest lists: the entries the search itself writes. Later
#: artifacts (``report.html``, ``export/``) are added when they are written.
RUN_FILES = (
    JOURNAL,
    JOURNAL + "-wal",
    JOURNAL + "-shm",
    CHECKPOINT,
    SETTINGS,
    BEST_GENOME,
    MODEL_DIR,
    PLOTS_DIR,
    SUMMARY,
    STATES_DIR,
    PBT_DIR,
)
#: Everything evoae writes in a run folder; --overwrite removes these and nothing else.
ARTIFACTS = (*RUN_FILES, REPORT, EXPORT_DIR, FRONT_DIR)
#: The longest file-name component most file systems accept (bytes).
NAME_MAX = 255
_PROBE = ".evoae-write-test"
_TEMP = re.compile(r"^\.(?P<name>.+)\.\d+\.tmp$")
#: A training state's temporary file (:func:`evoae.training.rungs.save_rung`).
_STATE_TEMP = re.compile(r"^\.\d+\.(safetensors|json)\.tmp$")

#: What evoae writes inside its sub-folders (anything else there is someone else's).
_SUBFOLDER_FILES: dict[str, re.Pattern[str]] = {
    MODEL_DIR: re.compile(r"^(model\.json|model\.safetensors|\..+\.tmp|model\.safetensors\.tmp)$"),
    PLOTS_DIR: re.compile(r"^([\w\-.]+\.png|\..+\.tmp)$"),
    STATES_DIR: re.compile(r"^(\d+\.(safetensors|json)|\..+\.tmp)$"),
    EXPORT_DIR: re.compile(
        r"^([\w\-]+\.(onnx|pt|safetensors)|export\.json|\..+\.tmp|[\w\-.]+\.tmp)$"
    ),
}
#: Sub-folders holding folders: name -> (pattern of its folders, of the files in them).
_NESTED: dict[str, tuple[re.Pattern[str], re.Pattern[str]]] = {
    PBT_DIR: (
        re.compile(r"^[0-9a-f]{16}$"),
        re.compile(r"^(state\.json|weights-\d{5}\.safetensors|\..+\.tmp)$"),
    ),
}


def pbt_state(run_dir: str | Path, key: str) -> Path:
    """The checkpoint folder of one final PBT training (``key``: 16 hex digits of its
    settings), recorded in the run's manifest."""
    if not _NESTED[PBT_DIR][0].match(key):
        raise ValueError(f"bad PBT key {key!r}")
    add_to_manifest(run_dir, PBT_DIR)
    return Path(run_dir) / PBT_DIR / key


def state_stem(run_dir: str | Path, eval_id: int) -> Path:
    """Where the training state of journal row ``eval_id`` is saved (a checkpoint stem);
    a ``states/`` that is a link (or leads out of the run) is refused."""
    from evoae.runs.guard import check_inside

    stem = Path(run_dir) / STATES_DIR / str(int(eval_id))
    check_inside(run_dir, stem)
    return stem


def save_stem(run_dir: str | Path, eval_id: int) -> Path:
    """:func:`state_stem` for a state about to be saved: a file already there must be a
    training state evoae wrote (a killed run's), never a user's file of that name."""
    stem = state_stem(run_dir, eval_id)
    for p in (stem.with_suffix(".json"), stem.with_suffix(".safetensors")):
        if (p.exists() or p.is_symlink()) and not is_state_file(p):
            raise EvoaeError(
                f"{p} is not a training state evoae wrote: move it out of the run folder, "
                "then resume; nothing was written"
            )
    return stem


def is_state_file(path: Path) -> bool:
    """Whether ``path`` holds a training state as evoae writes it (by content, not name):
    the JSON of :func:`evoae.training.rungs.save_rung`, or a safetensors file whose
    tensors are all ``model.*`` / ``opt.*``. A user's ``2024.json`` is neither."""
    try:
        if path.is_symlink() or not path.is_file():
            return False
        size = path.stat().st_size
        with open(path, "rb") as f:
            if path.suffix == ".json":
                if size > 1 << 20:
                    return False
                data = json.loads(f.read().decode("utf-8"))
                return (
                    isinstance(data, dict)
                    and set(data) <= {"epochs", "optimizer_scalars", "seed"}
                    and isinstance(data.get("epochs"), int)
                    and isinstance(data.get("optimizer_scalars"), dict)
                )
            if path.suffix == ".safetensors":
                head = f.read(8)
                n = int.from_bytes(head, "little") if len(head) == 8 else 0
                if not 2 <= n <= min(size - 8, 1 << 24):
                    return False
                header = json.loads(f.read(n).decode("utf-8"))
                if not isinstance(header, dict):
                    return False
                names = [k for k in header if k != "__metadata__"]
                return bool(names) and all(k.startswith(("model.", "opt.")) for k in names)
    except (OSError, ValueError, RecursionError):
        return False
    return False


_STATE_FILE = re.compile(r"^(\d+)\.(safetensors|json)$")


def prune_states(run_dir: str | Path, keep: set[int]) -> None:
    """Delete the saved training states in ``states/`` of journal rows not in ``keep``
    (only files evoae writes there; a state deleted too early only costs a retraining)."""
    folder = Path(run_dir) / STATES_DIR
    if not folder.is_dir() or folder.is_symlink():
        return
    for p in folder.iterdir():
        m = _STATE_FILE.match(p.name)
        if m and int(m.group(1)) not in keep and is_state_file(p):
            p.unlink(missing_ok=True)


def check_path(path: str | Path, what: str = "--out") -> Path:
    """Refuse a path that no file system can hold (empty, NUL byte, a name too long)."""
    text = os.fspath(path)
    if not text.strip():
        raise EvoaeError(f"{what} is empty: pass a folder or file name")
    if "\0" in text:
        raise EvoaeError(f"{what} {text!r} contains a NUL byte: choose another name")
    for part in Path(text).parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise EvoaeError(
                f"{what} has a name component of {len(os.fsencode(part))} bytes (at most "
                f"{NAME_MAX}): choose a shorter name"
            )
    if len(os.fsencode(text)) > 4000:
        raise EvoaeError(f"{what} is {len(os.fsencode(text))} bytes long: choose a shorter path")
    return Path(text)


def _is_legacy_run(folder: Path) -> bool:
    """A run written before manifests existed: a readable evoae journal, no manifest."""
    from evoae.runs.journal import looks_like_journal

    return looks_like_journal(folder / JOURNAL)


def _owned_temp(name: str, owned: set[str]) -> bool:
    m = _TEMP.match(name)
    return name == _PROBE or (m is not None and m.group("name") in owned | {MANIFEST})


def _check_subfolder(folder: Path, name: str) -> None:
    """Refuse a sub-folder of ours that holds something evoae does not write there."""
    if name in _NESTED:
        folders, files = _NESTED[name]
        for child in (folder / name).iterdir():
            if child.is_symlink() or not child.is_dir() or not folders.match(child.name):
                raise EvoaeError(
                    f"{child} is not a folder evoae writes: move it out of the run folder "
                    "first, or choose another --out"
                )
            _check_files(child, files)
        return
    if name == FRONT_DIR:
        for child in (folder / name).iterdir():
            if child.is_symlink() or not child.is_dir() or not child.name.isdigit():
                raise EvoaeError(
                    f"{child} is not a folder evoae writes: move it out of the run folder "
                    "first, or choose another --out"
                )
            for part in child.iterdir():
                if part.name not in (MODEL_DIR, EXPORT_DIR) or part.is_symlink():
                    raise EvoaeError(
                        f"{part} is not a folder evoae writes: move it out of the run "
                        "folder first, or choose another --out"
                    )
                _check_files(part, _SUBFOLDER_FILES[part.name])
        return
    _check_files(folder / name, _SUBFOLDER_FILES.get(name))


def _check_files(sub: Path, pattern: re.Pattern[str] | None) -> None:
    for child in sub.iterdir():
        if child.is_symlink() or not child.is_file() or pattern is None:
            raise EvoaeError(
                f"{child} is not a file evoae writes (a link, a folder or an unknown entry): "
                "move it out of the run folder first, or choose another --out"
            )
        if not pattern.match(child.name):
            raise EvoaeError(
                f"{child} is not a file evoae writes: move it out of the run folder first, "
                "or choose another --out"
            )


def plan_overwrite(folder: str | Path) -> list[Path]:
    """The entries of run ``folder`` that ``--overwrite`` removes; refuses if any is unsafe.

    A folder whose manifest records digests owns exactly the files whose content still
    has a recorded digest (:mod:`evoae.runs.guard`), the journal's SQLite files, its own
    temporary files and training states (checked by content). Older runs: a manifest
    without digests owns what it lists, with the names evoae writes in its sub-folders;
    a run written before manifests (a valid ``journal.sqlite``) the fixed artifact names.
    Anything else, or a symbolic link anywhere, refuses the whole overwrite: nothing is
    removed.
    """
    folder = Path(folder)
    listed = read_manifest(folder)
    if listed is not None:
        owned = set(listed) | {MANIFEST}
    elif _is_legacy_run(folder):
        owned = set(ARTIFACTS)
    else:
        raise EvoaeError(
            f"output folder {folder} is not empty and is not an evoae run (no {MANIFEST}): "
            "choose an empty or new --out"
        )
    digests = read_digests(folder) if listed is not None else None
    names = sorted(p.name for p in folder.iterdir())
    foreign = [n for n in names if n not in owned and not _owned_temp(n, owned)]
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise EvoaeError(
            f"output folder {folder} holds files that are not evoae's ({shown}): move them "
            "away or choose another --out; nothing was deleted"
        )
    remove = []
    for n in names:
        p = folder / n
        if p.is_symlink():
            raise EvoaeError(
                f"{p} is a symbolic link, which evoae never writes: remove the link yourself "
                "or choose another --out; nothing was deleted"
            )
        if digests is not None:
            _check_by_digest(folder, p, digests)
        elif p.is_dir():
            _check_subfolder(folder, n)
        remove.append(p)
    return remove


#: Top-level files SQLite writes (no digest: they change with every commit).
_SQLITE_FILES = (JOURNAL, JOURNAL + "-wal", JOURNAL + "-shm")


def _check_by_digest(folder: Path, entry: Path, digests: dict[str, list[str]]) -> None:
    """Refuse ``entry`` (recursively) unless every file in it is evoae's by content."""
    from evoae.runs.guard import digest

    def refuse(p: Path, why: str) -> None:
        raise EvoaeError(
            f"{p} {why}: move it out of the run folder first, or choose another --out; "
            "nothing was deleted"
        )

    stack = [entry]
    while stack:
        p = stack.pop()
        rel = p.relative_to(folder).as_posix()
        if p.is_symlink():
            refuse(p, "is a symbolic link, which evoae never writes")
        if p.is_dir():
            stack.extend(p.iterdir())
            continue
        if not p.is_file():
            refuse(p, "is not a regular file, so not one evoae wrote")
        if rel in _SQLITE_FILES or rel == MANIFEST:
            continue
        m = _TEMP.match(p.name)
        if m is not None and (p.parent / m.group("name")).relative_to(folder).as_posix() in (
            digests
        ):
            continue  # the temporary file of a write that was recorded, then killed
        if p.parent == folder / STATES_DIR and (
            _STATE_TEMP.match(p.name) or (_STATE_FILE.match(p.name) and is_state_file(p))
        ):
            continue  # training states are written by workers and checked by content
        if p.parent == folder and p.name == _PROBE:
            continue
        if digest(p) not in digests.get(rel, []):
            refuse(p, "is not a file evoae writes (not recorded, or changed since evoae wrote it)")


def legacy_owned(root: Path, path: Path, files: list[str]) -> bool:
    """Whether ``path`` in a run made before digests is evoae's by the rules it was made
    under: a top-level name the manifest lists, or a name evoae writes in a listed
    sub-folder."""
    rel = Path(os.path.abspath(path)).relative_to(Path(os.path.abspath(root))).parts
    if not rel or rel[0] not in files:
        return False
    if len(rel) == 1:
        return True
    if rel[0] in _NESTED and len(rel) == 3:
        dirs, names = _NESTED[rel[0]]
        return bool(dirs.match(rel[1]) and names.match(rel[2]))
    if rel[0] == FRONT_DIR and len(rel) == 4 and rel[1].isdigit():
        pattern = _SUBFOLDER_FILES.get(rel[2])
        return pattern is not None and bool(pattern.match(rel[3]))
    pattern = _SUBFOLDER_FILES.get(rel[0])
    return len(rel) == 2 and pattern is not None and bool(pattern.match(rel[1]))


def prepare_new(folder: str | Path, *, overwrite: bool) -> Path:
    """Make ``folder`` ready for a new run without losing anything the user did not ask to lose.

    Order: every check first (path, run or not, ``--overwrite`` given, nothing foreign,
    no other process using the run), then removal of evoae's own entries, then the
    manifest (written before anything else of the new run) and this process's run lock.
    A non-empty folder that is not a run is refused, with or without ``overwrite``.
    """
    folder = check_path(folder)
    try:
        exists = folder.exists()
        if exists and not folder.is_dir():
            raise EvoaeError(
                f"output path {folder} exists and is not a folder: choose another --out"
            )
        entries = sorted(p.name for p in folder.iterdir()) if exists else []
    except OSError as e:
        raise EvoaeError(
            f"cannot use output folder {folder} ({e.strerror}): choose another --out"
        ) from None
    remove: list[Path] = []
    if entries:
        is_run_folder = read_manifest(folder) is not None or _is_legacy_run(folder)
        if is_run_folder and not overwrite:
            raise EvoaeError(
                f"output folder {folder} already holds a run: pass --overwrite to replace it, "
                "--resume to continue it, or choose another --out"
            )
        check_free(folder)  # a live run is "in use", not a folder of foreign files
        remove = plan_overwrite(folder)
    try:
        if exists:
            # Refuses a run another process is writing, before anything is deleted; the
            # hold passes to the new run's journal, which releases it when closed.
            hold(folder, handoff=True)
        for p in remove:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        if not exists:
            hold(folder, handoff=True)
        write_manifest(folder, RUN_FILES, {})
    except OSError as e:
        raise EvoaeError(
            f"cannot write to output folder {folder} ({e.strerror}): choose another --out"
        ) from None
    return folder


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True))


def read_json(path: str | Path, what: str) -> Any:
    """Parse a run file (size-capped) and check it against its schema (by file name).

    ``settings.json``, ``checkpoint.json``, ``summary.json``, ``model.json``,
    ``best_genome.json`` and ``export.json`` are validated (:mod:`evoae.runs.schema`);
    a damaged one is a one-line error naming the file and the field.
    """
    path = Path(path)
    data = load_json(path, what)
    if path.name == CHECKPOINT:
        validate_checkpoint(data, f"{what} {path}", journal_rows=_journal_rows(path.parent))
        return data
    checker = BY_NAME.get(path.name)
    if checker is not None:
        checker(data, f"{what} {path}")
    return data


def _journal_rows(folder: Path) -> int | None:
    """Rows in ``folder``'s journal (read-only), None when there is no journal."""
    from evoae.runs.journal import Journal

    if not (folder / JOURNAL).is_file():
        return None
    with Journal(folder / JOURNAL, readonly=True) as j:
        return len(j)


def check_writable(folder: Path) -> None:
    if not os.access(folder, os.W_OK):
        raise EvoaeError(f"run folder {folder} is not writable: fix its permissions")
