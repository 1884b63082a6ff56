"""Hybrid models: an evolved autoencoder's encoder with a fitted scikit-learn head.

:class:`HybridModel` behaves as one classifier: ``transform`` gives the codes,
``predict`` / ``predict_proba`` / ``score`` run the head on them. The head is a
logistic regression on standardised codes (``"logistic"``) or a k-nearest-neighbour
classifier on the raw codes (``"knn"``).

Storage never uses pickle: ``<folder>/autoencoder/`` is the model as
:func:`evoae.models.io.save_model` writes it; ``<folder>/head.safetensors`` holds the
head's arrays (``coef``, ``intercept``, ``mean``, ``scale``, or the fitted ``codes``
and ``labels``) and ``<folder>/head.json`` its settings, classes and the weights'
SHA-256. Loading rebuilds the head from those arrays (a kNN head is refitted on the
stored codes, which is exact), so a reloaded model predicts identically.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file, save
from torch import nn

from evoae.errors import EvoaeError
from evoae.families.io import load_model, save_model
from evoae.objectives.probe import model_codes
from evoae.runs.atomic import atomic_write_bytes, atomic_write_text

FORMAT = "evoae-hybrid"
VERSION = 1
HEADS = ("logistic", "knn")


def _as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu()
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _check_labels(y: Any) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iub":
        raise EvoaeError(f"labels must be a 1-D integer array, got {y.dtype} of shape {y.shape}")
    return y.astype(np.int64)


class HybridModel:
    """A trained autoencoder's encoder followed by a scikit-learn classifier head.

    Build one with :meth:`fit`; ``head`` is the fitted sklearn estimator, ``mean_`` /
    ``scale_`` the code standardisation (logistic head), ``fit_codes_`` /
    ``fit_labels_`` the rows a kNN head searches.
    """

    def __init__(
        self,
        autoencoder: nn.Module,
        head: Any,
        kind: str,
        *,
        mean: np.ndarray | None = None,
        scale: np.ndarray | None = None,
        fit_codes: np.ndarray | None = None,
        fit_labels: np.ndarray | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        if kind not in HEADS:
            raise EvoaeError(f"unknown head {kind!r}: choose from {', '.join(HEADS)}")
        self.autoencoder = autoencoder.eval()
        self.head = head
        self.kind = kind
        self.mean_ = mean
        self.scale_ = scale
        self.fit_codes_ = fit_codes
        self.fit_labels_ = fit_labels
        self.info = dict(info or {})

    # ------------------------------------------------------------------ building

    @classmethod
    def fit(
        cls,
        autoencoder: nn.Module,
        x: Any,
        y: Any,
        *,
        head: str = "logistic",
        k: int = 5,
        c: float = 1.0,
        max_iter: int = 500,
        seed: int = 0,
        info: dict[str, Any] | None = None,
    ) -> HybridModel:
        """Encode ``x`` with ``autoencoder`` and fit the head on the codes and ``y``."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.neighbors import KNeighborsClassifier

        y = _check_labels(y)
        codes = model_codes(autoencoder, _as_tensor(x)).double().numpy()
        if len(codes) != len(y):
            raise EvoaeError(f"{len(codes)} rows but {len(y)} labels")
        if head == "logistic":
            mean, scale = codes.mean(0), codes.std(0)
            scale = np.where(scale > 0, scale, 1.0)
            clf = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
            clf.fit((codes - mean) / scale, y)
            return cls(autoencoder, clf, head, mean=mean, scale=scale, info=info)
        if head == "knn":
            clf = KNeighborsClassifier(n_neighbors=int(k)).fit(codes, y)
            return cls(autoencoder, clf, head, fit_codes=codes, fit_labels=y, info=info)
        raise EvoaeError(f"unknown head {head!r}: choose from {', '.join(HEADS)}")

    # ------------------------------------------------------------------ estimator API

    @property
    def classes_(self) -> np.ndarray:
        return self.head.classes_

    def transform(self, x: Any) -> np.ndarray:
        """The codes of ``x`` (float64, ``(N, code_size)``); a VAE's posterior mean."""
        return model_codes(self.autoencoder, _as_tensor(x)).double().numpy()

    def _features(self, x: Any) -> np.ndarray:
        codes = self.transform(x)
        if self.kind == "logistic":
            return (codes - self.mean_) / self.scale_
        return codes

    def predict(self, x: Any) -> np.ndarray:
        return self.head.predict(self._features(x))

    def predict_proba(self, x: Any) -> np.ndarray:
        return self.head.predict_proba(self._features(x))

    def score(self, x: Any, y: Any) -> float:
        """Accuracy on ``(x, y)``."""
        return float(np.mean(self.predict(x) == _check_labels(y)))

    # ------------------------------------------------------------------ storage

    def _arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        h = self.head
        if self.kind == "logistic":
            arrays = {
                "coef": h.coef_,
                "intercept": h.intercept_,
                "mean": self.mean_,
                "scale": self.scale_,
            }
            params = {"C": h.C, "max_iter": h.max_iter}
        else:
            arrays = {"codes": self.fit_codes_}
            params = {"n_neighbors": h.n_neighbors}
        arrays = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()}
        if self.kind == "knn":
            arrays["labels"] = np.ascontiguousarray(self.fit_labels_, dtype=np.int64)
        arrays["classes"] = np.ascontiguousarray(h.classes_, dtype=np.int64)
        return arrays, params

    def save(self, folder: str | Path) -> Path:
        """Write the autoencoder and the head into ``folder`` (no pickle)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_model(
            self.autoencoder,
            folder / "autoencoder",
            space=self.info.get("space", {}),
            genome=self.info.get("genome", {}),
        )
        arrays, params = self._arrays()
        data = save(arrays, metadata={"format": FORMAT})
        atomic_write_bytes(folder / "head.safetensors", data)
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "head": self.kind,
            "params": params,
            "head_sha256": hashlib.sha256(data).hexdigest(),
            "info": {k: v for k, v in self.info.items() if k not in ("space", "genome")},
        }
        atomic_write_text(folder / "head.json", json.dumps(meta, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> HybridModel:
        """Rebuild a saved hybrid model; refuses files that do not match their digest."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.neighbors import KNeighborsClassifier

        folder = Path(folder)
        try:
            meta = json.loads((folder / "head.json").read_text())
            data = (folder / "head.safetensors").read_bytes()
        except FileNotFoundError:
            raise EvoaeError(f"no saved hybrid model in {folder}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise EvoaeError(f"{folder} holds an unreadable hybrid model ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise EvoaeError(f"{folder / 'head.json'} is not an evoae hybrid model")
        if hashlib.sha256(data).hexdigest() != meta.get("head_sha256"):
            raise EvoaeError(f"{folder / 'head.safetensors'} does not match its digest")
        try:
            arrays = load_file(str(folder / "head.safetensors"))
        except (SafetensorError, OSError, ValueError) as e:
            raise EvoaeError(f"head weights in {folder} are not valid safetensors ({e})") from None
        autoencoder = load_model(folder / "autoencoder")
        kind, params = meta["head"], meta["params"]
        classes = arrays["classes"]
        if kind == "logistic":
            clf = LogisticRegression(C=params["C"], max_iter=params["max_iter"])
            clf.coef_ = arrays["coef"]
            clf.intercept_ = arrays["intercept"]
            clf.classes_ = classes
            clf.n_features_in_ = arrays["coef"].shape[1]
            clf.n_iter_ = np.zeros(1, dtype=np.int32)
            return cls(
                autoencoder,
                clf,
                kind,
                mean=arrays["mean"],
                scale=arrays["scale"],
                info=meta.get("info"),
            )
        if kind == "knn":
            clf = KNeighborsClassifier(n_neighbors=int(params["n_neighbors"]))
            clf.fit(arrays["codes"], arrays["labels"])
            return cls(
                autoencoder,
                clf,
                kind,
                fit_codes=arrays["codes"],
                fit_labels=arrays["labels"],
                info=meta.get("info"),
            )
        raise EvoaeError(f"{folder / 'head.json'} names an unknown head {kind!r}")


__all__ = ["HEADS", "HybridModel"]
