"""PCA of a training split: the basis a linear autoencoder is initialised from.

A linear autoencoder with encoder ``W = V_k`` (the top-k principal directions, one per
row), encoder bias ``-V_k @ mean``, decoder ``V_k^T`` and decoder bias ``mean``
reconstructs exactly as PCA with k components does. :func:`pca_basis` computes that
basis deterministically (float64 SVD of the centred rows, each direction's sign fixed
so that its largest entry is positive); :func:`pca_val_loss` is PCA's reconstruction
MSE of held-out rows, the figure evoae promises never to be worse than. It is evoae's one
PCA: the report's comparison and the latent maps use it too.
"""

from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from evoae.spaces.base import PCA_INITS, PCA_RESIDUAL  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class PCABasis:
    """``mean`` of shape ``(d,)``, ``components`` of shape ``(k, d)`` (orthonormal rows)
    and ``explained``, the share of the variance each component holds."""

    mean: np.ndarray
    components: np.ndarray
    explained: np.ndarray | None = None

    @property
    def code_size(self) -> int:
        return int(self.components.shape[0])

    def project(self, x: Any) -> np.ndarray:
        """The rows of ``x`` (flattened) in component coordinates, in float64."""
        return (_rows(x) - self.mean) @ self.components.T

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        """PCA's reconstruction of the rows of ``x`` (flattened), in float64."""
        flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1) - self.mean
        return flat @ self.components.T @ self.components + self.mean


def _rows(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    return a.reshape(len(a), -1)


def pca_basis(x: Any, k: int) -> PCABasis:
    """The top-``k`` principal directions and the mean of the rows of ``x`` (flattened)."""
    a = _rows(x)
    n, d = a.shape
    if not 1 <= k <= min(n, d):
        raise ValueError(f"PCA cannot have {k} components on {n} rows of {d} features")
    mean = a.mean(axis=0)
    # torch's LAPACK follows torch's thread setting (numpy's BLAS pool would add threads).
    _, s, vt = torch.linalg.svd(torch.from_numpy(a - mean), full_matrices=False)
    comps = vt[:k].numpy().copy()
    var = s.numpy() ** 2
    explained = var[:k] / max(float(var.sum()), 1e-300)
    # A deterministic sign: each direction's largest-magnitude entry is positive.
    signs = np.sign(comps[np.arange(k), np.argmax(np.abs(comps), axis=1)])
    comps *= np.where(signs == 0, 1.0, signs)[:, None]
    return PCABasis(mean=mean, components=comps, explained=explained)


#: (id of a tensor, k) -> (a weak reference to it, its version, its basis).
_BASES: dict[tuple[int, int], tuple[weakref.ref[torch.Tensor], int, PCABasis]] = {}
#: (digest of the rows' bytes, shape, dtype, k) -> basis: the same split held as another
#: tensor or array (the final stage's, the report's) meets the search's basis.
_BY_CONTENT: dict[tuple[str, tuple[int, ...], str, int], PCABasis] = {}
_MAX_BASES = 8


def _content_key(x: Any, k: int) -> tuple[str, tuple[int, ...], str, int]:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    a = np.ascontiguousarray(a)
    digest = hashlib.blake2b(memoryview(a).cast("B"), digest_size=16).hexdigest()
    return digest, tuple(a.shape), a.dtype.str, int(k)


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _MAX_BASES:
        cache.pop(next(iter(cache)))
    cache[key] = value


def cached_pca_basis(x: Any, k: int) -> PCABasis:
    """:func:`pca_basis` of ``x`` (a tensor or an array), computed once per content and
    ``k``: every PCA-initialised candidate of a split, the final stage's comparison and
    the report share it. A tensor is recognised by identity and version first (no
    hashing); anything else by a digest of its bytes, so an in-place change computes it
    afresh."""
    tensor = isinstance(x, torch.Tensor)
    key = (id(x), int(k))
    if tensor:
        hit = _BASES.get(key)
        if hit is not None and hit[0]() is x and hit[1] == x._version:
            return hit[2]
    content = _content_key(x, k)
    basis = _BY_CONTENT.get(content)
    if basis is None:
        basis = pca_basis(x, k)
        _remember(_BY_CONTENT, content, basis)
    if tensor:
        _remember(_BASES, key, (weakref.ref(x), x._version, basis))
    return basis


def pca_val_loss(train: Any, val: Any, k: int) -> float:
    """Mean squared error per value of ``val`` reconstructed by PCA of ``train``."""
    basis = cached_pca_basis(train, k)
    v = _rows(val)
    return float(np.mean((v - basis.reconstruct(v)) ** 2))
