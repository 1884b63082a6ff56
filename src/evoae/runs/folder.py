"""The run folder: where a search writes everything it produces.

Layout::

    journal.sqlite      one row per evaluation (WAL mode)
    checkpoint.json     strategy state + journal position, replaced atomically
    settings.json       the run's settings (also in the journal's meta table)
    best_genome.json    the best genome, readable
    model/              model.json + model.safetensors of the retrained best
    plots/              fitness.png, reconstructions.png, ...
    summary.json        the figures the CLI prints at the end
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from evoae.errors import EvoaeError
from evoae.runs.atomic import atomic_write_text

JOURNAL = "journal.sqlite"
CHECKPOINT = "checkpoint.json"
SETTINGS = "settings.json"
BEST_GENOME = "best_genome.json"
MODEL_DIR = "model"
PLOTS_DIR = "plots"
SUMMARY = "summary.json"
REPORT = "report.html"
EXPORT_DIR = "export"
#: Everything evoae writes in a run folder; --overwrite removes these and nothing else.
ARTIFACTS = (
    JOURNAL,
    JOURNAL + "-wal",
    JOURNAL + "-shm",
    CHECKPOINT,
    SETTINGS,
    BEST_GENOME,
    MODEL_DIR,
    PLOTS_DIR,
    SUMMARY,
    REPORT,
    EXPORT_DIR,
)


def _is_temp(name: str) -> bool:
    """A temporary file of an atomic write (``.NAME.PID.tmp``) cut short by a crash."""
    return name.startswith(".") and name.endswith(".tmp")


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete temporary files that a killed run left behind in ``folder`` and ``model/``.

    They are never read (a write only counts once renamed), so removing them loses
    nothing; it keeps a resumed folder identical to one that was never interrupted.
    """
    folder = Path(folder)
    removed = []
    for sub in (folder, folder / MODEL_DIR):
        if not sub.is_dir():
            continue
        for p in sub.iterdir():
            if p.is_file() and (_is_temp(p.name) or p.name.endswith(".safetensors.tmp")):
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


def prepare_new(folder: str | Path, *, overwrite: bool) -> Path:
    """Make ``folder`` ready for a new run without losing anything the user did not ask to lose.

    An existing run is refused unless ``overwrite``; then only evoae's own artifacts are
    removed. A folder holding other files is refused (they might be someone's data).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise EvoaeError(f"output path {folder} exists and is not a folder: choose another --out")
    if folder.is_dir():
        entries = {p.name for p in folder.iterdir()}
        ours = entries & set(ARTIFACTS) | {n for n in entries if _is_temp(n)}
        if ours and not overwrite:
            raise EvoaeError(
                f"output folder {folder} already holds a run: pass --overwrite to replace it, "
                "--resume to continue it, or choose another --out"
            )
        if entries - ours - set(ARTIFACTS):
            raise EvoaeError(
                f"output folder {folder} holds files that are not evoae's: "
                "choose an empty or new --out"
            )
        for name in ours:
            p = folder / name
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".evoae-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise EvoaeError(
            f"cannot write to output folder {folder} ({e.strerror}): choose another --out"
        ) from None
    return folder


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True))


def read_json(path: str | Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise EvoaeError(f"{what} {path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EvoaeError(f"{what} {path} is unreadable or corrupted ({e})") from None


def check_writable(folder: Path) -> None:
    if not os.access(folder, os.W_OK):
        raise EvoaeError(f"run folder {folder} is not writable: fix its permissions")
