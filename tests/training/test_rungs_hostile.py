"""Hostile training states: a rung's saved state that is a link to a device is refused
unread, and the task trains from scratch instead."""

from __future__ import annotations

import os

import pytest
from conftest import dense_spec
from hostile import digits_tensors

from evoae.training import Task, train_candidate
from evoae.training.evaluator import train_task
from evoae.training.rungs import BadState, load_rung, train_rung, valid_state
from evoae.training.trainer import as_split


@pytest.mark.parametrize("part", ["json", "safetensors"])
def test_a_state_file_linked_to_a_device_is_refused_without_reading_it(tmp_path, part):
    # A link to /dev/zero would be read until memory ran out and a named pipe would
    # block forever; /dev/null stands in for both (a device, not a regular file).
    x, v = digits_tensors()
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
