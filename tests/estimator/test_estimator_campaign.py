"""The third hostile campaign (issue 21) on the estimator: what a hostile caller passes
to ``EvolvedAutoencoder`` (parameters, arrays, a ``run_dir`` that is not its own).

The rule is :mod:`campaign`'s: one line (an ``EvoaeError``, or scikit-learn's own
``ValueError``/``TypeError`` for what its validation owns), no other exception, and
every user file unchanged; a success only where it is right.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from campaign import Case, World, fresh_copy, play, registrar, table_params
from sklearn.base import clone

from evoae import EvolvedAutoencoder
from evoae.estimator import _workers

CASES: dict[str, dict[str, Callable[[World], Case]]] = {}
case = registrar(CASES)

TINY: dict[str, Any] = dict(population=2, generations=0, epochs=1, final_epochs=1)
TINY.update(min_steps=0, final_min_steps=0, code_size=2, random_state=0)


def X(n: int = 40, d: int = 6) -> np.ndarray:
    return np.random.default_rng(0).random((n, d))


@pytest.fixture(scope="module")
def fitted() -> EvolvedAutoencoder:
    return EvolvedAutoencoder(**TINY).fit(X())


@pytest.fixture(scope="module")
def template(picked_run: Path) -> Path:
    return picked_run


_FITTED: list[EvolvedAutoencoder] = []


def fit(data: Any, y: Any = None, **params: Any) -> Callable[[], Any]:
    return lambda: EvolvedAutoencoder(**{**TINY, **params}).fit(data, y)


def _with(value: float, where: tuple[int, int] = (3, 2)) -> np.ndarray:
    a = X()
    a[where] = value
    return a


# ------------------------------------------------------------------ input arrays

INPUTS: dict[str, Callable[[World], Callable[[], Any]]] = {
    "a NaN": lambda w: fit(_with(np.nan)),
    "an infinity": lambda w: fit(_with(np.inf)),
    "a -infinity": lambda w: fit(_with(-np.inf)),
    "every value times 1e300 (squared errors overflow)": lambda w: fit(X() * 1e300),
    "one value of 1e200": lambda w: fit(_with(1e200)),
    "one value of -1e160": lambda w: fit(_with(-1e160)),
    "a 1-D array": lambda w: fit(X().ravel()),
    "a 3-D array": lambda w: fit(X().reshape(40, 2, 3)),
    "strings": lambda w: fit(np.full((40, 6), "a")),
    "objects with a None": lambda w: fit(np.array([[None, 1.0]] * 40, dtype=object)),
    "complex numbers": lambda w: fit(X() + 1j),
    "no rows": lambda w: fit(np.zeros((0, 6))),
    "one row": lambda w: fit(X(1)),
    "one column": lambda w: fit(X(40, 1), code_size=1),
    "ragged lists": lambda w: fit([[1.0, 2.0], [3.0]] * 20),
    "None": lambda w: fit(None),
    "a string": lambda w: fit("abc"),
    "labels of the wrong length (probe)": lambda w: fit(X(), np.arange(39) % 2, objective="probe"),
    "labels with a NaN (probe)": lambda w: fit(
        X(), np.r_[np.nan, np.arange(39) % 2], objective="probe"
    ),
}
for _name, _build in INPUTS.items():
    case("estimator input", f"fit refuses {_name}")(lambda w, _b=_build: Case(_b(w)))

# ------------------------------------------------------------------ parameters

PARAMS: dict[str, dict[str, Any]] = {
    "code_size 0": {"code_size": 0},
    "code_size = n_features": {"code_size": 6},
    "code_size 2.5": {"code_size": 2.5},
    "code_size '2'": {"code_size": "2"},
    "code_size True": {"code_size": True},
    "code_size None": {"code_size": None},
    "population 1": {"population": 1},
    "population -1": {"population": -1},
    "population '8'": {"population": "8"},
    "population 10^9": {"population": 10**9},
    "generations -1": {"generations": -1},
    "epochs 0": {"epochs": 0},
    "epochs 1.5": {"epochs": 1.5},
    "random_state 'x'": {"random_state": "x"},
    "random_state -1": {"random_state": -1},
    "n_jobs 0": {"n_jobs": 0},
    "n_jobs 1.5": {"n_jobs": 1.5},
    "n_jobs '2'": {"n_jobs": "2"},
    "n_jobs True": {"n_jobs": True},
    "device 'tpu'": {"device": "tpu"},
    "strategy_options of an unknown option": {"strategy_options": {"bogus": 1}},
    "strategy_options a string": {"strategy_options": "x"},
    "max_ratio NaN": {"max_ratio": float("nan")},
    "max_depth -1": {"max_depth": -1},
    "fidelity 5": {"fidelity": 5},
    "final_pbt -1": {"final_pbt": -1},
    "objective None": {"objective": None},
    "space None": {"space": None},
}
for _name, _params in PARAMS.items():
    case("estimator input", f"fit refuses {_name}")(lambda w, _p=_params: Case(fit(X(), **_p)))

# ------------------------------------------------------------------ run_dir


@case("user files", "estimator run_dir that is a user's file")
def _(w: World) -> Case:
    return Case(fit(X(), run_dir=w.user("notes.txt")))


@case("user files", "estimator run_dir holding the user's files")
def _(w: World) -> Case:
    return Case(fit(X(), run_dir=w.folder("mine")))


@case("user files", "estimator run_dir of a CLI run")
def _(w: World) -> Case:
    return Case(fit(X(), run_dir=w.run), match="did not make")


@case("links", "estimator run_dir that links to a user's folder")
def _(w: World) -> Case:
    (w.tmp / "link").symlink_to(w.folder("mine"))
    return Case(fit(X(), run_dir=w.tmp / "link"))


@case("user files", "estimator run_dir with a NUL byte")
def _(w: World) -> Case:
    return Case(fit(X(), run_dir=str(w.tmp / "r\x00")))


# ------------------------------------------------------------------ the fitted model


def _on_fitted(method: str, data: Callable[[], Any]) -> Callable[[World], Case]:
    def build(w: World) -> Case:
        model = _FITTED[0]
        return Case(lambda: getattr(model, method)(data()))

    return build


for _name, (_method, _data) in {
    "transform of the wrong width": ("transform", lambda: X(5, 7)),
    "transform with a NaN": ("transform", lambda: _with(np.nan)),
    "inverse_transform of the wrong width": ("inverse_transform", lambda: X(5, 3)),
    "inverse_transform of NaN codes": ("inverse_transform", lambda: np.full((5, 2), np.nan)),
    "score of values near 1e200 (overflow)": ("score", lambda: X() * 1e200),
    "score_samples with an infinity": ("score_samples", lambda: _with(np.inf)),
    "score of a 1-D array": ("score", lambda: X().ravel()),
}.items():
    case("estimator input", _name)(_on_fitted(_method, _data))


@pytest.mark.parametrize("build", table_params(CASES))
def test_hostile_case(build, fitted, template: Path, tmp_path: Path, capsys) -> None:
    _FITTED[:] = [fitted]
    world = World(tmp_path, fresh_copy(template, tmp_path), template)
    play(build, world, capsys)


def test_n_jobs_follows_scikit_learn() -> None:
    cores = os.cpu_count() or 1
    assert _workers(None) == 1  # scikit-learn: None is one job, here in this process
    assert _workers(-1) == cores
    assert _workers(-2) == max(1, cores - 1)
    assert _workers(-1000) == 1
    assert _workers(3) == 3
    params = clone(EvolvedAutoencoder(n_jobs=-1)).get_params()
    assert params["n_jobs"] == -1  # stored as given, read at fit


def test_default_n_jobs_trains_in_this_process(tmp_path) -> None:
    """n_jobs=None fits without worker processes: a script needs no __main__ guard."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import numpy as np, evoae\n"
        "X = np.random.default_rng(0).normal(size=(40, 5))\n"
        "ae = evoae.EvolvedAutoencoder(code_size=2, population=4, generations=2, epochs=1,\n"
        "                              final_epochs=1, random_state=0).fit(X)\n"
        "print(ae.transform(X).shape)\n"
    )
    import subprocess
    import sys

    p = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600,
        env={**os.environ, "EVOAE_RUNS": str(tmp_path / "runs")},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    assert "(40, 2)" in p.stdout and "Traceback" not in p.stderr
