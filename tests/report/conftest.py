"""Runs shared by the report tests: searched once per session, read (not changed) by tests."""

from __future__ import annotations

from pathlib import Path

import pytest

import evoae
from evoae.finish import SearchResult


@pytest.fixture(scope="session")
def dense_result(tmp_path_factory) -> SearchResult:
    out = tmp_path_factory.mktemp("report") / "dense"
    return evoae.search("digits", out=out, population=3, generations=3, epochs=1, final_epochs=2)


@pytest.fixture(scope="session")
def dense_run(dense_result) -> Path:
    return dense_result.run_dir


@pytest.fixture(scope="session")
def vae_result(tmp_path_factory) -> SearchResult:
    out = tmp_path_factory.mktemp("report") / "vae"
    return evoae.search(
        "digits",
        model="conv-vae",
        out=out,
        limit=300,
        population=2,
        generations=1,
        epochs=1,
        final_epochs=1,
    )


@pytest.fixture(scope="session")
def vae_run(vae_result) -> Path:
    return vae_result.run_dir


@pytest.fixture(scope="session")
def nsga2_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "nsga2"
    result = evoae.search(
        "digits",
        strategy="nsga2",
        out=out,
        limit=400,
        population=4,
        batch=4,
        evaluations=8,
        epochs=1,
        final_epochs=1,
    )
    return result.run_dir
