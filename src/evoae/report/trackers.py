"""Reporters for TensorBoard and MLflow: the progress bar's events, logged where those
tools read them.

Both are optional extras (``pip install 'evoae[tensorboard]'`` / ``'evoae[mlflow]'``).
Their package is imported when the reporter is made, so a missing one is refused in one
line before the run folder is touched; importing this module costs nothing.

What is logged, the same names in both:

- per evaluation, at step = the journal row's id: ``search/fitness``,
  ``search/best_fitness`` (best so far), ``search/train_loss``, ``search/val_loss``,
  ``search/params``, ``search/seconds`` and ``terms/NAME`` for each loss term (values
  that are not finite, such as a failed candidate's fitness, are left out);
- per epoch of the final training, at step = the epoch: ``final/train_loss``;
- once retrained: ``final/NAME`` for each figure of the final training (``val_loss``,
  ``test_loss``, ``pca_ratio``...) and ``run/evaluations``, ``run/trainings``,
  ``run/seconds``.

A resumed run continues its steps from the journal's count: TensorBoard's writer purges
what an interrupted run logged past the last journaled evaluation, and MLflow continues
the run it logged to before (found by the ``evoae.run_dir`` tag).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

from evoae.errors import EvoaeError
from evoae.report.progress import Reporter
from evoae.runs import folder as rf
from evoae.runs.journal import Row

#: MLflow's own limits: params (and tags) per ``log_batch`` call, characters per value.
_PARAMS_PER_BATCH = 100
_PARAM_CHARS = 6000
#: The tag that ties an MLflow run to its run folder, so a resume continues it.
RUN_DIR_TAG = "evoae.run_dir"


def _require(module: str, extra: str) -> Any:
    """Import ``module`` or refuse in one line naming the pip extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise EvoaeError(
            f"{extra} logging needs the {extra} package ({e.name or module} is missing): "
            f"pip install 'evoae[{extra}]'"
        ) from None


def evaluation_scalars(row: Row, best: float) -> dict[str, float]:
    """What one journaled evaluation contributes: its figures, finite values only."""
    values: dict[str, Any] = {
        "search/fitness": row.fitness,
        "search/best_fitness": best,
        "search/train_loss": row.train_loss,
        "search/val_loss": row.val_loss,
        "search/params": row.params,
        "search/seconds": row.seconds,
    }
    values.update({f"terms/{k}": v for k, v in row.terms.items()})
    return _finite(values)


def final_scalars(result: Any) -> dict[str, float]:
    """The retrained best's figures (``result``: a SearchResult), finite numbers only."""
    values: dict[str, Any] = {f"final/{k}": v for k, v in result.final.items()}
    values["run/evaluations"] = result.n_evaluations
    values["run/trainings"] = result.n_trainings
    values["run/seconds"] = result.seconds
    return _finite(values)


def _finite(values: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str | int | float | bool]:
    """Nested settings as ``section.name`` keys; lists and nulls as compact JSON text."""
    out: dict[str, str | int | float | bool] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        elif isinstance(v, str | int | float | bool):
            out[key] = v
        else:
            out[key] = json.dumps(v, separators=(",", ":"), default=str)
    return out


class TensorBoardReporter(Reporter):
    """Scalars for TensorBoard under ``logdir/<run folder name>``.

    Open them with ``tensorboard --logdir LOGDIR``: each run is one TensorBoard run.
    At the end the best genome is written as hparams (with ``final/val_loss``,
    ``final/test_loss`` and ``search/best_fitness``) for the HPARAMS tab.

    Parameters
    ----------
    logdir
        The folder TensorBoard is pointed at; created when the run starts.
    flush_secs
        How often events reach the disk while the search runs (live view).
    """

    def __init__(self, logdir: str | Path, *, flush_secs: float = 5.0) -> None:
        _require("tensorboard", "tensorboard")
        self.logdir = Path(logdir)
        if self.logdir.exists() and not self.logdir.is_dir():
            raise EvoaeError(f"{self.logdir} is a file: give TensorBoard a folder to log to")
        self.flush_secs = flush_secs
        self.path: Path | None = None
        self._run_dir: Path | None = None
        self._writer: Any = None
        self._best = math.inf

    def opened(self, run_dir: Path, resumed: bool) -> None:
        self._run_dir = Path(run_dir)

    def start(
        self,
        total: int,
        done: int,
        settings: dict[str, Any],
        unit: str = "generations",
        evaluations: int = 0,
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        name = self._run_dir.name if self._run_dir is not None else "evoae"
        self.path = self.logdir / name
        # purge_step: TensorBoard drops whatever an earlier writer in this folder logged
        # at this step or later (an interrupted run's unjournaled tail, a replaced run).
        self._writer = SummaryWriter(
            str(self.path), purge_step=evaluations, flush_secs=int(max(1, self.flush_secs))
        )

    def evaluated(self, row: Row) -> None:
        if self._writer is None:
            return
        self._best = min(self._best, row.fitness)
        for tag, value in evaluation_scalars(row, self._best).items():
            self._writer.add_scalar(tag, value, row.id)

    def final_epoch(self, done: int, loss: float) -> None:
        if self._writer is not None and math.isfinite(loss):
            self._writer.add_scalar("final/train_loss", loss, done)

    def finished(self, result: Any, splits: Any) -> None:
        if self._writer is None:
            return
        scalars = final_scalars(result)
        for tag, value in scalars.items():
            if tag != "final/train_loss":  # that tag holds the per-epoch curve
                self._writer.add_scalar(tag, value, 0)
        self._hparams(result, scalars)
        self._writer.flush()

    def _hparams(self, result: Any, scalars: dict[str, float]) -> None:
        """The best genome as hparams, in this run's own folder (``add_hparams`` would
        make a new one)."""
        from torch.utils.tensorboard.summary import hparams

        from evoae.families import describe

        params = flatten(result.best_genome)
        params["architecture"] = describe(result.best_spec)
        metrics = {
            k: v
            for k, v in scalars.items()
            if k in ("final/val_loss", "final/test_loss", "final/params")
        }
        if math.isfinite(result.best_fitness):
            metrics["search/best_fitness"] = float(result.best_fitness)
        writer = self._writer._get_file_writer()
        for summary in hparams(params, metrics):
            writer.add_summary(summary)

    def end(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class MLflowReporter(Reporter):
    """An MLflow run per search: settings as params, the scalars above as metrics with
    their step, the retrained model's files as artifacts.

    Parameters
    ----------
    tracking_uri
        Where MLflow stores runs: a ``file:`` URI, a folder, or any URI MLflow takes
        (``sqlite:///mlflow.db``, ``http://127.0.0.1:5000``...). Default: the local
        file store ``./mlruns`` (what ``mlflow ui`` opens from that folder); nothing
        is sent over a network unless a server's URI is given.
    experiment
        The MLflow experiment's name; created when missing.

    The run is named after the run folder and tagged ``evoae.run_dir`` with its absolute
    path; a resumed search continues that MLflow run (params it already holds are kept:
    MLflow params cannot change; ``settings.json`` among the artifacts has the new ones).
    Artifacts: ``model/``, ``plots/``, ``best_genome.json``, ``settings.json`` and
    ``summary.json``. MLflow's telemetry is off unless ``MLFLOW_DISABLE_TELEMETRY`` is
    set otherwise.
    """

    def __init__(self, tracking_uri: str | None = None, experiment: str = "evoae") -> None:
        if not experiment.strip():
            raise EvoaeError("the MLflow experiment name is empty: give a name")
        self.tracking_uri = store_uri(tracking_uri)
        # evoae talks to no server of its own accord; both are read when mlflow is
        # imported, so they are set first.
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        if self.tracking_uri.startswith("file:"):
            # MLflow 3 keeps the file store but asks for this opt-in (MLflow 2 ignores it).
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self._mlflow = _require("mlflow", "mlflow")
        self.experiment = experiment
        self.run_id: str | None = None
        self._client: Any = None
        self._run_dir: Path | None = None
        self._resumed = False
        self._best = math.inf
        self._finished = False

    def opened(self, run_dir: Path, resumed: bool) -> None:
        self._run_dir = Path(run_dir).resolve()
        self._resumed = resumed

    def start(
        self,
        total: int,
        done: int,
        settings: dict[str, Any],
        unit: str = "generations",
        evaluations: int = 0,
    ) -> None:
        try:
            self._client = client = self._mlflow.MlflowClient(tracking_uri=self.tracking_uri)
            exp = client.get_experiment_by_name(self.experiment)
            exp_id = (
                exp.experiment_id if exp is not None else client.create_experiment(self.experiment)
            )
            run = self._earlier_run(exp_id) if self._resumed else None
        except Exception as e:  # MLflow's errors name no common base: any is the store's
            first = (str(e).strip().splitlines() or [""])[0][:200]
            raise EvoaeError(
                f"MLflow cannot use tracking URI {self.tracking_uri} ({type(e).__name__}: "
                f"{first}): give a folder, a file: URI or a tracking server's http: URI"
            ) from None
        if run is None:
            name = self._run_dir.name if self._run_dir is not None else "evoae"
            tags = {RUN_DIR_TAG: str(self._run_dir)} if self._run_dir is not None else {}
            run = client.create_run(exp_id, run_name=name, tags=tags)
            held: dict[str, str] = {}
        else:
            client.update_run(run.info.run_id, status="RUNNING")
            held = dict(run.data.params)
        self.run_id = run.info.run_id
        self._log_params({k: v for k, v in flatten(settings).items() if k not in held})

    def _earlier_run(self, exp_id: str) -> Any:
        """The MLflow run this run folder logged to before, if any."""
        from mlflow.entities import ViewType

        token = None
        while True:
            page = self._client.search_runs(
                [exp_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token
            )
            for run in page:
                if run.data.tags.get(RUN_DIR_TAG) == str(self._run_dir):
                    return run
            token = page.token
            if not token:
                return None

    def _log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:_PARAM_CHARS]) for k, v in params.items()]
        for i in range(0, len(items), _PARAMS_PER_BATCH):
            self._client.log_batch(self.run_id, params=items[i : i + _PARAMS_PER_BATCH])

    def _log_metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in values.items()]
        if metrics:
            self._client.log_batch(self.run_id, metrics=metrics)

    def evaluated(self, row: Row) -> None:
        if self.run_id is None:
            return
        self._best = min(self._best, row.fitness)
        self._log_metrics(evaluation_scalars(row, self._best), row.id)

    def final_epoch(self, done: int, loss: float) -> None:
        if self.run_id is not None and math.isfinite(loss):
            self._log_metrics({"final/train_loss": loss}, done)

    def finished(self, result: Any, splits: Any) -> None:
        if self.run_id is None:
            return
        from evoae.families import describe

        scalars = final_scalars(result)
        scalars.pop("final/train_loss", None)  # that key holds the per-epoch curve
        self._log_metrics(scalars, 0)
        # Tags, not params: a resumed run may retrain a different best.
        tags = {f"best.{k}": str(v)[:_PARAM_CHARS] for k, v in flatten(result.best_genome).items()}
        tags["best.architecture"] = describe(result.best_spec)
        for k, v in tags.items():
            self._client.set_tag(self.run_id, k, v)
        self._finished = True

    def end(self) -> None:
        """Artifacts once the run folder is complete (``summary.json`` is written after
        every reporter's ``finished``), then the MLflow run's status."""
        if self.run_id is None:
            return
        run_id, self.run_id = self.run_id, None
        if self._finished and self._run_dir is not None:
            for name in (rf.MODEL_DIR, rf.PLOTS_DIR):
                if (self._run_dir / name).is_dir():
                    self._client.log_artifacts(run_id, str(self._run_dir / name), name)
            for name in (rf.BEST_GENOME, rf.SETTINGS, rf.SUMMARY):
                if (self._run_dir / name).is_file():
                    self._client.log_artifact(run_id, str(self._run_dir / name))
        self._client.set_terminated(run_id, "FINISHED" if self._finished else "KILLED")


def store_uri(uri: str | None) -> str:
    """MLflow's tracking URI: ``None`` or ``""`` -> the file store ``./mlruns``, a plain
    folder -> its ``file:`` URI, anything with a scheme as given."""
    if uri is None or not uri.strip():
        return Path("mlruns").resolve().as_uri()
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", uri):
        return uri
    return Path(uri).expanduser().resolve().as_uri()


__all__ = ["MLflowReporter", "TensorBoardReporter", "flatten", "store_uri"]
