"""TensorBoard and MLflow reporters: what they log is read back by each tool's own reader
(TensorBoard's event accumulator, ``mlflow.search_runs`` on a local file store)."""

from __future__ import annotations

import json
import os
import sys

import pytest
from conftest import TINY_SEARCH, one_line_error, run_cli

import evoae
from evoae.cli import main
from evoae.report.trackers import MLflowReporter, TensorBoardReporter, flatten, store_uri

# Before mlflow is first imported, as the reporter does: no telemetry leaves the machine.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

from mlflow import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)

SEARCH_TAGS = {
    "search/fitness",
    "search/best_fitness",
    "search/train_loss",
    "search/val_loss",
    "search/params",
    "search/seconds",
    "terms/mse",
}
FINAL_TAGS = {"final/train_loss", "final/val_loss", "final/test_loss", "run/evaluations"}


def _flags(settings: dict) -> list[str]:
    return [x for k, v in settings.items() for x in (f"--{k.replace('_', '-')}", str(v))]


def _scalars(logdir) -> EventAccumulator:
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return acc


def _steps(acc: EventAccumulator, tag: str) -> list[int]:
    return [e.step for e in acc.Scalars(tag)]


def _mlflow_runs(uri: str) -> list:
    """``mlflow.search_runs`` as a user runs it (MLflow 3 reads a file store only with
    the opt-in; output as a list: pandas is not needed)."""
    import mlflow

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        return mlflow.search_runs(experiment_names=["evoae"], output_format="list")


def _client(uri: str) -> MlflowClient:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        return MlflowClient(tracking_uri=uri)


def test_cli_logs_to_tensorboard_and_mlflow_without_changing_the_run(tmp_path):
    run, tb, store = tmp_path / "r1", tmp_path / "tb", tmp_path / "mlruns"
    uri = store.as_uri()
    args = ["search", "--out", str(run), *_flags(TINY_SEARCH), "--final-epochs", "2"]
    proc = run_cli(*args, "--tensorboard", str(tb), "--mlflow", uri)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run / "summary.json").read_text())
    n = summary["n_evaluations"]
    epochs = summary["final"]["epochs"]
    assert n >= 4 and epochs >= 1
    # Reporting flags are not settings: the stored settings do not mention them.
    stored = json.dumps(json.loads((run / "settings.json").read_text()))
    assert "tensorboard" not in stored and "mlflow" not in stored

    # TensorBoard: one run folder named after the run, read by TensorBoard's own reader.
    assert [p.name for p in tb.iterdir()] == ["r1"]
    acc = _scalars(tb / "r1")
    tags = set(acc.Tags()["scalars"])
    assert SEARCH_TAGS | FINAL_TAGS <= tags
    assert _steps(acc, "search/params") == list(range(n))  # one step per evaluation
    assert _steps(acc, "final/train_loss") == list(range(1, epochs + 1))
    best = [e.value for e in acc.Scalars("search/best_fitness")]
    assert best == sorted(best, reverse=True)  # best so far never rises
    assert best[-1] == pytest.approx(summary["best_fitness"], rel=1e-5)
    val = acc.Scalars("final/val_loss")[0].value
    assert val == pytest.approx(summary["final"]["val_loss"], rel=1e-5)
    assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")

    # MLflow: the run, its params, metrics with steps and the model files.
    (found,) = _mlflow_runs(uri)
    assert found.info.run_name == "r1" and found.info.status == "FINISHED"
    assert found.data.tags["evoae.run_dir"] == str(run.resolve())
    params = found.data.params
    assert params["space.code_size"] == str(summary["settings"]["space"]["code_size"])
    assert params["strategy.name"] == "microbial"
    assert params["strategy.options.population"] == "4"
    assert found.data.metrics["final/val_loss"] == pytest.approx(summary["final"]["val_loss"])
    client = _client(uri)
    history = client.get_metric_history(found.info.run_id, "search/params")
    assert sorted(m.step for m in history) == list(range(n))
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"model", "plots", "summary.json", "settings.json", "best_genome.json"} <= artifacts
    model = {a.path for a in client.list_artifacts(found.info.run_id, "model")}
    assert model == {"model/model.json", "model/model.safetensors"}


def test_api_reporters_continue_a_resumed_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow's default store: ./mlruns
    run, tb = tmp_path / "r", tmp_path / "tb"
    mlf = MLflowReporter()
    assert mlf.tracking_uri == (tmp_path / "mlruns").resolve().as_uri()
    first = evoae.search("digits", out=run, reporters=[TensorBoardReporter(tb), mlf], **TINY_SEARCH)
    n1 = first.n_evaluations
    again = [TensorBoardReporter(tb), MLflowReporter()]
    second = evoae.search(out=run, resume=True, generations=6, reporters=again)
    n2 = second.n_evaluations
    assert n2 > n1
    acc = _scalars(tb / "r")
    assert _steps(acc, "search/params") == list(range(n2))  # appended, no step twice
    (found,) = _mlflow_runs(mlf.tracking_uri)  # the same MLflow run, continued
    assert found.info.status == "FINISHED"
    assert found.data.params["strategy.options.generations"] == "4"  # params never change
    history = _client(mlf.tracking_uri).get_metric_history(found.info.run_id, "search/params")
    assert sorted(m.step for m in history) == list(range(n2))


@pytest.mark.parametrize(
    "package, make",
    [("tensorboard", lambda p: TensorBoardReporter(p)), ("mlflow", lambda p: MLflowReporter())],
)
def test_a_missing_extra_is_one_line_naming_it(package, make, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # import fails as if not installed
    one_line_error(lambda: make(tmp_path), f"pip install 'evoae[{package}]'")


@pytest.mark.parametrize("flag", [["--tensorboard", "TB"], ["--mlflow"]])
def test_cli_refuses_a_missing_extra_before_the_run_starts(flag, tmp_path, monkeypatch, capsys):
    package = flag[0].lstrip("-")
    monkeypatch.setitem(sys.modules, package, None)
    argv = [a.replace("TB", str(tmp_path / "tb")) for a in flag]
    code = main(["search", "--out", str(tmp_path / "r"), "--quiet", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and f"pip install 'evoae[{package}]'" in err
    assert "Traceback" not in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "tb").exists()


def test_an_unusable_tracking_uri_or_logdir_is_one_line(tmp_path, capsys):
    code = main(["search", "--out", str(tmp_path / "r"), "--quiet", "--mlflow", "bogus://x"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "MLflow cannot use tracking URI bogus://x" in err
    (tmp_path / "f").write_text("")
    one_line_error(lambda: TensorBoardReporter(tmp_path / "f"), "is a file")


def test_store_uri_and_flattened_params(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert store_uri(None) == store_uri("") == (tmp_path / "mlruns").as_uri()
    assert store_uri("runs/ml") == (tmp_path / "runs" / "ml").as_uri()
    assert store_uri("sqlite:///x.db") == "sqlite:///x.db"
    flat = flatten({"a": {"b": 1, "c": None, "d": [0.5, "relu"], "e": {}}, "f": True})
    assert flat == {"a.b": 1, "a.c": "null", "a.d": '[0.5,"relu"]', "a.e": "{}", "f": True}
