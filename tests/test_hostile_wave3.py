"""Hostile use of ASHA, weight inheritance, the final PBT and the wider space (wave 3).

Each test is one thing a careless or hostile user did that evoae handled badly: a
training state that is a link to a device, a damaged PBT checkpoint, ``--overwrite``
of a run that ``export --pick`` wrote into, an epoch budget too small for one training,
multi-fidelity flags without ``--fidelity asha``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import dense_spec

from evoae.cli import main
from evoae.errors import EvoaeError
from evoae.training import Task, train_candidate
from evoae.training.evaluator import train_task
from evoae.training.pbt import pbt_train
from evoae.training.rungs import BadState, load_rung, train_rung, valid_state
from evoae.training.trainer import as_split

SEARCH = ["search", "--quiet", "--limit", "200", "--population", "4", "--generations", "1"]
SEARCH += ["--epochs", "1", "--final-epochs", "1", "--seed", "1"]


def _data():
    from evoae.data import load_dataset

    d = load_dataset("digits", limit=120)
    import torch

    x = torch.as_tensor(d.x.reshape(len(d.x), -1), dtype=torch.float32)
    return x[:90], x[90:]


# ------------------------------------------------------------------ training states


@pytest.mark.parametrize("part", ["json", "safetensors"])
def test_a_state_file_linked_to_a_device_is_refused_without_reading_it(tmp_path, part):
    # A link to /dev/zero would be read until memory ran out and a named pipe would
    # block forever; /dev/null stands in for both (a device, not a regular file).
    x, v = _data()
    spec = dense_spec()
    stem = tmp_path / "states" / "0"
    train_rung(spec, x, v, epochs=1, seed=3, save=stem)
    target = stem.with_suffix(f".{part}")
    target.unlink()
    target.symlink_to(os.devnull)
    from evoae.families import build_model
    from evoae.training.optim import make_optimizer

    model = build_model(spec, 3)
    opt = make_optimizer(spec["optimizer"], model.parameters(), spec["lr"])
    with pytest.raises(BadState, match="not a regular file"):
        load_rung(stem, model, opt, seed=3)
    if part == "safetensors":
        assert not valid_state(stem, spec)
    # The task falls back to training from scratch: the same result.
    result = train_task(Task(spec, 3, 2, resume=str(stem)), as_split(x), as_split(v), None)
    direct, _ = train_candidate(spec, x, v, epochs=2, seed=3)
    assert result.fitness == direct.fitness
    assert target.is_symlink() and os.readlink(target) == os.devnull  # left alone


# ------------------------------------------------------------------ the final PBT's checkpoint


def _edit_state(key: str, value: object):
    def edit(folder: Path) -> None:
        path = folder / "state.json"
        meta = json.loads(path.read_text())
        if value is _DROP:
            del meta[key]
        else:
            meta[key] = value
        path.write_text(json.dumps(meta))

    return edit


def _edit_member(key: str, value: object):
    def edit(folder: Path) -> None:
        path = folder / "state.json"
        meta = json.loads(path.read_text())
        meta["members"][0]["hparams"][key] = value
        path.write_text(json.dumps(meta))

    return edit


def _link_to_device(name: str):
    def edit(folder: Path) -> None:
        target = next(folder.glob(name))
        target.unlink()
        target.symlink_to(os.devnull)

    return edit


_DROP = object()
PBT_DAMAGE = {
    "state.json a link to a device": _link_to_device("state.json"),
    "weights a link to a device": _link_to_device("weights-*.safetensors"),
    "config missing": _edit_state("config", _DROP),
    "history of numbers": _edit_state("history", [1, "x", None]),
    "history a string": _edit_state("history", "abc"),
    "history too short": _edit_state("history", []),
    "intervals_done a float": _edit_state("intervals_done", 1.7),
    "intervals_done a string": _edit_state("intervals_done", "1"),
    "weights outside the folder": _edit_state("weights", "../../journal.sqlite"),
    "an overflowing learning rate": _edit_member("lr", 1e300),
    "a huge batch size": _edit_member("batch_size", 1e15),
}


@pytest.mark.parametrize("how", list(PBT_DAMAGE))
def test_a_damaged_pbt_checkpoint_is_a_one_line_error(tmp_path, how):
    x, v = _data()
    spec = dense_spec()
    kw = dict(copies=2, epochs=3, ready=1, seed=1, state_path=tmp_path / "ck")

    def crash(done: int, history: list) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pbt_train(spec, x, v, on_interval=crash, **kw)
    PBT_DAMAGE[how](tmp_path / "ck")
    with pytest.raises(EvoaeError, match="PBT") as e:
        pbt_train(spec, x, v, **kw)
    assert "\n" not in str(e.value)
    if "device" in how:  # refused unread: /dev/zero would fill memory, a pipe block
        assert "not a regular file" in str(e.value)


# ------------------------------------------------------------------ --overwrite and front/


@pytest.fixture(scope="module")
def picked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny finished run with front member 1 exported into it (``front/1``)."""
    run = tmp_path_factory.mktemp("wave3") / "run"
    assert main([*SEARCH, "--out", str(run)]) == 0
    assert main(["export", str(run), "--pick", "1", "--quiet"]) == 0
    assert (run / "front" / "1" / "export").is_dir()
    return run


def test_overwrite_removes_the_front_that_export_pick_wrote(picked, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(picked, run)
    assert main([*SEARCH, "--out", str(run), "--overwrite"]) == 0
    assert not (run / "front").exists()


@pytest.mark.parametrize(
    "where", ["front/notes.txt", "front/1/notes.txt", "front/1/model/notes.txt", "front/x/a"]
)
def test_overwrite_refuses_a_user_file_in_front(picked, tmp_path, capsys, where):
    run = tmp_path / "run"
    shutil.copytree(picked, run)
    (run / where).parent.mkdir(parents=True, exist_ok=True)
    (run / where).write_text("mine")
    before = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    capsys.readouterr()
    assert main([*SEARCH, "--out", str(run), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a" in err[0] and "evoae writes" in err[0], err
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == before


# ------------------------------------------------------------------ options that would do nothing


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--min-epochs", "2"], "--min-epochs only applies with --fidelity asha"),
        (["--eta", "2"], "--eta only applies with --fidelity asha"),
        (["--max-epochs", "8"], "--max-epochs only applies with --fidelity asha"),
        (["--epoch-budget", "50"], "--epoch-budget only applies with --fidelity asha"),
        (["--final-pbt-ready", "3"], "--final-pbt-ready only applies with --final-pbt"),
        # A budget below one first-rung training evaluated nothing and then told the user
        # to resume a run that could never evaluate anything either.
        (
            ["--fidelity", "asha", "--min-epochs", "2", "--epoch-budget", "1"],
            "cannot pay for one first-rung training",
        ),
        (
            ["--fidelity", "asha", "--strategy", "random", "--evaluations", "1"]
            + ["--min-epochs", "2", "--max-epochs", "4"],
            "cannot pay for one first-rung training",
        ),
    ],
)
def test_an_option_that_would_do_nothing_is_refused(tmp_path, capsys, flags, fragment):
    out = tmp_path / "never"
    capsys.readouterr()
    base = ["search", "--quiet", "--limit", "200", "--epochs", "1", "--final-epochs", "1"]
    rc = main([*base, *flags, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and fragment in err[0], err
    assert not out.exists(), "nothing is written for a refused setting"


def test_asha_options_on_resume_of_a_run_without_asha(picked, capsys):
    before = (picked / "settings.json").read_bytes()
    for flags in (["--epoch-budget", "100"], ["--final-pbt-ready", "3"]):
        assert main(["search", "--quiet", "--resume", str(picked), *flags]) == 2
        assert "only applies with" in capsys.readouterr().err
    assert (picked / "settings.json").read_bytes() == before


def test_switching_the_feature_off_explicitly_keeps_its_options_usable(tmp_path):
    base = ["search", "--quiet", "--limit", "200", "--population", "4", "--generations", "1"]
    base += ["--epochs", "1", "--final-epochs", "1"]
    flags = [
        "--fidelity",
        "none",
        "--min-epochs",
        "2",
        "--final-pbt",
        "0",
        "--final-pbt-ready",
        "3",
    ]
    assert main([*base, *flags, "--out", str(tmp_path / "run")]) == 0
