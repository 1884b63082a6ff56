"""The wider dense space from the command line: --max-ratio."""

from __future__ import annotations

import json

import pytest

from evoae.cli import main
from evoae.runs.journal import Journal

ARGS = [
    "search",
    "--strategy",
    "microbial",
    "-n",
    "4",
    "-g",
    "4",
    "-E",
    "1",
    "--final-epochs",
    "1",
    "--limit",
    "300",
    "-q",
]


def test_max_ratio_widens_layers_and_is_stored(tmp_path, capsys):
    out = tmp_path / "wide"
    assert main([*ARGS, "--max-ratio", "2", "-o", str(out), "--seed", "1"]) == 0
    stored = json.loads((out / "settings.json").read_text())
    assert stored["space"]["max_ratio"] == 2.0
    with Journal(out / "journal.sqlite", readonly=True) as j:
        specs = [r.spec for r in j.rows()]
    widths = [[h[0] for h in s["hidden"]] for s in specs if s.get("hidden")]
    assert any(w and w[0] > 64 for w in widths), "digits have 64 inputs: some layer is wider"
    # A resume reads the stored value back.
    assert main(["search", "--resume", str(out), "-q"]) == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-ratio", "0"], "max ratio must be in"),
        (["--max-ratio", "99"], "--max-ratio"),
        (["--max-ratio", "two"], "--max-ratio"),
        (["-m", "conv-ae", "--max-ratio", "2"], "applies to the dense family"),
    ],
)
def test_bad_max_ratio_is_one_line(tmp_path, capsys, flags, message):
    out = tmp_path / "bad"
    with pytest.raises(SystemExit) as e:
        code = main([*ARGS, *flags, "-o", str(out)])
        raise SystemExit(code)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) <= 3
    assert not (out / "journal.sqlite").exists()
