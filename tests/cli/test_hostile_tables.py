"""The hostile tables, split by topic into ``tests/*/test_*_hostile.py``, stay big."""

from __future__ import annotations

from hostile import all_cases


def test_the_table_is_big_enough() -> None:
    assert len(all_cases("REFUSED")) >= 25


def test_the_tables_hold_at_least_150_cases() -> None:
    unchanged = all_cases("UNCHANGED")
    assert len(unchanged) >= 100
    assert len(unchanged) + len(all_cases("REFUSED")) >= 150
