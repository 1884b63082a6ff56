"""``--final-pbt``: the best architecture's final training by population-based training.

End to end on the CLI, a SIGKILL during the final PBT resumed by ``evoae finish`` (equal to
an uninterrupted run), the CNN-VAE (beta explored) with the PCA comparison, the settings'
round trip and legacy default, and bad values as one-line errors.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from evoae.cli import main
from evoae.errors import EvoaeError
from evoae.families.io import load_model, weights_equal
from evoae.loop import search
from evoae.runs import folder as rf
from evoae.settings import SearchSettings

pytestmark = pytest.mark.usefixtures("single_thread_torch")

#: A small run whose best is trained by PBT of 3 copies x 2 epochs, exploit every epoch.
ARGS = [
    "--strategy", "microbial",
    "--dataset", "digits", "--limit", "300", "--population", "4", "--generations", "2",
    "--epochs", "1", "--min-steps", "0", "--final-epochs", "2", "--final-min-steps", "0",
    "--final-pbt", "3", "--final-pbt-ready", "1", "--seed", "3", "--executor", "inline",
]  # fmt: skip


def test_final_pbt_end_to_end_on_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(["search", *ARGS, "--out", str(run)]) == 0
    assert "PBT, 3 copies x 2 epochs" in capsys.readouterr().out
    summary = rf.read_json(run / rf.SUMMARY, "summary")
    pbt = summary["final"]["pbt"]
    assert pbt["copies"] == 3 and pbt["epochs_per_copy"] == 2 and pbt["epochs_total"] == 6
    assert pbt["exploits"] == 1  # one bottom copy after the first of two intervals
    assert summary["final"]["val_loss"] == min(pbt["copy_val_losses"])
    state = json.loads((run / pbt["state"] / "state.json").read_text())
    assert state["intervals_done"] == 2 and len(state["history"]) == 6
    assert "pbt" in json.loads((run / "evoae-run.json").read_text())["files"]
    assert summary["settings"]["training"]["final_pbt"] == 3
    assert main(["runs", "show", str(run)]) == 0
    assert "PBT, 3 copies" in capsys.readouterr().out
    # --overwrite removes the pbt/ folder as one of the run's own artifacts.
    assert main(["search", *ARGS, "--out", str(run), "--overwrite", "--final-pbt", "0"]) == 0
    assert not (run / rf.PBT_DIR).exists()
    final = rf.read_json(run / rf.SUMMARY, "summary")["final"]
    assert "pbt" not in final
    assert main(["runs", "show", str(run)]) == 0
    assert "plain, 2 epochs" in capsys.readouterr().out


def _final(run: Path) -> dict[str, Any]:
    s = json.loads((run / rf.SUMMARY).read_text())
    final = {k: v for k, v in s["final"].items() if k != "seconds"}
    return {**{k: s[k] for k in ("best_genome", "best_spec", "n_evaluations")}, "final": final}


def _pbt_files(run: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run)): p.read_bytes() for p in (run / "pbt").rglob("*") if p.is_file()
    }


def test_kill_during_final_pbt_then_finish_equals_uninterrupted(tmp_path: Path) -> None:
    reference, run = tmp_path / "reference", tmp_path / "run"
    assert _evoae("search", *ARGS, "--out", str(reference)) == (0, "")
    # 1: between PBT's second weights file and the state.json naming it.
    code, err = _evoae("search", *ARGS, "--out", str(run), kill="before_rename:state.json:2")
    assert code == -signal.SIGKILL, err
    assert (run / "pbt").is_dir() and not (run / rf.SUMMARY).exists()
    assert list(run.glob("pbt/*/.state.json.*.tmp")), "the kill should leave a temp file"
    # 2: mid-training of a PBT copy in the resumed process (its first forward calls).
    code, err = _evoae("finish", str(run), kill="forward:5")
    assert code == -signal.SIGKILL, err
    assert not (run / rf.SUMMARY).exists()
    states = [json.loads(p.read_text()) for p in run.glob("pbt/*/state.json")]
    assert [st["intervals_done"] for st in states] == [1], "both kills land in the PBT"
    assert _evoae("finish", str(run)) == (0, "")
    assert _final(run) == _final(reference)
    assert _pbt_files(run) == _pbt_files(reference)
    assert weights_equal(load_model(run / "model"), load_model(reference / "model"))
    assert not list(run.rglob(".*.tmp")), "stale temporary files must be cleaned on resume"


def test_cnn_vae_final_pbt_explores_beta(tmp_path: Path) -> None:
    result = search(
        "digits",
        out=tmp_path / "vae",
        limit=200,
        model="conv-vae",
        code_size=2,
        space_options={"filters_range": [2, 4], "dense_range": [8, 8]},
        strategy="microbial",
        population=2,
        generations=1,
        epochs=1,
        min_steps=0,
        final_epochs=2,
        final_pbt=2,
        final_pbt_ready=1,
        executor="inline",
    )
    pbt = result.final["pbt"]
    assert "beta" in pbt["hparams"] and pbt["exploits"] == 1
    assert result.final["pca_val_loss"] is None  # an ELBO is not compared with PCA's MSE
    state = json.loads((result.run_dir / pbt["state"] / "state.json").read_text())
    changed = [r for r in state["history"] if r["new_hparams"] is not None]
    assert changed and "beta" in changed[0]["new_hparams"]


def test_final_pbt_with_the_pca_fallback(tmp_path: Path) -> None:
    # No PCA seed, no PCA-residual candidates and one short epoch: the retrained best
    # loses to PCA and the fallback (the PCA-initialised linear AE, trained by the same
    # PBT or kept as initialised) wins.
    result = search(
        "digits",
        out=tmp_path / "fb",
        limit=200,
        strategy="microbial",
        population=2,
        generations=1,
        epochs=1,
        min_steps=0,
        final_epochs=1,
        final_pbt=2,
        pca_seed=False,
        residual=False,
        executor="inline",
    )
    assert result.final["fallback"] == "pca"
    assert result.final["val_loss"] <= result.final["pca_val_loss"] * (1 + 1e-6)
    assert rf.read_json(result.run_dir / rf.SUMMARY, "summary")["final"]["fallback"] == "pca"


def test_settings_round_trip_legacy_default_and_resume(tmp_path: Path) -> None:
    s = SearchSettings.of(final_pbt=4, final_pbt_ready=3)
    back = SearchSettings.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s and back.training.final_pbt == 4 and back.training.final_pbt_ready == 3
    stored = s.to_dict()
    for key in ("final_pbt", "final_pbt_ready"):
        del stored["training"][key]  # settings stored before --final-pbt existed
    old = SearchSettings.from_dict(stored)
    assert old.training.final_pbt == 0 and old.training.final_pbt_ready == 2
    # Resumable: a finished plain run is retrained by PBT on finish.
    kw: dict[str, Any] = dict(
        limit=200, strategy="microbial", population=2, generations=1, epochs=1, final_epochs=1
    )
    run = tmp_path / "run"
    plain = search("digits", out=run, **kw)
    assert "pbt" not in plain.final
    again = search(None, out=run, resume=True, finish=True, final_pbt=2)
    assert again.final["pbt"]["copies"] == 2
    assert SearchSettings.from_dict(rf.read_json(run / rf.SETTINGS, "settings")) == again.settings


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--final-pbt", "1"], "at least 2 copies, got 1"),
        (["--final-pbt-ready", "0"], "final pbt ready must be at least 1"),
    ],
)
def test_bad_values_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str], fragment: str
) -> None:
    out = tmp_path / "never"
    with pytest.raises(EvoaeError, match=fragment.split(" must")[0]):
        name = flags[0].lstrip("-").replace("-", "_")
        search("digits", out=out, **{name: int(flags[1])})
    if flags[1] == "1":  # argparse accepts 1 (at least 0); the settings refuse it
        rc = main(["search", "--out", str(out), *flags])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and fragment in err[0], err
    else:
        with pytest.raises(SystemExit) as info:
            main(["search", "--out", str(out), *flags])
        assert info.value.code == 2
    for bad in ("-1", "two"):
        with pytest.raises(SystemExit):
            main(["search", "--out", str(out), "--final-pbt", bad])
    assert not out.exists(), "nothing is written for a refused setting"


def _evoae(*args: str, kill: str | None = None) -> tuple[int, str]:
    proc = run_cli(*args, kill=kill, timeout=300)
    return proc.returncode, proc.stderr
