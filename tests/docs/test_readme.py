"""The README's python snippets (see SECTIONS) run as written."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
SECTIONS = (
    "Quick start",
    "scikit-learn users",
    "Export and deploy",
    "Your own strategy and objective",
)


def section(text: str, heading: str) -> str:
    """The text under ``## heading`` up to the next level-2 heading."""
    found = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert found, f"README has no '## {heading}' section"
    return found.group(1)


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def test_extraction_finds_blocks():
    text = "## A\nx\n```python\nprint(1)\n```\n## B\n```python\nprint(2)\n```\n"
    assert python_blocks(section(text, "A")) == ["print(1)\n"]
    assert python_blocks(section(text, "B")) == ["print(2)\n"]


@pytest.mark.parametrize("heading", SECTIONS)
def test_readme_snippets_run(heading, tmp_path, monkeypatch, capsys):
    blocks = python_blocks(section(README.read_text(), heading))
    assert blocks, f"no python snippet under '## {heading}'"
    monkeypatch.chdir(tmp_path)  # snippets may write run folders: keep them out of the repo
    monkeypatch.setenv("EVOAE_RUNS", str(tmp_path / "api-runs"))  # where evoae.search writes
    # A real module, as a user's script would be (dataclasses look their module up).
    module = types.ModuleType("__readme__")
    monkeypatch.setitem(sys.modules, "__readme__", module)
    namespace = module.__dict__
    for code in blocks:
        exec(compile(code, f"README.md ({heading})", "exec"), namespace)
    out = capsys.readouterr().out
    if heading == "Quick start":
        assert "(1797, 4)" in out
        x = namespace["x"]  # raw digits rows, preprocessed as in training
        assert tuple(x.shape) == (1797, 64) and float(x.min()) == 0.0 and float(x.max()) == 1.0
        assert namespace["result"].run_dir.parent == tmp_path / "api-runs"
    elif heading == "scikit-learn users":
        assert "PCA: reconstruction MSE" in out and "EvolvedAutoencoder: reconstruction MSE" in out
        assert namespace["errors"].shape == (len(namespace["X_test"]),)
        pick = namespace["smallest_within_5_percent"]  # the code-size refit rule
        cv = {
            "mean_test_score": -np.array([0.05, 0.030, 0.0295, 0.029]),
            "params": [{"code_size": k} for k in (2, 4, 8, 16)],
        }
        assert pick(cv) == 1
    elif heading == "Your own strategy and objective":
        assert out.startswith("every-other ")
        assert (tmp_path / "runs" / "own-strategy" / "journal.sqlite").is_file()
    else:
        assert "(5, 4)" in out
        assert (tmp_path / "runs" / "deploy-demo" / "export" / "encoder.onnx").is_file()
