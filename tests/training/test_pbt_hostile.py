"""Hostile PBT checkpoints: a damaged or linked state of the final PBT is a one-line
error, a link to a device refused unread."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import dense_spec
from hostile import digits_tensors

from evoae.errors import EvoaeError
from evoae.training.pbt import pbt_train


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
    x, v = digits_tensors()
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
