"""``evoae search --config FILE``: a TOML file or an earlier run's ``settings.json``,
flags overriding it, unknown keys and bad values refused in one line."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from conftest import run_cli

from evoae.cli import main
from evoae.runs.journal import Journal
from evoae.settings import SearchSettings

#: A small aging-evolution run, away from the defaults in every section a file sets.
FLAGS = [
    "--strategy", "aging", "--population", "3", "--evaluations", "6", "--sample", "2",
    "--epochs", "1", "--final-epochs", "1", "--code-size", "3", "--limit", "400",
    "--seed", "7", "--no-residual",
]  # fmt: skip

#: The same search as FLAGS, written as a TOML file in settings.json's layout.
TOML = """
seed = 7

[data]
dataset = "digits"
limit = 400

[space]
code_size = 3
residual = false

[strategy]
name = "aging"

[strategy.options]
population = 3
evaluations = 6
sample = 2

[training]
epochs = 1
final_epochs = 1
"""


def _rows(run: Path) -> list[dict]:
    with Journal(run / "journal.sqlite") as j:
        return [r.comparable() for r in j.rows()]


def assert_same_journal(a: Path, b: Path) -> None:
    """Genomes, specs, statuses and seeds equal; losses equal within float tolerance."""
    ra, rb = _rows(a), _rows(b)
    assert len(ra) == len(rb) > 0
    for x, y in zip(ra, rb, strict=True):
        for key in ("id", "generation", "genome", "spec", "status", "seed", "cached", "params"):
            assert x[key] == y[key], (key, x[key], y[key])
        for key in ("fitness", "train_loss", "val_loss"):
            if x[key] is None or y[key] is None or math.isinf(x[key]):
                assert x[key] == y[key], key
            else:
                assert x[key] == pytest.approx(y[key], rel=1e-5, abs=1e-7), key
        assert x["terms"].keys() == y["terms"].keys()


def _settings(run: Path) -> dict:
    return json.loads((run / "settings.json").read_text())


def test_a_run_from_settings_json_or_toml_repeats_the_journal(tmp_path, capsys):
    first, again, toml_run = tmp_path / "first", tmp_path / "again", tmp_path / "toml"
    assert main(["search", *FLAGS, "--out", str(first), "-q"]) == 0
    # The earlier run's settings.json, with a new --out: the same search again.
    assert main(["search", "--config", str(first / "settings.json"), "-o", str(again), "-q"]) == 0
    assert_same_journal(first, again)
    assert _settings(again) == _settings(first)
    # The same settings written by hand in TOML.
    config = tmp_path / "run.toml"
    config.write_text(TOML)
    assert main(["search", "--config", str(config), "-o", str(toml_run), "-q"]) == 0
    assert_same_journal(first, toml_run)
    assert _settings(toml_run) == _settings(first)


def test_flags_override_the_file(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(TOML)
    out = tmp_path / "over"
    argv = ["search", "--config", str(config), "--code-size", "2", "--evaluations", "4"]
    assert main([*argv, "--seed", "1", "-o", str(out), "-q"]) == 0
    stored = _settings(out)
    assert stored["space"]["code_size"] == 2 and stored["seed"] == 1
    assert stored["strategy"]["options"]["evaluations"] == 4
    # What the flags left alone comes from the file.
    assert stored["strategy"]["name"] == "aging" and stored["data"]["limit"] == 400
    assert stored["space"]["residual"] is False
    assert len(_rows(out)) == 4


def test_an_unknown_key_is_one_line_with_a_suggestion(tmp_path):
    config = tmp_path / "typo.toml"
    config.write_text("[training]\nepocs = 3\n")
    done = run_cli("search", "--config", str(config))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("evoae: error: config ")
    assert "unknown key 'training.epocs'; did you mean training.epochs?" in lines[0]


#: name -> (file name, contents, fragment of the one-line error)
BAD = {
    "misplaced key": ("a.toml", "[training]\ncode_size = 3\n", "did you mean space.code_size?"),
    "flat key at the top": ("b.toml", "epochs = 3\n", "did you mean training.epochs?"),
    "unknown section": ("c.toml", "[trainig]\nepochs = 3\n", "unknown key 'trainig'"),
    "strategy option typo": (
        "d.toml",
        "[strategy.options]\npopualtion = 3\n",
        "did you mean strategy.options.population?",
    ),
    "unknown strategy": ("e.toml", '[strategy]\nname = "agng"\n', "did you mean aging?"),
    "wrong type": ("f.toml", '[space]\ncode_size = "four"\n', "code size must be an integer"),
    "bool for an int": ("g.toml", "[training]\nepochs = true\n", "must be an integer"),
    "out of bounds": ("h.toml", "[training]\nepochs = 0\n", "epochs must be at least 1"),
    "bad choice": ("i.toml", '[space]\nmodel = "transformer"\n', "unknown model"),
    "nested list": ("j.toml", "[space]\nactivations = [[1]]\n", "must be a list of names"),
    "a date": ("k.toml", "[data]\nlimit = 2024-01-01\n", "limit must be an integer"),
    "section not a table": ("l.toml", "space = 3\n", "space must be a table"),
    "negative seed": ("m.toml", "seed = -1\n", "seed"),
    "broken TOML": ("n.toml", "[space\n", "is not readable TOML"),
    "not UTF-8": ("o.toml", b"\xff\xfe[space]\n", "is not readable TOML"),
    "JSON not an object": ("p.json", "[1, 2]\n", "expected a table of sections"),
    "JSON NaN": ("q.json", '{"seed": NaN}\n', "unreadable or corrupted"),
    "JSON summary, not settings": ("r.json", '{"best_fitness": 0.1}\n', "unknown key"),
    "neither TOML nor JSON": ("s.yaml", "seed: 1\n", "give a .toml file"),
    "nested too deeply": ("u.toml", "seed = " + "[" * 100_000 + "]" * 100_000, "too deeply"),
    "a list for a number": ("v.toml", "[training]\nepochs = [1]\n", "must be an integer"),
    "quoted key with a newline": ("w.toml", '[space]\n"a\\nb" = 1\n', "unknown key 'space.a\\nb'"),
    "strategy option of the wrong type": (
        "x.toml",
        '[strategy]\nname = "microbial"\n[strategy.options]\npopulation = "four"\n',
        "x.toml: strategy.options.population: population must be an integer",
    ),
    "space options not plain": (
        "t.toml",
        "[space.options]\nx = {y = 1}\n",
        "space.options.x must be a plain value",
    ),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_config_files_are_refused_in_one_line(name, tmp_path, capsys):
    file, text, fragment = BAD[name]
    path = tmp_path / file
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    out = tmp_path / "never"
    assert main(["search", "--config", str(path), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evoae: error: "), err
    assert fragment in lines[0], lines[0]
    assert not out.exists()


def test_missing_huge_and_folder_configs_are_refused(tmp_path, capsys):
    huge = tmp_path / "huge.toml"
    huge.write_text("# " + "x" * (2 * 1024 * 1024) + "\n")
    for path, fragment in (
        (tmp_path / "absent.toml", "is missing"),
        (huge, "bytes, more than"),
        (tmp_path, "give a .toml file"),
    ):
        assert main(["search", "--config", str(path), "-q"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and fragment in err, err


def test_config_and_resume_are_refused_together(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(TOML)
    assert main(["search", "--config", str(config), "--resume", str(tmp_path), "-q"]) == 2
    assert "pass only one" in capsys.readouterr().err


def test_the_readme_example_is_a_valid_config(tmp_path):
    from evoae.cli.config import read_config

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"^```toml\n(.*?)^```", readme, re.S | re.M)
    assert len(blocks) == 1
    path = tmp_path / "readme.toml"
    path.write_text(blocks[0])
    flat, strategy = read_config(path)
    assert strategy == "aging"
    assert flat["code_size"] == 3 and flat["population"] == 10 and flat["workers"] == 2
    settings = SearchSettings.from_flat(flat, strategy=strategy)
    settings.validate()


def test_config_given_twice_is_one_line(tmp_path: Path) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text("seed = 1\n")
    b.write_text("seed = 2\n")
    proc = run_cli("search", "--config", str(a), "--config", str(b), "-o", str(tmp_path / "r"))
    assert proc.returncode == 2 and "given twice" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()
