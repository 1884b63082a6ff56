"""Torch threads: set for a block, restored after it."""

from __future__ import annotations

import torch

from evoae.training.threads import available_cores, torch_threads


def test_torch_threads_are_restored():
    before = torch.get_num_threads()
    with torch_threads(3):
        assert torch.get_num_threads() == 3
    assert torch.get_num_threads() == before
    assert available_cores() >= 1
