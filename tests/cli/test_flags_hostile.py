"""Hostile command-line settings: out-of-range and unknown values, and options that would
do nothing, each refused with one line before anything is written (rules of the
``REFUSED`` table in ``tests/hostile.py``)."""

from __future__ import annotations

import pytest
from conftest import search_flags
from hostile import Refused, refused_test, search_argv

from evoae.cli import main

REFUSED: dict[str, Refused] = {
    "code size = input size": lambda e: search_argv("--code-size", "64", "--out", e.tmp / "o"),
    "code size > input size": lambda e: search_argv("--code-size", "1000", "--out", e.tmp / "o"),
    "zero population": lambda e: search_argv("--population", "0"),
    "negative population": lambda e: search_argv("--population", "-3"),
    "population of one": lambda e: search_argv("--population", "1", "--out", e.tmp / "o"),
    "zero epochs": lambda e: search_argv("--epochs", "0"),
    "negative epochs": lambda e: search_argv("--epochs", "-1"),
    "zero deme": lambda e: search_argv("--deme", "0"),
    "negative generations": lambda e: search_argv("--generations", "-2"),
    "recombination above 1": lambda e: search_argv("--recombination", "1.5"),
    "unknown activation": lambda e: search_argv("--activations", "swishy", "--out", e.tmp / "o"),
    "unknown optimizer": lambda e: search_argv("--optimizers", "adamx", "--out", e.tmp / "o"),
    "unknown model family": lambda e: search_argv("--model", "gan", "--out", e.tmp / "o"),
    "unknown preset": lambda e: search_argv("--preset", "huge", "--out", e.tmp / "o"),
    "unknown executor over a run": lambda e: search_argv(
        "--executor", "spark", "--out", e.run, "--overwrite"
    ),
    "bad settings over a run": lambda e: search_argv(
        "--code-size", "500", "--out", e.run, "--overwrite"
    ),
}


test_bad_input_is_refused_with_one_line = refused_test(REFUSED)


# ------------------------------------------------------------------ options that would do nothing


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--min-epochs", "2"], "--min-epochs only applies with --fidelity asha"),
        (["--eta", "2"], "--eta only applies with --fidelity asha"),
        (["--max-epochs", "8"], "--max-epochs only applies with --fidelity asha"),
        (["--epoch-budget", "50"], "--epoch-budget only applies with --fidelity asha"),
        (["--final-pbt-ready", "3"], "--final-pbt-ready only applies with --final-pbt"),
        # A budget below one first-rung training evaluated nothing and then told the user
        # to resume a run that could never evaluate anything either.
        (
            ["--fidelity", "asha", "--min-epochs", "2", "--epoch-budget", "1"],
            "cannot pay for one first-rung training",
        ),
        (
            ["--fidelity", "asha", "--strategy", "random", "--evaluations", "1"]
            + ["--min-epochs", "2", "--max-epochs", "4"],
            "cannot pay for one first-rung training",
        ),
    ],
)
def test_an_option_that_would_do_nothing_is_refused(tmp_path, capsys, flags, fragment):
    out = tmp_path / "never"
    capsys.readouterr()
    base = ["search", "--quiet", "--limit", "200", "--epochs", "1", "--final-epochs", "1"]
    rc = main([*base, *flags, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and fragment in err[0], err
    assert not out.exists(), "nothing is written for a refused setting"


def test_asha_options_on_resume_of_a_run_without_asha(picked_run, capsys):
    before = (picked_run / "settings.json").read_bytes()
    for flags in (["--epoch-budget", "100"], ["--final-pbt-ready", "3"]):
        assert main(["search", "--quiet", "--resume", str(picked_run), *flags]) == 2
        assert "only applies with" in capsys.readouterr().err
    assert (picked_run / "settings.json").read_bytes() == before


def test_switching_the_feature_off_explicitly_keeps_its_options_usable(tmp_path):
    base = ["search", "--quiet"]
    base += search_flags(
        limit=200, strategy="microbial", population=4, generations=1, epochs=1, final_epochs=1
    )
    flags = [
        "--fidelity",
        "none",
        "--min-epochs",
        "2",
        "--final-pbt",
        "0",
        "--final-pbt-ready",
        "3",
    ]
    assert main([*base, *flags, "--out", str(tmp_path / "run")]) == 0
