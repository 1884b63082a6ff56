"""The third hostile campaign (issue 21): what its tables share.

Each table maps a case name to a function that builds the case in a :class:`World` (a
fresh copy of a finished, exported and reported run, a scratch folder, the user's
files) and returns a :class:`Case`: the ``evoae`` argv (or a Python call, for the
estimator) and what must come of it. :func:`play` runs it in this process and checks
the campaign's rule:

* ``refused``: exit status 2, exactly one ``evoae ... error:`` line and nothing else on
  stderr, no traceback, the fragment ``match`` in that line when given (a Python call:
  a one-line ``EvoaeError``, or scikit-learn's own ``ValueError``/``TypeError``, whose
  wording and extra lines are scikit-learn's convention);
* ``ok``: exit status 0, and the case's own ``check`` holds;
* either way, every watched path (the run copy unless the case writes into it, and every
  user file or folder the case made) keeps every byte, every link target and every
  mtime, folders included.

The tables are the ``CASES`` of ``tests/*/test_hostile_*.py``, keyed ``category``,
then case name; ``docs/reliability.md`` counts them by category.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import search_flags

from evoae.cli import main
from evoae.errors import EvoaeError

#: A one-generation search into a scratch folder: an unexpected success stays short.
QUICK = ["--quiet"]
QUICK += search_flags(
    strategy="microbial", population=4, generations=1, epochs=1, final_epochs=1, limit=200
)


@dataclass
class Case:
    """One hostile case: what to run and what must come of it."""

    argv: list[str] | Callable[[], Any]
    expect: str = "refused"
    match: str = ""
    check: Callable[[str], None] | None = None
    #: The run copy may change (a success that writes into it); user files still may not.
    writes_run: bool = False


@dataclass
class World:
    """What a case builds on: a fresh run copy, a scratch folder, watched user paths."""

    tmp: Path
    run: Path
    data: Path
    watched: list[Path] = field(default_factory=list)
    #: Generators closed when the case ends (a held lock).
    held: list[Iterator[None]] = field(default_factory=list)

    def hold(self, run: Path | None = None) -> None:
        """Another process holds the run's lock until the case ends."""
        gen = hold_lock(run or self.run)
        next(gen)
        self.held.append(gen)

    def close(self) -> None:
        for gen in self.held:
            gen.close()

    def user(self, rel: str, data: bytes | str = b"the user's own bytes\n") -> Path:
        """A user file at ``rel`` (under the run when it starts with ``RUN/``), watched."""
        path = self.run / rel[4:] if rel.startswith("RUN/") else self.tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        self.watched.append(path)
        return path

    def folder(self, rel: str, files: tuple[str, ...] = ("a.txt", "b/c.txt")) -> Path:
        """A user folder holding ``files`` (watched)."""
        root = self.tmp / rel
        for name in files:
            p = root / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(f"user {name}\n")
        self.watched.append(root)
        return root

    def link(self, rel: str, target: Path) -> Path:
        """Replace ``RUN/rel`` by a symbolic link to ``target``."""
        path = self.run / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)
        return path

    def edit(self, rel: str, fn: Callable[[bytes], bytes]) -> Path:
        path = self.run / rel
        path.write_bytes(fn(path.read_bytes()))
        return path


def snapshot(path: Path) -> dict[str, tuple[str, int]]:
    """Every entry under ``path`` (itself included): content digest or link target or
    kind, and mtime (ns; a link's own)."""
    out: dict[str, tuple[str, int]] = {}
    paths = [path, *sorted(path.rglob("*"))] if path.is_dir() and not path.is_symlink() else [path]
    for p in paths:
        key = str(p.relative_to(path)) if p != path else "."
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            out[key] = ("link:" + os.readlink(p), st.st_mtime_ns)
        elif stat.S_ISREG(st.st_mode):
            out[key] = (hashlib.sha256(p.read_bytes()).hexdigest(), st.st_mtime_ns)
        elif stat.S_ISDIR(st.st_mode):
            out[key] = ("dir", st.st_mtime_ns)
        else:
            out[key] = ("special", st.st_mtime_ns)
    return out


def _call(case: Case, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    if callable(case.argv):
        try:
            case.argv()
            code, err = 0, ""
        except EvoaeError as e:
            code, err = 2, f"evoae: error: {e}"
        except (ValueError, TypeError) as e:  # scikit-learn's own: its wording, its lines
            code, err = 2, f"evoae: error: {str(e).strip().splitlines()[0]}"
        captured = capsys.readouterr()
        return code, captured.out, err + captured.err
    try:
        code = main(case.argv)
    except SystemExit as e:  # argparse's own usage errors
        code = int(e.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def play(build: Callable[[World], Case], world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """Build the case, run it, and check the campaign's rule (see the module docstring)."""
    case = build(world)
    watched = ([] if case.writes_run else [world.run]) + world.watched
    before = [snapshot(p) for p in watched]
    code, out, err = _call(case, capsys)
    assert "Traceback" not in err, err
    if case.expect == "refused":
        assert code == 2, f"exit {code}; stderr: {err}; stdout: {out[-400:]}"
        lines = err.strip().splitlines()
        assert len(lines) == 1 and re.match(r"evoae( [a-z]+)*: error: ", lines[0]), err
        assert case.match in lines[0], (case.match, lines[0])
    else:
        assert code == 0, f"exit {code}; stderr: {err}"
    if case.check is not None:
        case.check(out)
    after = [snapshot(p) for p in watched]
    changed = [
        f"{p}/{k}"
        for p, b, a in zip(watched, before, after, strict=True)
        for k in sorted(set(b) | set(a))
        if b.get(k) != a.get(k)
    ]
    assert not changed, f"changed: {changed[:6]}; stderr: {err.strip()[:300]}"
    assert not Path("/tmp/evoae-pwned").exists()


def table_params(cases: dict[str, dict[str, Callable[[World], Case]]]) -> list[Any]:
    """``pytest.param(build, id="category/name")`` for every case of a table; a case
    with an ``xfail`` attribute (a finding left open) is a strict xfail."""
    return [
        pytest.param(
            build,
            id=f"{category}/{name}",
            marks=[pytest.mark.xfail(reason=build.xfail, strict=True)]
            if getattr(build, "xfail", None)
            else [],
        )
        for category, named in cases.items()
        for name, build in named.items()
    ]


def registrar(
    cases: dict[str, dict[str, Callable[[World], Case]]],
) -> Callable[[str, str], Callable[[Callable[[World], Case]], Callable[[World], Case]]]:
    """``@case(category, name)`` adds a case to ``cases``."""

    def case(category: str, name: str) -> Callable[[Callable[[World], Case]], Callable]:
        def add(fn: Callable[[World], Case]) -> Callable[[World], Case]:
            named = cases.setdefault(category, {})
            assert name not in named, name
            named[name] = fn
            return fn

        return add

    return case


def fresh_copy(template: Path, tmp: Path) -> Path:
    run = tmp / "run"
    shutil.copytree(template, run, symlinks=True)
    return run


def mount_tmpfs(path: Path, size: str = "8m") -> bool:
    """A tmpfs at ``path`` (root only): True when mounted."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)])
    return done.returncode == 0


def remount_ro(path: Path) -> bool:
    return subprocess.run(["mount", "-o", "remount,ro", str(path)]).returncode == 0


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False)


def hold_lock(run: Path) -> Iterator[None]:
    """Another process holding ``run``'s lock while the generator is open, as a running
    search does."""
    code = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(run)!r}, os.O_RDONLY)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield
    finally:
        proc.kill()
        proc.wait()
