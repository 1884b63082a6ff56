"""Hybrid objectives: scoring an autoencoder by what its codes are good for.

* ``probe``: 1 - cross-validated accuracy of a logistic-regression linear probe on the
  codes (standardised per dimension).
* ``knn``: 1 - cross-validated k-nearest-neighbour accuracy on the raw codes
  (``knn:K`` picks k; default 5).
* ``mix``: ``W * nmse + (1 - W) * (1 - probe accuracy)``, where ``nmse`` is the mean
  squared reconstruction error divided by that of predicting the split's mean input
  (a scale-free number, about 1 for a useless model). ``mix:W`` picks W (default 0.5).
* ``auroc``: anomaly detection, 1 - AUROC of the per-row reconstruction error, with
  rows whose label is non-zero marked as anomalies.

:meth:`Objective.score` sees one split only, so the classifier objectives
cross-validate on it: stratified, shuffled ``folds``-fold splits from ``seed``. At most
``max_rows`` rows are scored (a seeded subsample), which keeps a score well under a
second on a CPU. Codes come from :func:`model_codes`, which works whether ``encode``
returns the code or a ``(mean, logvar)`` tuple.

Names with an argument (``mix:0.3``, ``knn:10``) resolve through
:func:`parse_objective`, which falls back to the registry for plain names.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from evoae.errors import EvoaeError
from evoae.objectives.base import EvalSplit, Objective, Score

#: Rows per forward pass when encoding.
CODE_BATCH = 2048
#: Default cap on the rows one score looks at.
MAX_ROWS = 5000


@torch.no_grad()
def model_codes(model: nn.Module, x: torch.Tensor, batch: int = CODE_BATCH) -> torch.Tensor:
    """The codes ``(N, code_size)`` of ``x``; a VAE's posterior mean.

    Accepts models whose ``encode`` returns the code tensor or a ``(mean, logvar)``
    tuple. Puts the model in eval mode.
    """
    model.eval()
    parts = []
    for start in range(0, x.shape[0], batch):
        out = model.encode(x[start : start + batch])
        if isinstance(out, tuple | list):
            out = out[0]
        parts.append(out.reshape(out.shape[0], -1))
    return torch.cat(parts) if parts else torch.empty(0, 0)


_codes = model_codes


@torch.no_grad()
def row_errors(model: nn.Module, x: torch.Tensor, batch: int = CODE_BATCH) -> torch.Tensor:
    """Mean squared reconstruction error of each row, ``(N,)`` (decoded from the code)."""
    model.eval()
    parts = []
    for start in range(0, x.shape[0], batch):
        xb = x[start : start + batch]
        rec = model.reconstruct(xb).reshape(xb.shape[0], -1)
        parts.append((rec - xb.reshape(xb.shape[0], -1)).pow(2).mean(1))
    return torch.cat(parts)


def _labelled(split: EvalSplit, name: str) -> torch.Tensor:
    if split.y is None:
        raise EvoaeError(
            f"objective {name!r} needs labels but the data has none; load a labelled "
            "dataset or choose --objective recon"
        )
    return split.y


def _subsample(split: EvalSplit, y: torch.Tensor, max_rows: int, seed: int):
    """At most ``max_rows`` rows of ``split`` (a seeded subsample, original order)."""
    n = len(split)
    if n <= max_rows:
        return split.x, y
    idx = np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))
    t = torch.from_numpy(idx)
    return split.x[t], y[t.to(y.device)]


def _check_classes(labels: np.ndarray, folds: int) -> np.ndarray:
    """The class counts of ``labels``, refused when cross-validation cannot use them."""
    if labels.dtype.kind == "f":
        bad = labels[~np.isfinite(labels) | (labels != np.round(labels))]
        if bad.size:
            raise EvoaeError(
                f"the labels hold non-integer values (such as {bad[0]!r}): a classifier "
                "objective needs class labels (integers or strings); round or encode them"
            )
    _, counts = np.unique(labels, return_counts=True)
    if len(counts) < 2:
        raise EvoaeError("a classifier objective needs at least two classes in the labels")
    if len(counts) > max(20, len(labels) // 2):
        raise EvoaeError(
            f"the labels hold {len(counts)} distinct values for {len(labels)} rows: a "
            "classifier objective needs class labels, not a continuous target; bin them"
        )
    if len(labels) < 2 * folds:
        raise EvoaeError(
            f"{len(labels)} labelled rows are too few for {folds}-fold cross-validation"
        )
    return counts


def cv_accuracy(
    codes: np.ndarray, labels: np.ndarray, make_clf: Any, *, folds: int = 3, seed: int = 0
) -> float:
    """Mean accuracy of ``make_clf()`` over seeded, stratified ``folds``-fold splits.

    Falls back to plain shuffled folds when a class has fewer than ``folds`` rows.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    counts = _check_classes(labels, folds)
    if counts.min() >= folds:
        splitter: Any = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    else:
        splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    correct = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence / single-class-fold chatter
        for tr, te in splitter.split(codes, labels):
            if len(np.unique(labels[tr])) < 2:  # a fold with one class: predict it
                correct += int((labels[te] == labels[tr][0]).sum())
                continue
            clf = make_clf().fit(codes[tr], labels[tr])
            correct += int((clf.predict(codes[te]) == labels[te]).sum())
    return correct / len(labels)


def logistic_probe(seed: int = 0, max_iter: int = 200) -> Any:
    """The linear probe: per-dimension standardisation, then logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))


class _Sampled(Objective):
    """Shared plumbing: labels required, rows capped, seeded folds."""

    needs_labels: ClassVar[bool] = True

    def __init__(self, *, folds: int = 3, max_rows: int = MAX_ROWS, seed: int = 0) -> None:
        if folds < 2:
            raise EvoaeError(f"folds must be at least 2, got {folds}")
        if max_rows < 2 * folds:
            raise EvoaeError(f"max_rows must be at least {2 * folds}, got {max_rows}")
        self.folds = int(folds)
        self.max_rows = int(max_rows)
        self.seed = int(seed)

    def _rows(self, split: EvalSplit) -> tuple[torch.Tensor, np.ndarray]:
        y = _labelled(split, self.name)
        x, y = _subsample(split, y, self.max_rows, self.seed)
        return x, y.cpu().numpy()

    def _sampled_labels(self, y: Any) -> np.ndarray:
        """The evaluation labels :meth:`_rows` keeps (None refused as in scoring)."""
        if y is None:
            _labelled(EvalSplit(torch.empty(0)), self.name)
        y = np.asarray(y)
        if len(y) > self.max_rows:
            idx = np.random.default_rng(self.seed).choice(len(y), self.max_rows, replace=False)
            y = y[np.sort(idx)]
        return y

    def check_labels(self, y: Any) -> None:
        _check_classes(self._sampled_labels(y), self.folds)

    def _codes(self, model: nn.Module, x: torch.Tensor) -> np.ndarray | None:
        """Float64 codes, or None when the model produced non-finite ones."""
        c = model_codes(model, x).double().cpu().numpy()
        return c if np.isfinite(c).all() else None

    def _probe_accuracy(self, codes: np.ndarray, y: np.ndarray) -> float:
        seed = self.seed
        return cv_accuracy(codes, y, lambda: logistic_probe(seed), folds=self.folds, seed=seed)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "folds": self.folds,
            "max_rows": self.max_rows,
            "seed": self.seed,
        }


class Probe(_Sampled):
    """1 - cross-validated linear-probe (logistic regression) accuracy of the codes."""

    name: ClassVar[str] = "probe"

    def score(self, model: nn.Module, split: EvalSplit) -> Score:
        x, y = self._rows(split)
        codes = self._codes(model, x)
        if codes is None:
            return Score(math.inf, {"probe_accuracy": 0.0})
        acc = self._probe_accuracy(codes, y)
        return Score(1.0 - acc, {"probe_accuracy": acc})

    def describe(self) -> str:
        return f"1 - {self.folds}-fold linear-probe accuracy"


class KNN(_Sampled):
    """1 - cross-validated k-nearest-neighbour accuracy of the codes."""

    name: ClassVar[str] = "knn"

    @classmethod
    def from_arg(cls, arg: str) -> KNN:
        """``knn:K``."""
        return cls(k=int(arg))

    def __init__(self, k: int = 5, **kw: Any) -> None:
        super().__init__(**kw)
        if int(k) < 1:
            raise EvoaeError(f"knn needs k >= 1, got {k}")
        self.k = int(k)

    def check_labels(self, y: Any) -> None:
        super().check_labels(y)
        n = len(self._sampled_labels(y))
        fit = n - -(-n // self.folds)  # rows each fold's classifier is fitted on, at least
        if self.k > fit:
            raise EvoaeError(
                f"knn:{self.k} needs more rows: each {self.folds}-fold split of the "
                f"{n} evaluation rows fits on about {fit}; choose k <= {fit}"
            )

    def score(self, model: nn.Module, split: EvalSplit) -> Score:
        from sklearn.neighbors import KNeighborsClassifier

        x, y = self._rows(split)
        codes = self._codes(model, x)
        if codes is None:
            return Score(math.inf, {"knn_accuracy": 0.0})
        acc = cv_accuracy(
            codes, y, lambda: KNeighborsClassifier(self.k), folds=self.folds, seed=self.seed
        )
        return Score(1.0 - acc, {"knn_accuracy": acc})

    def config(self) -> dict[str, Any]:
        return {**super().config(), "k": self.k}

    def describe(self) -> str:
        return f"1 - {self.folds}-fold {self.k}-NN accuracy"


class Mix(_Sampled):
    """``W * normalised MSE + (1 - W) * (1 - linear-probe accuracy)``."""

    name: ClassVar[str] = "mix"

    @classmethod
    def from_arg(cls, arg: str) -> Mix:
        """``mix:W``."""
        return cls(weight=float(arg))

    def __init__(self, weight: float = 0.5, **kw: Any) -> None:
        super().__init__(**kw)
        weight = float(weight)
        if not 0.0 <= weight <= 1.0:
            raise EvoaeError(f"mix weight must be in [0, 1], got {weight}")
        self.weight = weight

    def score(self, model: nn.Module, split: EvalSplit) -> Score:
        x, y = self._rows(split)
        flat = x.reshape(x.shape[0], -1)
        baseline = float((flat - flat.mean(0)).pow(2).mean())
        mse = float(row_errors(model, x).mean())
        nmse = mse / baseline if baseline > 0 else mse
        codes = self._codes(model, x)
        if codes is None or not math.isfinite(nmse):
            return Score(math.inf, {"probe_accuracy": 0.0, "nmse": nmse, "mse": mse})
        acc = self._probe_accuracy(codes, y)
        fitness = self.weight * nmse + (1.0 - self.weight) * (1.0 - acc)
        return Score(fitness, {"probe_accuracy": acc, "nmse": nmse, "mse": mse})

    def config(self) -> dict[str, Any]:
        return {**super().config(), "weight": self.weight}

    def describe(self) -> str:
        return f"{self.weight:g} x normalised MSE + {1 - self.weight:g} x (1 - probe accuracy)"


class AUROC(_Sampled):
    """1 - AUROC of the reconstruction error as an anomaly score (label != 0: anomaly)."""

    name: ClassVar[str] = "auroc"

    def score(self, model: nn.Module, split: EvalSplit) -> Score:
        from sklearn.metrics import roc_auc_score

        x, y = self._rows(split)
        self.check_labels(y)
        anomaly = (y != 0).astype(np.int64)
        err = row_errors(model, x).double().cpu().numpy()
        if not np.isfinite(err).all():
            return Score(math.inf, {"auroc": 0.0})
        auc = float(roc_auc_score(anomaly, err))
        return Score(1.0 - auc, {"auroc": auc})

    def check_labels(self, y: Any) -> None:
        anomaly = self._sampled_labels(y) != 0
        if anomaly.size == 0 or anomaly.min() == anomaly.max():
            raise EvoaeError(
                "objective 'auroc' needs both normal rows (label 0) and anomalies "
                "(label != 0) in the evaluation split"
            )

    def describe(self) -> str:
        return "1 - AUROC of reconstruction error (label != 0 is an anomaly)"


__all__ = [
    "AUROC",
    "KNN",
    "MAX_ROWS",
    "Mix",
    "Probe",
    "cv_accuracy",
    "logistic_probe",
    "model_codes",
    "row_errors",
]
