"""The third hostile campaign (issue 21) on run folders: user files, links, files read
back after tampering, read-only inspection, read-only and full media, the run lock.

Every case is written as a hostile (or careless) user would act and checked by the
rule of :mod:`campaign`: one line and exit 2 (or a success that is right), and every
byte and mtime of the run and of the user's files unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from campaign import (
    QUICK,
    Case,
    World,
    fresh_copy,
    mount_tmpfs,
    play,
    registrar,
    remount_ro,
    table_params,
    umount,
)

from evoae.cli import main
from evoae.runs import folder as rf

CASES: dict[str, dict[str, Callable[[World], Case]]] = {}
case = registrar(CASES)


@pytest.fixture(scope="module")
def template(picked_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run with ``front/1`` picked, ``export/`` and ``report.html`` (all evoae's)."""
    run = tmp_path_factory.mktemp("campaign") / "run"
    shutil.copytree(picked_run, run, symlinks=True)
    assert main(["export", str(run), "--quiet"]) == 0
    assert main(["report", str(run), "--quiet"]) == 0
    return run


def overwrite(w: World) -> list[str]:
    return ["search", *QUICK, "--out", str(w.run), "--overwrite"]


def resume(w: World, *more: str) -> list[str]:
    return ["search", "--resume", str(w.run), "-q", *more]


def _append(extra: bytes) -> Callable[[bytes], bytes]:
    return lambda b: b + extra


# ------------------------------------------------------------------ user files


def _overwrite_with_user_file(rel: str) -> Callable[[World], Case]:
    def build(w: World) -> Case:
        w.user("RUN/" + rel)
        return Case(overwrite(w), match=rel.split("/")[-1])

    return build


for _rel in (
    "front/notes.txt",
    "front/1/model/mine.bin",
    "front/1/export/README.md",
    "export/README.md",
    "plots/sub/deep/x.png",
    "model/model.json.orig",
    ".evoae-run.json.bak",
    "journal.sqlite-journal.mine",
):
    case("user files", f"overwrite keeps a user's {_rel}")(_overwrite_with_user_file(_rel))


def _overwrite_with_edit(rel: str) -> Callable[[World], Case]:
    def build(w: World) -> Case:
        w.edit(rel, _append(b" "))
        return Case(overwrite(w), match=rel.split("/")[-1])

    return build


for _rel in (
    "export/export.json",
    "best_genome.json",
    "checkpoint.json",
    "settings.json",
    "front/1/export/encoder.safetensors",
    "front/1/model/model.json",
    "report.html",
):
    case("user files", f"overwrite keeps an edited {_rel}")(_overwrite_with_edit(_rel))


def _resume_with_edit(rel: str) -> Callable[[World], Case]:
    def build(w: World) -> Case:
        w.edit(rel, _append(b"\n"))
        return Case(resume(w), match=rel.split("/")[-1])

    return build


for _rel in ("summary.json", "best_genome.json", "model/model.safetensors", "settings.json"):
    case("user files", f"resume keeps an edited {_rel}")(_resume_with_edit(_rel))


@case("user files", "report keeps a folder named report.html")
def _(w: World) -> Case:
    (w.run / "report.html").unlink()
    w.user("RUN/report.html/inside.txt")
    return Case(["report", str(w.run), "-q"], match="report.html")


@case("user files", "report keeps a FIFO named report.html (and does not hang)")
def _(w: World) -> Case:
    (w.run / "report.html").unlink()
    os.mkfifo(w.run / "report.html")
    return Case(["report", str(w.run), "-q"], match="report.html")


@case("user files", "export keeps a user's part in RUN/export")
def _(w: World) -> Case:
    w.edit("export/encoder.safetensors", lambda b: b"mine")
    return Case(["export", str(w.run), "-q"], match="encoder.safetensors")


@case("user files", "export --pick keeps a changed front part")
def _(w: World) -> Case:
    w.edit("front/1/export/decoder.safetensors", lambda b: b[:-1])
    return Case(["export", str(w.run), "--pick", "1", "-q"], match="decoder.safetensors")


@case("user files", "export --pick 2 keeps a user's file where its model goes")
def _(w: World) -> Case:
    w.user("RUN/front/2/model/model.safetensors")
    return Case(["export", str(w.run), "--pick", "2", "-q"], match="model.safetensors")


@case("user files", "export --out keeps a folder of the user's parts")
def _(w: World) -> Case:
    w.user("exp/autoencoder.safetensors")
    return Case(["export", str(w.run), "--out", str(w.tmp / "exp"), "-q"], match="autoencoder")


@case("user files", "export --out keeps a user's export.json")
def _(w: World) -> Case:
    w.user("exp/export.json", "{}")
    return Case(["export", str(w.run), "--out", str(w.tmp / "exp"), "-q"], match="export.json")


for _name in ("mine.htm", "MINE.HTML", "notes.html"):

    @case("user files", f"report --out keeps a user's {_name}")
    def _(w: World, _name: str = _name) -> Case:
        mine = w.user(_name, "<p>mine</p>")
        return Case(["report", str(w.run), "--out", str(mine), "-q"], match="already exists")


for _name in ("mine.jpg", "mine.svg", "mine.pdf", "MINE.PNG", "dir/samples.png"):

    @case("user files", f"sample --out keeps a user's {_name}")
    def _(w: World, _name: str = _name) -> Case:
        mine = w.user(_name)
        out = str(mine.parent) + "/" if _name.startswith("dir/") else str(mine)
        return Case(["sample", str(w.run), "--out", out], match="already exists")


@case("user files", "report --out keeps an evoae report the user edited")
def _(w: World) -> Case:
    out = w.tmp / "r.html"
    assert main(["report", str(w.run), "--out", str(out), "-q"]) == 0
    out.write_bytes(out.read_bytes().replace(b"<body", b"<body data-mine", 1))
    w.watched.append(out)
    return Case(["report", str(w.run), "--out", str(out), "-q"], match="already exists")


@case("user files", "finish --again keeps an edited summary.json")
def _(w: World) -> Case:
    w.edit("summary.json", _append(b"\n"))
    return Case(["finish", str(w.run), "--again", "-q"], match="summary.json")


# ------------------------------------------------------------------ symbolic links


def _resume_through_link(rel: str) -> Callable[[World], Case]:
    def build(w: World) -> Case:
        target = w.user("elsewhere/" + rel.replace("/", "_"), (w.run / rel).read_bytes())
        w.link(rel, target)
        return Case(resume(w), match="symbolic link")

    return build


for _rel in ("summary.json", "checkpoint.json", "settings.json", "best_genome.json"):
    case("links", f"resume never writes through a linked {_rel}")(_resume_through_link(_rel))
case("links", "resume never writes through a linked model/model.json")(
    _resume_through_link("model/model.json")
)


@case("links", "resume never writes through a linked journal.sqlite")
def _(w: World) -> Case:
    target = w.user("elsewhere/journal.sqlite", (w.run / rf.JOURNAL).read_bytes())
    w.link(rf.JOURNAL, target)
    return Case(resume(w), match="symbolic link")


@case("links", "resume never writes through a linked journal WAL")
def _(w: World) -> Case:
    target = w.user("elsewhere/wal", b"")
    w.link(rf.JOURNAL + "-wal", target)
    return Case(resume(w), match="symbolic link")


@case("links", "resume never writes through a linked manifest")
def _(w: World) -> Case:
    target = w.user("elsewhere/evoae-run.json", (w.run / rf.MANIFEST).read_bytes())
    w.link(rf.MANIFEST, target)
    return Case(resume(w))


def _overwrite_through_link(rel: str, folder: bool) -> Callable[[World], Case]:
    def build(w: World) -> Case:
        target = w.folder("elsewhere") if folder else w.user("elsewhere.txt")
        w.link(rel, target)
        return Case(overwrite(w), match=rel)

    return build


for _rel, _folder in (
    ("front", True),
    ("export", True),
    ("report.html", False),
    ("model/model.safetensors", False),
    ("pbt", True),
    ("evoae-run.json", False),
):
    case("links", f"overwrite never follows a linked {_rel}")(
        _overwrite_through_link(_rel, _folder)
    )


@case("links", "report never writes through a linked report.html")
def _(w: World) -> Case:
    w.link("report.html", w.user("mine.html", "<p>mine</p>"))
    return Case(["report", str(w.run), "-q"], match="symbolic link")


@case("links", "report --out never writes through a link")
def _(w: World) -> Case:
    mine = w.user("mine.html", "<p>mine</p>")
    (w.tmp / "out.html").symlink_to(mine)
    return Case(["report", str(w.run), "--out", str(w.tmp / "out.html"), "-q"])


@case("links", "sample --out never writes through a link")
def _(w: World) -> Case:
    mine = w.user("mine.png")
    (w.tmp / "out.png").symlink_to(mine)
    return Case(["sample", str(w.run), "--out", str(w.tmp / "out.png")])


@case("links", "export --pick never writes through a linked front/1/export")
def _(w: World) -> Case:
    w.link("front/1/export", w.folder("elsewhere"))
    return Case(["export", str(w.run), "--pick", "1", "-q"], match="symbolic link")


@case("links", "export --pick never writes through a linked front/1")
def _(w: World) -> Case:
    w.link("front/1", w.folder("elsewhere"))
    return Case(["export", str(w.run), "--pick", "1", "-q"], match="symbolic link")


@case("links", "export never writes through a linked RUN/export")
def _(w: World) -> Case:
    w.link("export", w.folder("elsewhere"))
    return Case(["export", str(w.run), "-q"], match="symbolic link")


@case("links", "export never writes through a linked part in RUN/export")
def _(w: World) -> Case:
    w.link("export/encoder.safetensors", w.user("mine.bin"))
    return Case(["export", str(w.run), "-q"], match="encoder.safetensors")


@case("links", "export --out never writes through a linked part of its own export")
def _(w: World) -> Case:
    out = w.tmp / "exp"
    assert main(["export", str(w.run), "--out", str(out), "-q"]) == 0
    (out / "decoder.safetensors").unlink()
    (out / "decoder.safetensors").symlink_to(w.user("mine.bin"))
    w.watched.append(out)
    return Case(["export", str(w.run), "--out", str(out), "-q"], match="decoder.safetensors")


# ------------------------------------------------------------------ tampered checkpoints


def _checkpoint(edit: Callable[[dict[str, Any]], Any], *more: str) -> Callable[[World], Case]:
    def build(w: World) -> Case:
        path = w.run / rf.CHECKPOINT
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))
        _record(w.run, rf.CHECKPOINT)
        return Case(resume(w, *more))

    return build


def _record(run: Path, rel: str) -> None:
    """Record a tampered file as evoae's, so the file's own checks are what refuse it."""
    from evoae.runs import guard

    guard.record(run / rel)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        target = d
        *parents, last = key.split(".")
        for p in parents:
            target = target[p]
        target[last] = value

    return edit


for _key, _value in (
    ("batches", -1),
    ("batches", "x"),
    ("batches", 10**30),
    ("strategy.tournaments", -3),
    ("strategy.tournaments", 10**9),
    ("strategy.reeval_pairs", [[0, 99]]),
    ("strategy.rng.bit_generator", "MT19937"),
    ("strategy.rng.state", "x"),
    ("strategy.fitness", [None, None, None, None]),
    ("strategy.population", ["a", "b", "c", "d"]),
    ("trainings", True),
    ("history", [{f"k{i}": 0.0 for i in range(65)}]),
    ("history", [{"best": "nan"}]),
):
    case("tampered checkpoints", f"{_key} = {str(_value)[:24]}")(_checkpoint(_set(_key, _value)))


@case("tampered checkpoints", "a genome gene far out of range")
def _(w: World) -> Case:
    def edit(d: dict[str, Any]) -> None:
        d["strategy"]["population"][0][0][0] = 1e9

    return _checkpoint(edit, "--generations", "2")(w)


@case("tampered checkpoints", "a genome with an unknown activation")
def _(w: World) -> Case:
    def edit(d: dict[str, Any]) -> None:
        d["strategy"]["population"][0][0][1] = "rm -rf"

    return _checkpoint(edit, "--generations", "2")(w)


@case("tampered checkpoints", "a UTF-8 byte-order mark in front")
def _(w: World) -> Case:
    w.edit(rf.CHECKPOINT, lambda b: b"\xef\xbb\xbf" + b)
    _record(w.run, rf.CHECKPOINT)
    return Case(resume(w))


# ------------------------------------------------------------------ tampered journal rows


def _journal(*statements: str, argv: Callable[[World], list[str]] | None = None):
    def build(w: World) -> Case:
        con = sqlite3.connect(w.run / rf.JOURNAL)
        for s in statements:
            con.execute(s)
        con.commit()
        con.close()
        _record(w.run, rf.JOURNAL)
        return Case(argv(w) if argv else ["finish", str(w.run), "--again", "-q"])

    return build


def _spec_sql(edit: str) -> str:
    return f"UPDATE evaluations SET spec = json_set(spec, {edit})"


for _name, _sql in (
    ("a seed of -1", "UPDATE evaluations SET seed = -1"),
    ("terms that are a list", "UPDATE evaluations SET terms = '[1, 2]'"),
    ("a genome of another space", "UPDATE evaluations SET genome = '{\"genes\": [1, 2]}'"),
    (
        "a genome with a word for a layer",
        "UPDATE evaluations SET genome = json_set(genome, '$.hidden_1', 'x')",
    ),
    ("the data digest changed", "UPDATE meta SET value = '\"0000\"' WHERE key = 'data_sha256'"),
    ("the space changed", "UPDATE meta SET value = '{\"preset\": \"zzz\"}' WHERE key = 'space'"),
    ("the objective junk", "UPDATE meta SET value = '[[[' WHERE key = 'objective'"),
    ("an extra column", "ALTER TABLE evaluations ADD COLUMN mine TEXT"),
    ("a row deleted", "DELETE FROM evaluations WHERE id = 1"),
    ("the stored settings gone", "DELETE FROM meta WHERE key = 'settings'"),
):
    case("tampered journal rows", f"finish refuses {_name}")(_journal(_sql))

for _name, _sql in (
    ("the data digest changed", "UPDATE meta SET value = '\"0000\"' WHERE key = 'data_sha256'"),
    ("an id gap", "UPDATE evaluations SET id = 99 WHERE id = 2"),
):
    case("tampered journal rows", f"export --pick refuses {_name}")(
        _journal(_sql, argv=lambda w: ["export", str(w.run), "--pick", "2", "-q"])
    )
    case("tampered journal rows", f"report refuses {_name}")(
        _journal(_sql, argv=lambda w: ["report", str(w.run), "--out", str(w.tmp / "r.html")])
    )


@case("tampered journal rows", "finish retrains the genome, not a tampered spec (10^8 wide)")
def _(w: World) -> Case:
    wide = _spec_sql("'$.hidden', json('[[100000000, \"relu\"]]')")
    _journal(wide)(w)

    def check(out: str) -> None:
        spec = json.loads((w.run / rf.BEST_GENOME).read_text())["spec"]
        assert all(width < 1000 for width, _ in spec["hidden"]), spec

    return Case(["finish", str(w.run), "--again", "-q"], expect="ok", check=check, writes_run=True)


# ------------------------------------------------------------------ tampered model.json


def _model_json(edit: Callable[[dict[str, Any]], Any], rel: str = "model/model.json"):
    def build(w: World) -> Case:
        path = w.run / rel
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))
        _record(w.run, rel)
        return Case(["export", str(w.run), "--out", str(w.tmp / "exp"), "-q"])

    return build


for _key, _value in (
    ("spec.init", "zzz"),
    ("spec.init", 5),
    ("spec.output_activation", "zzz"),
    ("spec.lr", 1e300),
    ("spec.batch_size", 10**12),
    ("spec.family", "conv-vae"),
    ("family", "zzz"),
    ("preprocess.data_range", -16.0),
    ("preprocess.data_min", float("1e301")),
    ("preprocess.kind", "zzz"),
    ("preprocess.input_shape", [65]),
    ("preprocess.raw_shape", [1, 8, 9]),
    ("preprocess.resize", [10**9, 10**9]),
    ("weights_sha256", "0" * 64),
):
    case("tampered model.json", f"{_key} = {str(_value)[:20]}")(_model_json(_set(_key, _value)))


@case("tampered model.json", "sample of a front member whose spec says init zzz")
def _(w: World) -> Case:
    _model_json(_set("spec.init", "zzz"), "front/1/model/model.json")(w)
    return Case(["sample", str(w.run / "front" / "1"), "--out", str(w.tmp / "s.png")])


# ------------------------------------------------------------------ tampered settings.json


def _settings(edit: Callable[[dict[str, Any]], Any], argv: Callable[[World], list[str]]):
    def build(w: World) -> Case:
        path = w.run / rf.SETTINGS
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))
        _record(w.run, rf.SETTINGS)
        return Case(argv(w))

    return build


def _show(w: World) -> list[str]:
    return ["runs", "show", str(w.run)]


for _key, _value in (
    ("strategy.options.population", 8),
    ("training.epochs", 3),
    ("seed", 7),
):
    case("tampered settings.json", f"runs show: {_key} = {_value}")(
        _settings(_set(_key, _value), _show)
    )
    case("tampered settings.json", f"report: {_key} = {_value}")(
        _settings(_set(_key, _value), lambda w: ["report", str(w.run), "-o", str(w.tmp / "r.html")])
    )


@case(
    "tampered settings.json", "resume rewrites an edited-but-valid settings.json from the journal"
)
def _(w: World) -> Case:
    _settings(_set("strategy.options.population", 8), resume)(w)

    def check(out: str) -> None:
        stored = json.loads((w.run / rf.SETTINGS).read_text())
        assert stored["strategy"]["options"]["population"] == 4

    return Case(resume(w, "--finish"), expect="ok", check=check, writes_run=True)


@case("tampered settings.json", "runs show of a settings.json 300 levels deep")
def _(w: World) -> Case:
    (w.run / rf.SETTINGS).write_text("[" * 300 + "]" * 300)
    _record(w.run, rf.SETTINGS)
    return Case(_show(w))


# ------------------------------------------------------------------ read-only inspection


def _leave_wal(run: Path) -> None:
    """Committed pages left in the WAL, as a killed search leaves them."""
    import subprocess
    import sys

    code = (
        "import os, signal, sqlite3\n"
        f"db = sqlite3.connect({str(run / rf.JOURNAL)!r}, isolation_level=None)\n"
        "db.execute('PRAGMA wal_autocheckpoint=0')\n"
        "db.execute(\"INSERT OR REPLACE INTO meta VALUES ('probe', '1')\")\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=False)


_READERS: dict[str, Callable[[World], list[str]]] = {
    "runs show": _show,
    "runs show --json --front": lambda w: ["runs", "show", str(w.run), "--json", "--front"],
    "runs list": lambda w: ["runs", "list", str(w.run.parent)],
    "report --out elsewhere": lambda w: ["report", str(w.run), "-o", str(w.tmp / "r.html"), "-q"],
    "export --out elsewhere": lambda w: ["export", str(w.run), "-o", str(w.tmp / "e"), "-q"],
}

for _name, _argv in _READERS.items():
    for _wal in (False, True):

        @case("read-only inspection", f"{_name}{' (pages in the WAL)' if _wal else ''}")
        def _(w: World, _argv=_argv, _wal=_wal) -> Case:
            if _wal:
                _leave_wal(w.run)
            return Case(_argv(w), expect="ok")


@case("read-only inspection", "runs list of a run whose journal is damaged")
def _(w: World) -> Case:
    w.edit(rf.JOURNAL, lambda b: b[:100])
    return Case(["runs", "list", str(w.run.parent)], expect="ok")


@case("read-only inspection", "runs show of a run whose summary.json is cut short")
def _(w: World) -> Case:
    w.edit(rf.SUMMARY, lambda b: b[:10])
    return Case(_show(w), match="summary.json")


@case("read-only inspection", "a refused resume (fewer generations)")
def _(w: World) -> Case:
    return Case(resume(w, "--generations", "0"))


@case("read-only inspection", "a refused resume (pages in the WAL, another code size)")
def _(w: World) -> Case:
    _leave_wal(w.run)
    return Case(resume(w, "--code-size", "3"))


@case("read-only inspection", "a refused finish (already finished, pages in the WAL)")
def _(w: World) -> Case:
    _leave_wal(w.run)
    return Case(["finish", str(w.run), "-q"], match="already finished")


@case("read-only inspection", "a refused export --pick 99")
def _(w: World) -> Case:
    return Case(["export", str(w.run), "--pick", "99", "-q"], match="--pick 99")


@case("read-only inspection", "a refused overwrite (a user's file in model/)")
def _(w: World) -> Case:
    w.user("RUN/model/x.txt")
    _leave_wal(w.run)
    return Case(overwrite(w))


# ------------------------------------------------------------------ the run lock


def _locked(argv: Callable[[World], list[str]]) -> Callable[[World], Case]:
    def build(w: World) -> Case:
        w.hold()
        return Case(argv(w), match="in use by another evoae process")

    return build


for _name, _argv in {
    "resume": lambda w: resume(w),
    "overwrite": overwrite,
    "finish --again": lambda w: ["finish", str(w.run), "--again", "-q"],
    "export into the run": lambda w: ["export", str(w.run), "-q"],
    "export --pick": lambda w: ["export", str(w.run), "--pick", "2", "-q"],
    "report into the run": lambda w: ["report", str(w.run), "-q"],
}.items():
    case("concurrency/locks", f"{_name} while another process holds the run")(_locked(_argv))


@case("concurrency/locks", "runs show while another process holds the run")
def _(w: World) -> Case:
    w.hold()
    return Case(_show(w), expect="ok")


@case("concurrency/locks", "report --out elsewhere while another process holds the run")
def _(w: World) -> Case:
    w.hold()
    return Case(["report", str(w.run), "-o", str(w.tmp / "r.html"), "-q"], expect="ok")


# ------------------------------------------------------------------ the test


@pytest.mark.parametrize("build", table_params(CASES))
def test_hostile_case(build, template: Path, tmp_path: Path, capsys) -> None:
    world = World(tmp_path, fresh_copy(template, tmp_path), template)
    try:
        play(build, world, capsys)
    finally:
        world.close()


# ------------------------------------------------------------------ read-only and full media


MEDIA: dict[str, dict[str, Callable[[World], Case]]] = {}
medium = registrar(MEDIA)


@pytest.fixture(scope="module")
def read_only_run(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The template on a real read-only tmpfs, pages left in its WAL (root only)."""
    disk = tmp_path_factory.mktemp("ro") / "disk"
    if not mount_tmpfs(disk):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        run = disk / "run"
        shutil.copytree(template, run, symlinks=True)
        _leave_wal(run)
        if not remount_ro(disk):
            pytest.skip("cannot remount the tmpfs read-only")
        yield run
    finally:
        umount(disk)


for _name, _argv in _READERS.items():

    @medium("read-only media", f"{_name} of a run on a read-only medium")
    def _(w: World, _argv=_argv) -> Case:
        return Case(_argv(w), expect="ok")


for _name, (_argv, _match) in {
    "resume": (lambda w: resume(w), "not writable"),
    "finish --again": (lambda w: ["finish", str(w.run), "--again", "-q"], "not writable"),
    "report into the run": (lambda w: ["report", str(w.run), "-q"], "Read-only"),
    "export into the run": (lambda w: ["export", str(w.run), "-q"], "Read-only"),
    "export --pick": (lambda w: ["export", str(w.run), "--pick", "2", "-q"], "Read-only"),
    "overwrite": (overwrite, "Read-only"),
}.items():

    @medium("read-only media", f"{_name} on a read-only medium")
    def _(w: World, _argv=_argv, _match=_match) -> Case:
        return Case(_argv(w), match=_match)


@pytest.mark.parametrize("build", table_params(MEDIA))
def test_read_only_medium(build, read_only_run: Path, tmp_path: Path, capsys) -> None:
    play(build, World(tmp_path, read_only_run, read_only_run), capsys)


FULL: dict[str, dict[str, Callable[[World], Case]]] = {}
full = registrar(FULL)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs with a few KiB left (root only)."""
    disk = tmp_path / "full"
    if not mount_tmpfs(disk, "1m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        try:
            with open(disk / "filler", "wb") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
        except OSError:
            pass
        yield disk
    finally:
        umount(disk)


for _name, _argv in {
    "report --out": lambda w, d: ["report", str(w.run), "-o", str(d / "r.html"), "-q"],
    "export --out": lambda w, d: ["export", str(w.run), "-o", str(d / "e"), "-q"],
    "export --out onnx": lambda w, d: [
        "export",
        str(w.run),
        "-o",
        str(d / "o"),
        "-f",
        "onnx",
        "-q",
    ],
    "search --out": lambda w, d: ["search", *QUICK, "--out", str(d / "new")],
}.items():

    @full("full disk", f"{_name} onto a full disk")
    def _(w: World, _argv=_argv) -> Case:
        disk = w.tmp / "full"
        w.watched.append(disk / "filler")
        return Case(_argv(w, disk), match="")


@pytest.mark.parametrize("build", table_params(FULL))
def test_full_disk(build, template: Path, full_disk: Path, tmp_path: Path, capsys) -> None:
    world = World(tmp_path, fresh_copy(template, tmp_path), template)
    play(build, world, capsys)
    leftovers = [p.name for p in full_disk.iterdir() if p.name != "filler"]
    assert all(not any(True for f in (full_disk / n).rglob("*") if f.is_file()) for n in leftovers)
