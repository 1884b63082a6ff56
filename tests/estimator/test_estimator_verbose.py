"""``EvolvedAutoencoder(verbose=...)``: scikit-learn's convention, silent by default."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from evoae import EvolvedAutoencoder

TINY = dict(population=2, generations=1, epochs=1, final_epochs=1, min_steps=0, final_min_steps=0)


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return load_digits().data[:300]


def test_silent_by_default(rows, capsys):
    EvolvedAutoencoder(code_size=3, random_state=0, **TINY).fit(rows)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_verbose_prints_progress_lines_on_stderr(rows, capsys):
    ae = EvolvedAutoencoder(code_size=3, random_state=0, verbose=2, **TINY)
    assert ae.get_params()["verbose"] == 2
    ae.fit(rows)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert captured.out == ""
    assert lines[0].startswith("evoae: search started")
    assert any(" evaluations, best " in ln for ln in lines)
    assert lines[-1].startswith("evoae: final training: epoch 1/1")
