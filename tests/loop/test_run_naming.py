"""A run folder's default name and root (``$EVOAE_RUNS``)."""

from __future__ import annotations

from conftest import TINY_SEARCH

import evoae


def test_default_run_folder_is_named_and_rooted_by_evoae_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOAE_RUNS", str(tmp_path / "root"))
    first = evoae.search("digits", code_size=3, seed=5, **TINY_SEARCH)
    second = evoae.search("digits", code_size=3, seed=5, **TINY_SEARCH)
    assert first.run_dir == tmp_path / "root" / "digits-dense-code3-seed5"
    assert second.run_dir == tmp_path / "root" / "digits-dense-code3-seed5-2"
