"""Tests for the ``evoae`` command line: help, end-to-end searches and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import RUN_FILES, TINY_CLI

import evoae
import evoae.training.evaluator as evaluator_mod
from evoae.cli import main
from evoae.data import load_dataset, load_test_dataset
from evoae.families.io import weights_equal
from evoae.runs.journal import Journal
from evoae.training import evaluate

pytestmark = pytest.mark.usefixtures("single_thread_torch")

TINY = TINY_CLI


def search(*args: str) -> int:
    return main(["search", *TINY, "--quiet", *args])


def assert_usage_error(capsys, argv: list[str]) -> str:
    """An EvoaeError: exit status 2 and one ``evoae: error:`` line on stderr."""
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evoae: error: "), err
    return lines[0]


def assert_argparse_error(capsys, argv: list[str], fragment: str) -> None:
    """An argparse-level error: SystemExit(2) and an ``evoae search: error:`` message."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and fragment in err, err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def comparable(run_dir: Path) -> list[dict]:
    with Journal(run_dir / "journal.sqlite") as j:
        return [r.comparable() for r in j.rows()]


# ------------------------------------------------------------------ help


def test_installed_command_prints_help():
    script = Path(sys.executable).with_name("evoae")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "evoae.cli"]
    done = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: evoae" in done.stdout and "search" in done.stdout


def test_help_in_process(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "neuroevolution" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["search", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--dataset",
        "--data-dir",
        "--limit",
        "--code-size",
        "--latent-dim",
        "--population",
        "--generations",
        "--deme",
        "--recombination",
        "--mutation",
        "--concurrent",
        "--reevaluate",
        "--epochs",
        "--final-epochs",
        "--seed",
        "--out",
        "--overwrite",
        "--resume",
    ):
        assert flag in out, flag


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


# ------------------------------------------------------------------ end to end


def test_digits_search_from_the_cli_matches_the_api(tmp_path, capsys):
    out = tmp_path / "cli"
    # Without --quiet: a progress bar on stderr and the summary table on stdout.
    assert main(["search", *TINY, "--code-size", "4", "--seed", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "evoae search" in printed and "best architecture" in printed
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    api = evoae.search(
        "digits",
        out=tmp_path / "api",
        code_size=4,
        seed=2,
        strategy="microbial",
        population=4,
        generations=4,
        epochs=1,
        final_epochs=1,
    )
    assert comparable(out) == comparable(api.run_dir)
    # The model rebuilt from genome JSON + safetensors is the one the API returned.
    loaded = evoae.load_model(out / "model")
    assert weights_equal(loaded, api.model)
    x = torch.as_tensor(load_dataset("digits", limit=64).x)
    api.model.eval()
    assert torch.equal(loaded(x).recon, api.model(x).recon)
    assert torch.equal(loaded.reconstruct(x), api.model.reconstruct(x))
    settings = json.loads((out / "settings.json").read_text())
    assert settings["data"]["dataset"] == "digits" and settings["seed"] == 2
    assert settings["strategy"]["name"] == "microbial"
    assert settings["strategy"]["options"]["population"] == 4


def test_mnist_slice_search_from_the_cli(tmp_path, capsys, shared_data_dir):
    out = tmp_path / "mnist"
    data = ["--dataset", "mnist", "--data-dir", str(shared_data_dir), "--limit", "1500"]
    assert search(*data, "--code-size", "8", "--out", str(out)) == 0
    assert capsys.readouterr().out.strip() == str(out)
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    # 16x16 images by default.
    assert summary["best_spec"]["input_dim"] == 256 and summary["best_spec"]["code_size"] == 8
    assert summary["n_evaluations"] == 8
    final = summary["final"]
    assert final["status"] == "ok" and 0 < final["val_loss"] < 1
    # The reloaded model scores the official test set exactly as the run reported.
    loaded = evoae.load_model(out / "model")
    test = load_test_dataset("mnist", data_dir=shared_data_dir, image_size=(16, 16))
    assert len(test) == 10_000
    x = torch.as_tensor(test.x)
    assert evaluate(loaded, x)["loss"] == pytest.approx(final["test_loss"], rel=1e-6)
    assert loaded.reconstruct(x[:10]).shape == (10, 1, 16, 16)
    assert json.loads((out / "best_genome.json").read_text())["spec"] == summary["best_spec"]


def test_quiet_prints_the_run_folder_and_latent_dim_sets_the_code_size(tmp_path, capsys):
    out = tmp_path / "q"
    assert search("--latent-dim", "3", "--out", str(out)) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert json.loads((out / "settings.json").read_text())["space"]["code_size"] == 3
    assert json.loads((out / "best_genome.json").read_text())["spec"]["code_size"] == 3


def test_ctrl_c_keeps_finished_evaluations_and_exits_130(tmp_path, capsys, monkeypatch):
    real = evaluator_mod.train_candidate
    calls = []

    def interrupted_on_the_fourth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluator_mod, "train_candidate", interrupted_on_the_fourth)
    out = tmp_path / "r"
    assert search("--no-final-continue", "--out", str(out)) == 130  # plain tasks
    err = capsys.readouterr().err
    assert "interrupted" in err and "--resume" in err
    with Journal(out / "journal.sqlite") as j:
        assert [r.id for r in j.rows()] == [0, 1, 2]


# ------------------------------------------------------------------ bad input


def test_unknown_dataset(tmp_path, capsys):
    line = assert_usage_error(capsys, ["search", "--dataset", "nope", "--out", str(tmp_path / "r")])
    assert "nope" in line
    assert not (tmp_path / "r").exists()


def test_unknown_activation(tmp_path, capsys):
    argv = ["search", "--activations", "relu,nope", "--out", str(tmp_path / "r"), "--quiet"]
    line = assert_usage_error(capsys, argv)
    assert "'nope'" in line and "relu" in line
    assert not (tmp_path / "r").exists()


def test_activation_and_optimizer_choices_restrict_the_space(tmp_path, capsys):
    out = tmp_path / "r"
    assert search("--activations", "relu, tanh", "--optimizers", "adam", "--out", str(out)) == 0
    with Journal(out / "journal.sqlite") as j:
        specs = [r.spec for r in j.rows()]
    acts = {a for s in specs for _, a in s["hidden"]}
    # PCA-residual candidates' code and output are their linear path, not an evolved choice.
    plain = [s for s in specs if s.get("init") != "pca-residual"]
    acts |= {s["code_activation"] for s in plain} | {s["output_activation"] for s in plain}
    assert acts <= {"relu", "tanh"} and {s["optimizer"] for s in specs} == {"adam"}
    assert all(
        s["code_activation"] == s["output_activation"] == "linear" for s in specs if s not in plain
    )


def test_code_size_not_below_input_size(tmp_path, capsys):
    # digits has 64 features.
    argv = ["search", "--code-size", "64", "--out", str(tmp_path / "r"), "--quiet"]
    assert "code size 64" in assert_usage_error(capsys, argv)
    assert not (tmp_path / "r").exists()


def test_missing_data_files(tmp_path, capsys):
    argv = ["search", "--dataset", "mnist", "--data-dir", "/nonexistent", "--quiet"]
    line = assert_usage_error(capsys, [*argv, "--out", str(tmp_path / "r")])
    assert "/nonexistent" in line and "--data-dir" in line
    assert not (tmp_path / "r").exists()


def test_corrupt_data_file(tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"this is not a numpy file at all" * 10)
    argv = ["search", "--dataset", str(bad), "--out", str(tmp_path / "r"), "--quiet"]
    assert str(bad) in assert_usage_error(capsys, argv)
    assert not (tmp_path / "r").exists()


def test_an_existing_run_is_kept_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert search("--out", str(out)) == 0
    capsys.readouterr()
    before = snapshot(out)
    assert len(before) >= len(RUN_FILES)
    line = assert_usage_error(
        capsys, ["search", *TINY, "--quiet", "--seed", "1", "--out", str(out)]
    )
    assert "--overwrite" in line
    assert snapshot(out) == before  # byte for byte
    assert search("--seed", "1", "--out", str(out), "--overwrite") == 0
    assert json.loads((out / "settings.json").read_text())["seed"] == 1


def test_a_folder_with_foreign_files_is_refused(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    line = assert_usage_error(capsys, ["search", *TINY, "--quiet", "--out", str(out)])
    assert "choose" in line
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


def test_resume_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    line = assert_usage_error(capsys, ["search", "--resume", str(tmp_path), "--quiet"])
    assert "not an evoae run" in line


def test_resume_refuses_out_and_overwrite(tmp_path, capsys):
    run = tmp_path / "run"
    assert search("--out", str(run)) == 0
    capsys.readouterr()
    before = snapshot(run)
    other = tmp_path / "elsewhere"
    line = assert_usage_error(
        capsys, ["search", "--quiet", "--resume", str(run), "--out", str(other)]
    )
    assert "--out" in line
    line = assert_usage_error(capsys, ["search", "--quiet", "--resume", str(run), "--overwrite"])
    assert "--overwrite" in line
    assert snapshot(run) == before and not other.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu(tmp_path, capsys):
    argv = ["search", "--device", "cuda", "--out", str(tmp_path / "r"), "--quiet"]
    assert "cuda" in assert_usage_error(capsys, argv)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--population", "0"], "--population"),
        (["--generations", "-1"], "--generations"),
        (["--recombination", "1.5"], "--recombination"),
        (["--mutation", "x"], "--mutation"),
        (["--split", "half"], "--split"),
        (["--seed", "abc"], "--seed"),
        (["--device", "tpu"], "--device"),
        (["--no-such-flag"], "--no-such-flag"),
    ],
)
def test_argparse_rejects_malformed_flags(capsys, argv, fragment):
    assert_argparse_error(capsys, ["search", *argv], fragment)


def test_tabular_data_with_an_image_size(tmp_path, capsys):
    table = tmp_path / "table.npy"
    np.save(table, np.random.default_rng(0).uniform(size=(40, 6)).astype(np.float32))
    argv = ["search", "--dataset", str(table), "--image-size", "4", "--quiet"]
    assert "image" in assert_usage_error(capsys, [*argv, "--out", str(tmp_path / "r")])


def test_search_help_shows_each_strategys_own_options_and_defaults(capsys):
    """``--strategy aging --help`` lists aging's options with aging's defaults; plain
    ``--help`` lists every strategy's, each under its own name."""
    from evoae.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--strategy", "nsga2", "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    own = out.split("strategy nsga2 (--strategy nsga2)")[1]
    assert "children per generation" in own and "[default: 10]" in own
    assert "--generations" not in out and "strategy microbial (" not in out
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    out = capsys.readouterr().out
    for name in ("microbial", "random", "aging", "tpe", "nsga2"):
        assert f"strategy {name} (--strategy {name})" in out
