"""The third hostile campaign (issue 21) on the command line: arguments a hostile user
types (NUL bytes, undecodable names, device files, contradictions), which must be one
line and no traceback, and the commands that used to succeed wrongly.

The rule is :mod:`campaign`'s: one ``evoae ... error:`` line and exit 2, or a success
that is right, and the run and every user file unchanged (bytes and mtimes).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from campaign import QUICK, Case, World, fresh_copy, play, registrar, table_params

from evoae.cli import main
from evoae.runs import folder as rf
from evoae.runs import guard

CASES: dict[str, dict[str, Callable[[World], Case]]] = {}
case = registrar(CASES)


@pytest.fixture(scope="module")
def template(picked_run: Path) -> Path:
    return picked_run


def new(w: World, *args: str) -> list[str]:
    """A quick search into a new folder of the scratch space."""
    return ["search", *QUICK, "--out", str(w.tmp / "new"), *args]


def _csv(w: World, text: str) -> Path:
    path = w.tmp / "t.csv"
    path.write_text(text)
    return path


_TABLE = "a,b,c,label\n" + "".join(f"{i % 7},{i % 5},{i % 3},{i % 2}\n" for i in range(60))

# ------------------------------------------------------------------ tracebacks

TRACEBACK_ARGS: dict[str, Callable[[World], list[str]]] = {
    "a NUL byte in --dataset": lambda w: new(w, "--dataset", "a\x00b.npy"),
    "a NUL byte in --data-dir": lambda w: new(w, "--dataset", "mnist", "--data-dir", "d\x00"),
    "a NUL byte in --out": lambda w: ["search", *QUICK, "--out", "o\x00x"],
    "a NUL byte in --resume": lambda w: ["search", "--resume", "r\x00", "-q"],
    "a NUL byte in runs show": lambda w: ["runs", "show", "r\x00"],
    "a NUL byte in runs list": lambda w: ["runs", "list", "r\x00"],
    "a NUL byte in report": lambda w: ["report", "r\x00"],
    "a NUL byte in report --out": lambda w: ["report", str(w.run), "--out", "x\x00.html"],
    "a NUL byte in export": lambda w: ["export", "r\x00"],
    "a NUL byte in sample": lambda w: ["sample", "r\x00"],
    "a NUL byte in finish": lambda w: ["finish", "r\x00"],
    "a NUL byte in --columns": lambda w: new(
        w, "--dataset", str(_csv(w, _TABLE)), "--columns", "a\x00"
    ),
    "an undecodable --dataset name": lambda w: new(w, "--dataset", "\udcff.npy"),
    "an undecodable --resume name": lambda w: ["search", "--resume", "\udcff", "-q"],
    "an undecodable runs show name": lambda w: ["runs", "show", "\udcff"],
    "/dev/null as the dataset": lambda w: new(w, "--dataset", "/dev/null"),
    "/dev/zero named .npy": lambda w: new(w, "--dataset", _link(w, "/dev/zero", "z.npy")),
    "/dev/null as a run": lambda w: ["runs", "show", "/dev/null"],
    "/dev/null as a run to report": lambda w: ["report", "/dev/null"],
    "/dev/null as a run to export": lambda w: ["export", "/dev/null", "-o", str(w.tmp / "e")],
    "/proc as a run to resume": lambda w: ["search", "--resume", "/proc", "-q"],
    "a run folder that is a file": lambda w: ["runs", "show", str(w.user("plain.txt"))],
    "runs list of a file": lambda w: ["runs", "list", str(w.user("plain.txt"))],
    "--out under a file": lambda w: ["search", *QUICK, "--out", str(w.user("f.txt") / "x")],
    "report --out under a file": lambda w: [
        "report",
        str(w.run),
        "-o",
        str(w.user("f") / "r.html"),
    ],
    "export --out under a file": lambda w: ["export", str(w.run), "-o", str(w.user("f") / "e")],
    "sample --out under a file": lambda w: [
        "sample",
        str(w.run),
        "--out",
        str(w.user("f") / "s.png"),
    ],
    "an empty --columns": lambda w: new(w, "--dataset", str(_csv(w, _TABLE)), "--columns", ""),
    "--columns naming no column": lambda w: new(
        w, "--dataset", str(_csv(w, _TABLE)), "--columns", "zz"
    ),
    "--label-column 99": lambda w: new(
        w, "--dataset", str(_csv(w, _TABLE)), "--label-column", "99"
    ),
    "--label-column -1": lambda w: new(
        w, "--dataset", str(_csv(w, _TABLE)), "--label-column", "-1"
    ),
    "a CSV of only a header": lambda w: new(w, "--dataset", str(_csv(w, "a,b,c\n"))),
    "a CSV with a NUL byte": lambda w: new(w, "--dataset", str(_csv(w, "a,b\n1,\x002\n" * 30))),
    "a CSV of 10,000 columns in one row": lambda w: new(
        w, "--dataset", str(_csv(w, ",".join("1" for _ in range(10_000)) + "\n"))
    ),
    "a .npy of shape (60, 0)": lambda w: new(w, "--dataset", _npy(w, np.zeros((60, 0)))),
    "a .npy of one row": lambda w: new(w, "--dataset", _npy(w, np.ones((1, 8)))),
    "a .npy of one column": lambda w: new(w, "--dataset", _npy(w, np.random.rand(60, 1))),
    "a .npz with no arrays": lambda w: new(w, "--dataset", _npz(w)),
    "--code-size 0": lambda w: new(w, "--code-size", "0"),
    "--code-size -4": lambda w: new(w, "--code-size", "-4"),
    "--max-depth 10^6": lambda w: new(w, "--max-depth", "1000000"),
    "--limit 0": lambda w: new(w, "--limit", "0"),
    "--limit 1": lambda w: ["search", *QUICK[:-2], "--out", str(w.tmp / "n"), "--limit", "1"],
    "--image-size 0": lambda w: new(w, "--image-size", "0"),
    "--activations of commas": lambda w: new(w, "--activations", ",,,"),
    "--optimizers unknown": lambda w: new(w, "--optimizers", "adam,zzz"),
    "--objective empty": lambda w: new(w, "--objective", ""),
    "--objective probe on unlabelled data": lambda w: new(
        w, "--objective", "probe", "--dataset", _npy(w, np.random.rand(60, 8))
    ),
    "--model conv-vae on tabular data": lambda w: new(
        w, "--model", "conv-vae", "--dataset", _npy(w, np.random.rand(60, 8))
    ),
    "--binarize dynamic with a dense model": lambda w: new(w, "--binarize", "dynamic"),
    "--device cuda on a machine without one": lambda w: new(w, "--device", "cuda"),
    "--ray-address of words": lambda w: new(w, "--executor", "ray", "--ray-address", "no such"),
    "--time-budget 1e400": lambda w: new(w, "--time-budget", "1e400"),
    "--seed 2^64": lambda w: new(w, "--seed", str(2**64)),
    "--final-pbt 1": lambda w: new(w, "--final-pbt", "1"),
    "--fidelity asha with --min-epochs above --max-epochs": lambda w: new(
        w, "--fidelity", "asha", "--min-epochs", "5", "--max-epochs", "2"
    ),
    "export --format zzz": lambda w: ["export", str(w.run), "--format", "zzz"],
    "export --opset 10^9": lambda w: ["export", str(w.run), "--opset", str(10**9)],
    "export --part zzz": lambda w: ["export", str(w.run), "--part", "zzz"],
    "sample --n 10^9": lambda w: [
        "sample",
        str(w.run),
        "--n",
        str(10**9),
        "--out",
        str(w.tmp / "s.png"),
    ],
    "runs show --top abc": lambda w: ["runs", "show", str(w.run), "--top", "abc"],
    "an option abbreviated to nothing": lambda w: ["search", "--", "x"],
    "an unknown option after a command": lambda w: ["runs", "show", str(w.run), "--frnt"],
}


def _link(w: World, target: str, name: str) -> str:
    (w.tmp / name).symlink_to(target)
    return str(w.tmp / name)


def _npy(w: World, arr: np.ndarray) -> str:
    path = w.tmp / "x.npy"
    np.save(path, arr)
    return str(path)


def _npz(w: World) -> str:
    path = w.tmp / "x.npz"
    np.savez(path)
    return str(path)


for _name, _argv in TRACEBACK_ARGS.items():

    @case("tracebacks", _name)
    def _(w: World, _argv=_argv) -> Case:
        return Case(_argv(w))


# ------------------------------------------------------------------ wrong successes


@case("wrong successes", "finish of a finished run")
def _(w: World) -> Case:
    return Case(["finish", str(w.run), "-q"], match="already finished")


@case("wrong successes", "finish --final-epochs 0")
def _(w: World) -> Case:
    return Case(["finish", str(w.run), "--again", "--final-epochs", "0"], match="untrained")


@case("wrong successes", "--deme 100 for a population of 4")
def _(w: World) -> Case:
    return Case(new(w, "--deme", "100"), match="--deme at most 3")


@case("wrong successes", "--concurrent 3 for a population of 4")
def _(w: World) -> Case:
    return Case(new(w, "--concurrent", "3"))


@case("wrong successes", "--columns naming the label column too")
def _(w: World) -> Case:
    data = _csv(w, _TABLE)
    return Case(new(w, "--dataset", str(data), "--columns", "a,b,label", "--label-column", "label"))


@case("wrong successes", "resume with another population")
def _(w: World) -> Case:
    return Case(["search", "--resume", str(w.run), "-q", "--population", "8"])


@case("wrong successes", "resume with another seed")
def _(w: World) -> Case:
    return Case(["search", "--resume", str(w.run), "-q", "--seed", "2"])


@case("wrong successes", "resume with another dataset")
def _(w: World) -> Case:
    data = _npy(w, np.random.rand(200, 64))
    return Case(["search", "--resume", str(w.run), "-q", "--dataset", data])


@case("wrong successes", "resume into another --out")
def _(w: World) -> Case:
    return Case(["search", "--resume", str(w.run), "-q", "--out", str(w.tmp / "o")])


@case("wrong successes", "--finish without --resume")
def _(w: World) -> Case:
    return Case(new(w, "--finish"))


@case("wrong successes", "--resume with --overwrite")
def _(w: World) -> Case:
    return Case(["search", "--resume", str(w.run), "--overwrite", "-q"])


@case("wrong successes", "export --pick beyond the front")
def _(w: World) -> Case:
    return Case(["export", str(w.run), "--pick", "999", "-q"], match="--pick 999")


@case("wrong successes", "export --max-params 1")
def _(w: World) -> Case:
    return Case(["export", str(w.run), "--max-params", "1", "-q"])


@case("wrong successes", "sample of a dense run")
def _(w: World) -> Case:
    return Case(["sample", str(w.run), "--out", str(w.tmp / "s.png")], match="no prior")


@case("wrong successes", "report --out replaces its own unchanged report")
def _(w: World) -> Case:
    out = w.tmp / "r.html"
    assert main(["report", str(w.run), "--out", str(out), "-q"]) == 0

    def check(_: str) -> None:
        assert guard.is_stamped(out)

    return Case(["report", str(w.run), "--out", str(out), "-q"], expect="ok", check=check)


@case("wrong successes", "report --out refuses its own report with one byte changed")
def _(w: World) -> Case:
    out = w.tmp / "r.html"
    assert main(["report", str(w.run), "--out", str(out), "-q"]) == 0
    out.write_bytes(out.read_bytes()[:-2] + b"\n\n")
    w.watched.append(out)
    return Case(["report", str(w.run), "--out", str(out), "-q"], match="already exists")


@case("wrong successes", "an unknown option names its command once")
def _(w: World) -> Case:
    return Case(["search", "--bogus"], match="evoae search: error: unrecognized arguments")


@case("wrong successes", "an unknown option of runs show names it")
def _(w: World) -> Case:
    return Case(["runs", "show", str(w.run), "--bogus"], match="evoae runs show: error:")


@pytest.mark.parametrize("build", table_params(CASES))
def test_hostile_case(build, template: Path, tmp_path: Path, capsys) -> None:
    world = World(tmp_path, fresh_copy(template, tmp_path), template)
    try:
        play(build, world, capsys)
    finally:
        world.close()


# ------------------------------------------------------------------ findings fixed


def test_sample_replaces_its_own_image_but_not_an_edited_one(tmp_path: Path) -> None:
    from evoae.cli.sample import out_path
    from evoae.errors import EvoaeError
    from evoae.plots.figures import plot_image_grid

    images = np.random.default_rng(0).random((4, 1, 8, 8))
    for name in ("s.png", "s.svg", "s.pdf", "s.jpg"):
        path = plot_image_grid(images, tmp_path / name)
        assert guard.is_stamped(path)
        assert out_path(str(path)) == path  # its own, unchanged: may be replaced
        path.write_bytes(path.read_bytes() + b"x")
        with pytest.raises(EvoaeError, match="already exists"):
            out_path(str(path))
    plot_image_grid(images, tmp_path / "d" / "samples.png")
    assert out_path(str(tmp_path / "d") + "/") == tmp_path / "d" / "samples.png"
    from PIL import Image

    assert Image.open(tmp_path / "d" / "samples.png").size[0] > 0  # still a valid PNG


def test_search_spent_counts_every_session(picked_run: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(picked_run, run)
    ckpt = json.loads((run / rf.CHECKPOINT).read_text())
    ckpt["seconds"] = 1000.0  # earlier sessions ran 1000 s
    (run / rf.CHECKPOINT).write_text(json.dumps(ckpt))
    guard.record(run / rf.CHECKPOINT)
    assert main(["search", "--resume", str(run), "-q", "--generations", "2"]) == 0
    spent = json.loads((run / rf.SUMMARY).read_text())["spent"]
    assert spent["seconds"] >= 1000.0
    assert json.loads((run / rf.CHECKPOINT).read_text())["seconds"] >= 1000.0
