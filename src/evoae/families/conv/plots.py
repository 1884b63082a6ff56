"""Plots of a model's latent space: prior samples, interpolations and a latent map.

Written after a conv search (see :data:`evoae.report.PLOT_HOOKS`) into the run's
``plots/`` folder as ``samples.png`` (VAEs only), ``interpolation.png`` and ``latent.png``.
The map plots the latent itself when it is 2-D, else its first two principal components
(of the posterior means, or the codes of a plain autoencoder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from evoae.models.pca import pca_basis
from evoae.plots.figures import _save, plot_image_grid, show_grid

#: Images encoded for the latent map (enough to show the clusters, cheap on a CPU).
SCATTER_POINTS = 2000
_CHUNK = 512


@torch.no_grad()
def latent_means(model: Any, x: np.ndarray) -> np.ndarray:
    """Posterior means (or codes) of ``x``, encoded in chunks, as ``(N, code_size)``."""
    model.eval()
    device = next(model.parameters()).device
    parts = [
        model.encode(torch.as_tensor(x[i : i + _CHUNK], device=device)).cpu().numpy()
        for i in range(0, len(x), _CHUNK)
    ]
    return np.concatenate(parts)


def first_two_components(z: np.ndarray) -> tuple[np.ndarray, str]:
    """``z`` itself when 2-D (1-D gets a zero axis), else its first two principal components."""
    if z.shape[1] == 2:
        return z, "latent"
    if z.shape[1] == 1:
        return np.concatenate([z, np.zeros_like(z)], axis=1), "latent (1-D)"
    basis = pca_basis(z, 2)
    share = float(basis.explained.sum()) if basis.explained is not None else 0.0
    return basis.project(z), f"PCA of the latent ({100 * share:.0f}% of variance)"


def plot_prior_samples(
    model: Any, path: str | Path, *, n: int = 64, seed: int | None = None, ncols: int = 8
) -> Path:
    """A grid of ``n`` images decoded from the prior ``N(0, I)``."""
    model.eval()
    images = model.sample(n, seed=seed).cpu().numpy()
    return plot_image_grid(images, path, ncols=ncols, title=f"{n} samples from the prior")


@torch.no_grad()
def plot_interpolation(
    model: Any, a: np.ndarray, b: np.ndarray, path: str | Path, *, steps: int = 10
) -> Path:
    """Decode a straight line between the latents of images ``a`` and ``b`` (each ``(C, H, W)``).

    The two originals frame the row on the left and right.
    """
    model.eval()
    device = next(model.parameters()).device
    z = torch.as_tensor(latent_means(model, np.stack([a, b])), device=device)
    t = torch.linspace(0.0, 1.0, steps, device=device)[:, None]
    images = model.decode((1 - t) * z[0] + t * z[1]).cpu().numpy()
    row = np.concatenate([a[None], images, b[None]])
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(len(row) * 0.8, 1.3), dpi=110)
    show_grid(ax, row, ncols=len(row))
    ax.set_title("latent interpolation (originals at both ends)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_latent_scatter(model: Any, x: np.ndarray, y: np.ndarray | None, path: str | Path) -> Path:
    """Latent map of ``x`` coloured by label ``y`` (2-D latent or its first two PCs)."""
    import matplotlib.pyplot as plt

    points, label = first_two_components(latent_means(model, x))
    fig, ax = plt.subplots(figsize=(5.2, 4.4), dpi=110)
    if y is None:
        ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.6)
    else:
        sc = ax.scatter(points[:, 0], points[:, 1], c=y, cmap="tab10", s=4, alpha=0.7)
        fig.colorbar(sc, ax=ax, label="label")
    ax.set_xlabel(f"{label}: axis 1", fontsize=8)
    ax.set_ylabel("axis 2", fontsize=8)
    ax.set_title(f"latent space of {len(x)} images", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def latent_plots(model: Any, splits: Any, plots_dir: str | Path) -> list[Path]:
    """The plot hook of conv families: samples (VAEs), interpolation and latent map.

    Uses the test split when there is one, else the validation split.
    """
    plots_dir = Path(plots_dir)
    data = splits.test if splits.test is not None else splits.val
    written = []
    if getattr(model, "variational", False):
        written.append(plot_prior_samples(model, plots_dir / "samples.png"))
    if len(data) >= 2:
        # Two images of different labels when labels exist: a more telling path.
        other = 1 if data.y is None else int(np.argmax(data.y != data.y[0]) or 1)
        written.append(
            plot_interpolation(model, data.x[0], data.x[other], plots_dir / "interpolation.png")
        )
    subset = data.subset(slice(0, SCATTER_POINTS))
    written.append(plot_latent_scatter(model, subset.x, subset.y, plots_dir / "latent.png"))
    return written
