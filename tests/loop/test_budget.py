"""One budget that means what it says (issue 19): a step floor never raises an epoch
count the user set, on a new run, on ``--resume --finish`` or on ``finish``; the time
budget bounds the whole run; the final stage says whether it converged or hit a cap."""

from __future__ import annotations

import json
import shutil
from typing import Any

import numpy as np
import pytest
import torch

import evoae
from evoae.cli import main
from evoae.data import Dataset
from evoae.errors import EvoaeError
from evoae.families.dense.space import DenseSpace
from evoae.runs.schema import validate_summary
from evoae.training import SequentialEvaluator, train_candidate
from evoae.training.budget import (
    FINAL_SHARE,
    final_deadline,
    honour_counts,
    search_seconds,
)

#: A small digits search; the step floors stay at their defaults unless a test sets
#: them (on 210 training rows the default final floor asks for hundreds of epochs).
SMALL: dict[str, Any] = dict(
    limit=300, strategy="microbial", population=2, generations=1, epochs=1, seed=3
)
#: The same on the command line.
SMALL_CLI = [
    "--limit",
    "300",
    "--strategy",
    "microbial",
    "-n",
    "2",
    "-g",
    "1",
    "-E",
    "1",
    "--seed",
    "3",
]


def _summary(run) -> dict[str, Any]:
    return json.loads((run / "summary.json").read_text())


def _stored(run) -> dict[str, Any]:
    return json.loads((run / "settings.json").read_text())


# ------------------------------------------------------------------ the rules


def test_a_count_the_user_sets_turns_its_default_floor_off():
    assert honour_counts({"final_epochs": 3}) == {"final_epochs": 3, "final_min_steps": 0}
    assert honour_counts({"epochs": 5, "min_steps": None}) == {"epochs": 5, "min_steps": 0}
    # A floor set beside its count is the user's own and stays.
    assert honour_counts({"epochs": 5, "min_steps": 50}) == {"epochs": 5, "min_steps": 50}
    # Nothing set: the defaults (floors included) apply.
    assert honour_counts({"code_size": 2}) == {"code_size": 2}


def test_the_time_budget_is_split_between_search_and_final_stage():
    assert search_seconds(None, None) is None
    assert search_seconds(100.0, None) == pytest.approx(100.0 * (1 - FINAL_SHARE))
    assert search_seconds(100.0, 30.0) == 100.0  # a final budget of its own
    assert final_deadline(10.0, 80.0, 100.0, None) == 110.0  # the whole run's end
    assert final_deadline(10.0, 80.0, 100.0, 30.0) == 110.0 - 100.0 + 80.0 + 30.0 - 10.0
    assert final_deadline(10.0, 80.0, None, None) is None


def _curved(n: int = 240, d: int = 12) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = rng.uniform(-1, 1, size=(n, 2))
    x = np.stack([np.sin(3 * t[:, i % 2]) * (1 + i / d) for i in range(d)], axis=1)
    x = x + 0.01 * rng.standard_normal((n, d))
    return ((x - x.min(0)) / (x.max(0) - x.min(0))).astype(np.float32)


def test_a_final_training_says_whether_it_converged_or_was_capped():
    x = torch.as_tensor(_curved())
    space = DenseSpace(12, 2, pca_init=True)
    spec = space.decode(space.pca_genome())
    tr, va = x[:180], x[180:]
    plateau, _ = train_candidate(spec, tr, va, epochs=500, seed=1, patience=3)
    assert plateau.stop == "plateau" and plateau.epochs < 500
    capped, _ = train_candidate(spec, tr, va, epochs=2, seed=1, patience=3)
    assert capped.stop == "epochs" and capped.epochs == 2
    # A deadline already passed: one epoch, then the time cap.
    timed, _ = train_candidate(spec, tr, va, epochs=50, seed=1, patience=3, deadline=0.0)
    assert timed.stop == "time budget" and timed.epochs == 1
    # A candidate's training (no patience, no deadline) records no stop.
    cand, _ = train_candidate(spec, tr, va, epochs=2, seed=1)
    assert cand.stop is None and cand.epochs == 2


# ------------------------------------------------------------------ epoch counts honoured


def test_final_epochs_on_a_new_run_trains_exactly_that(tmp_path, capsys):
    run = tmp_path / "new"
    assert main(["search", *SMALL_CLI, "--final-epochs", "3", "-o", str(run)]) == 0
    final = _summary(run)["final"]
    assert final["epochs"] == 3 and final["max_epochs"] == 3
    assert final["stop"] == "epochs" and final["converged"] is False
    assert _stored(run)["training"]["final_min_steps"] == 0  # the record resume keeps
    printed = capsys.readouterr().out
    assert "3 epochs (at most 3)" in printed and "capped by the epoch limit" in printed
    assert "search spent" in printed


class _Recorder(SequentialEvaluator):
    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.epochs: list[int] = []

    def evaluate(self, tasks):
        self.epochs += [t.epochs for t in tasks]
        yield from super().evaluate(tasks)


def test_epochs_the_user_sets_are_what_candidates_train(tmp_path):
    x = _curved(200)
    rec = _Recorder(x[:140], x[140:170])  # the search's 70/15 split of 200 rows
    data = Dataset(x=x, y=None, name="<x>")
    kw = dict(strategy="microbial", population=3, generations=2, final_epochs=1, seed=1)
    r = evoae.search("<x>", data=data, out=tmp_path / "e", evaluator=rec, epochs=2, **kw)
    # 140 rows are at most 5 batches: the default floor of 200 steps would ask for 40+.
    assert rec.epochs and set(rec.epochs) == {2}
    assert r.spent is not None and r.spent["epochs"] == 2 * r.spent["trainings"]
    assert r.settings.training.min_steps == 0


def test_final_epochs_on_resume_finish_and_on_finish_trains_exactly_that(tmp_path, capsys):
    run = tmp_path / "r"
    # A tiny time budget: the search stops after one batch and the final training after
    # one epoch of its floor-raised cap (the floor applies: the user set no final epochs).
    first = evoae.search("digits", out=run, time_budget=0, **SMALL)
    assert first.stopped == "time budget"
    assert first.final["stop"] == "time budget" and first.final["converged"] is False
    assert first.final["epochs"] == 1 and first.final["max_epochs"] > 3
    assert _stored(run)["training"]["final_min_steps"] > 0
    other = tmp_path / "f"
    shutil.copytree(run, other)
    capsys.readouterr()

    argv = ["search", "--resume", str(run), "--finish", "--final-epochs", "3"]
    assert main([*argv, "--time-budget", "3600", "-q"]) == 0
    final = _summary(run)["final"]
    assert final["epochs"] == 3 and final["max_epochs"] == 3 and final["stop"] == "epochs"
    # The count is the run's now: a later finish without it still trains 3 epochs.
    assert main(["search", "--resume", str(run), "--finish", "-q"]) == 0
    assert _summary(run)["final"]["epochs"] == 3

    argv = ["finish", str(other), "--again", "--final-epochs", "3", "--final-time-budget", "3600"]
    assert main(argv) == 0
    final = _summary(other)["final"]
    assert final["epochs"] == 3 and final["max_epochs"] == 3 and final["stop"] == "epochs"
    assert _stored(other)["training"]["final_min_steps"] == 0
    assert "3 epochs (at most 3)" in capsys.readouterr().out


def test_a_floor_the_user_sets_with_the_count_still_applies(tmp_path):
    r = evoae.search("digits", out=tmp_path / "both", final_epochs=1, final_min_steps=30, **SMALL)
    # 210 training rows: at most 7 batches an epoch, so 30 steps take more than 1 epoch.
    assert r.final["max_epochs"] > 1 and r.final["steps"] >= min(30, r.final["epochs"] * 7)


# ------------------------------------------------------------------ the time budget


def test_a_time_budget_bounds_the_whole_run(tmp_path):
    # Without a time budget the strategy's budget runs out: 2 + 1 evaluations.
    full = evoae.search("digits", out=tmp_path / "full", final_epochs=1, **SMALL)
    assert full.stopped == "budget" and full.n_evaluations == 3
    # A zero budget: one batch, and the final stage is capped by the same budget.
    timed = evoae.search("digits", out=tmp_path / "t", final_epochs=50, time_budget=0, **SMALL)
    assert timed.stopped == "time budget" and timed.n_evaluations < full.n_evaluations
    assert timed.final["stop"] == "time budget" and timed.final["epochs"] == 1
    assert timed.final["max_epochs"] == 50 and not timed.final["converged"]
    # A final budget of its own frees the final stage from the search's budget.
    own = evoae.search(
        "digits",
        out=tmp_path / "own",
        final_epochs=3,
        time_budget=0,
        final_time_budget=3600,
        **SMALL,
    )
    assert own.stopped == "time budget" and own.n_evaluations < full.n_evaluations
    assert own.final["epochs"] == 3 and own.final["stop"] == "epochs"


def test_the_time_budget_bounds_a_final_pbt_too(tmp_path):
    r = evoae.search(
        "digits",
        out=tmp_path / "pbt",
        final_epochs=6,
        final_pbt=2,
        final_pbt_ready=2,
        time_budget=0,
        **SMALL,
    )
    assert r.final["stop"] == "time budget" and r.final["epochs"] == 2
    assert r.final["pbt"]["epochs_per_copy"] == 2


# ------------------------------------------------------------------ what the run files say


def test_runs_show_states_what_was_spent_and_how_the_final_training_ended(tmp_path, capsys):
    run = tmp_path / "s"
    evoae.search("digits", out=run, final_epochs=2, **SMALL)
    summary = _summary(run)
    spent = summary["spent"]
    assert spent["evaluations"] == 3 and spent["trainings"] >= 1 and spent["seconds"] >= 0
    assert spent["epochs"] == spent["trainings"]  # one epoch each, the floor off
    final = summary["final"]
    assert final["steps"] >= final["epochs"] == 2
    assert final["converged"] == (final["stop"] == "plateau")
    capsys.readouterr()
    assert main(["runs", "show", str(run)]) == 0
    shown = capsys.readouterr().out
    assert "search spent" in shown and "3 evaluations" in shown
    assert "2 epochs (at most 2)" in shown and "capped by the epoch limit" in shown
    assert main(["runs", "show", str(run), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["final_stop"] == "epochs" and record["converged"] is False


def test_old_summaries_stay_readable_and_a_bad_stop_is_refused(tmp_path, capsys):
    run = tmp_path / "old"
    evoae.search("digits", out=run, final_epochs=1, **SMALL)
    summary = _summary(run)
    for key in ("stop", "converged", "max_epochs", "steps"):
        del summary["final"][key]
    del summary["spent"]
    validate_summary(summary, "old summary")
    (run / "summary.json").write_text(json.dumps(summary))
    capsys.readouterr()
    assert main(["runs", "show", str(run)]) == 0
    assert "final training" in capsys.readouterr().out
    bad = {**summary, "final": {**summary["final"], "stop": "whenever"}}
    with pytest.raises(EvoaeError, match="stop"):
        validate_summary(bad, "bad summary")


def test_the_estimators_final_epochs_is_what_trains():
    """``EvolvedAutoencoder(final_epochs=3)`` trains 3 final epochs (the 2,000-step
    floor is off unless set too, as with ``evoae search --final-epochs 3``)."""
    import numpy as np

    from evoae import EvolvedAutoencoder

    x = np.random.default_rng(0).random((120, 8))
    kw = dict(
        code_size=2, strategy="microbial", population=2, generations=1, epochs=1, random_state=0
    )
    ae = EvolvedAutoencoder(final_epochs=3, **kw).fit(x)
    assert ae.final_["epochs"] <= 3
    floored = EvolvedAutoencoder(final_epochs=3, final_min_steps=200, **kw).fit(x)
    assert floored.final_["epochs"] > 3
