"""The run-file settings schema and docs/settings.md are derived from the declarations."""

from __future__ import annotations

import copy

import pytest

from evoae import settings
from evoae.errors import EvoaeError
from evoae.runs import schema
from evoae.settings import SearchSettings


def test_generated_files_match_the_declarations() -> None:
    # A new or changed setting needs `python -m evoae.settings --write`.
    assert settings._write([]) == 0, "run: python -m evoae.settings --write"


def test_docs_table_lists_every_cli_flag() -> None:
    text = settings.docs_text()
    for section in settings.SECTIONS:
        for f in settings.declared(section):
            if f.metadata["cli"]:
                flag = f.metadata["flag"] or "--" + f.name.replace("_", "-")
                assert f"`{flag}`" in text, flag


def _stored() -> dict:
    return SearchSettings.of("microbial", limit=300).to_dict()


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("space", "code_size", settings.MAX_CODE_SIZE + 1),
        ("data", "image_size", settings.MAX_IMAGE_SIZE + 1),
        ("data", "split", "half"),
        ("training", "epochs", 0),
        ("training", "trainer", "jit"),
        ("execution", "time_budget", -1.0),
        ("strategy", "options", {"population": 1}),
        ("strategy", "options", {"recombination": 2.0}),
    ],
)
def test_reader_refuses_what_the_declarations_refuse(section: str, key: str, value: object) -> None:
    stored = _stored()
    stored[section][key] = value
    with pytest.raises(EvoaeError, match=r"is damaged \(field "):
        schema.validate_settings(stored, "settings.json")
    # ... and the settings layer refuses the same file.
    with pytest.raises(EvoaeError):
        SearchSettings.from_dict(stored)


def test_reader_accepts_stored_settings_and_registered_names() -> None:
    stored = _stored()
    assert schema.validate_settings(copy.deepcopy(stored), "s") == stored
    stored["space"]["model"] = "a-family-registered-later"
    schema.validate_settings(stored, "s")  # the live registry is the settings layer's check
    flat = {"code_size": 4, "population": 20, "generations": 5, "seed": 3}  # evoae 0.1
    schema.validate_settings(flat, "s")
    with pytest.raises(EvoaeError, match="population"):
        schema.validate_settings({**flat, "population": "many"}, "s")
