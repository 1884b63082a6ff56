"""Shared pytest fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Fixtures of the hostile-input tables (shared runs), for every test folder.
pytest_plugins = ["hostile"]

#: The read-only MNIST / Fashion-MNIST copies next to the repository (never copied into it).
SHARED_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The shared data folder holding ``mnist/`` and ``fashion-mnist/``.

    Skips the test when the folder is absent, except under ``CI=true`` where a missing
    folder is a failure: CI must exercise the real files.
    """
    missing = [n for n in ("mnist", "fashion-mnist") if not (SHARED_DATA_DIR / n).is_dir()]
    if missing:
        reason = f"shared datasets {', '.join(missing)} not found under {SHARED_DATA_DIR}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (required when CI=true)")
        pytest.skip(reason)
    return SHARED_DATA_DIR


@pytest.fixture(scope="session", autouse=True)
def single_thread_torch():
    """Run every test with one torch thread, restoring the previous count afterwards.

    Small models gain nothing from intra-op threads, and on a shared machine the extra
    threads mostly contend for the same cores.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def dense_spec(**over: object) -> dict:
    """A small valid dense spec (64 -> 24 relu -> 4 linear, sigmoid out, Adam), overridable.

    Import it with ``from conftest import dense_spec``; one definition for every test file.
    """
    spec = {
        "family": "dense",
        "input_dim": 64,
        "code_size": 4,
        "hidden": [[24, "relu"]],
        "code_activation": "linear",
        "output_activation": "sigmoid",
        "optimizer": "adam",
        "lr": 0.001,
        "batch_size": 32,
    }
    spec.update(over)
    return spec


#: The smallest search that exercises the whole loop (settings by flat name); no step
#: floors, so "1 epoch" stays one epoch on small data.
#: Every file a finished run folder holds.
RUN_FILES = (
    "journal.sqlite",
    "checkpoint.json",
    "settings.json",
    "best_genome.json",
    "model/model.json",
    "model/model.safetensors",
    "plots/fitness.png",
    "plots/reconstructions.png",
    "summary.json",
)

TINY_SEARCH = dict(
    strategy="microbial",
    population=4,
    generations=4,
    epochs=1,
    final_epochs=1,
    min_steps=0,
    final_min_steps=0,
)


def search_flags(**values: object) -> list[str]:
    """``evoae search`` flags for settings given as keywords, in their order
    (``final_epochs=1`` -> ``["--final-epochs", "1"]``)."""
    return [x for k, v in values.items() for x in (f"--{k.replace('_', '-')}", str(v))]


#: The tiny search as CLI flags (its step floors left to the CLI: ``--epochs`` sets
#: them to 0 unless given).
TINY_CLI = search_flags(strategy="microbial", population=4, generations=4, epochs=1, final_epochs=1)


@pytest.fixture
def tiny_search() -> dict:
    """A fresh copy of :data:`TINY_SEARCH`."""
    return dict(TINY_SEARCH)


def one_line_error(fn, *fragments: str) -> str:
    """Run ``fn``, expect an EvoaeError with a one-line message holding ``fragments``.

    Import it with ``from conftest import one_line_error``.
    """
    from evoae.errors import EvoaeError

    with pytest.raises(EvoaeError) as info:
        fn()
    msg = str(info.value)
    assert msg.strip() and "\n" not in msg, repr(msg)
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)
    return msg


def _cli_env(kill: str | None) -> dict[str, str]:
    from evoae.runs.killpoints import ENV

    env = {k: v for k, v in os.environ.items() if k != ENV}
    if kill is not None:
        env[ENV] = kill
    return env


def start_cli(*args: str, kill: str | None = None) -> subprocess.Popen[str]:
    """``python -m evoae.cli ARGS --quiet`` in a child process (pipes for its output);
    ``kill`` arms a kill point (``appended:2``: SIGKILL itself after the 2nd row)."""
    cmd = [sys.executable, "-m", "evoae.cli", *args, "--quiet"]
    return subprocess.Popen(
        cmd, env=_cli_env(kill), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def run_cli(
    *args: str, kill: str | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """:func:`start_cli`, waited for (stdout and stderr captured)."""
    cmd = [sys.executable, "-m", "evoae.cli", *args, "--quiet"]
    return subprocess.run(cmd, env=_cli_env(kill), capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- runs the report tests read
# Searched once per session (only when a test asks); tests add report.html at most.


def _report_search(factory: pytest.TempPathFactory, name: str, **kw: object) -> object:
    import evoae

    return evoae.search("digits", out=factory.mktemp("report") / name, **kw)


@pytest.fixture(scope="session")
def dense_result(tmp_path_factory) -> object:
    return _report_search(
        tmp_path_factory,
        "dense",
        strategy="microbial",
        population=3,
        generations=3,
        epochs=1,
        final_epochs=2,
    )


@pytest.fixture(scope="session")
def dense_run(dense_result) -> Path:
    return dense_result.run_dir


@pytest.fixture(scope="session")
def vae_result(tmp_path_factory) -> object:
    return _report_search(
        tmp_path_factory, "vae", model="conv-vae", limit=300, strategy="microbial",
        population=2, generations=1, epochs=1, final_epochs=1,
    )  # fmt: skip


@pytest.fixture(scope="session")
def vae_run(vae_result) -> Path:
    return vae_result.run_dir


@pytest.fixture(scope="session")
def nsga2_run(tmp_path_factory) -> Path:
    return _report_search(
        tmp_path_factory, "nsga2", strategy="nsga2", limit=400, population=4, batch=4,
        evaluations=8, epochs=1, final_epochs=1,
    ).run_dir  # fmt: skip
