"""Hostile resumes: ``--resume`` with settings other than the run's, or after its data
file changed; refused with one line, the run unchanged (rules of the ``REFUSED`` table
in ``tests/hostile.py``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from hostile import TINY, Env, Refused, refused_test, resume_argv, search_argv

from evoae.loop import search


def _changed_data(env: Env) -> tuple[list[str], Path]:
    """A run on a copy of the data file whose values then change (same shape)."""
    data = env.tmp / "data.npy"
    shutil.copy(env.data, data)
    run = env.tmp / "run-on-copy"
    search(str(data), out=run, **{**TINY, "final_epochs": 0})
    np.save(data, np.load(data)[::-1].copy())
    return search_argv("--resume", run), run


REFUSED: dict[str, Refused] = {
    "resume: other code size": lambda e: resume_argv(e, "--code-size", "3"),
    "resume: other dataset": lambda e: resume_argv(e, "--dataset", "digits"),
    "resume: other preset": lambda e: resume_argv(e, "--preset", "extended"),
    "resume: fewer generations": lambda e: resume_argv(e, "--generations", "1"),
    "resume: data changed since": lambda e: _changed_data(e),
}


test_bad_input_is_refused_with_one_line = refused_test(REFUSED)
