"""Run plots as PNG files (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402


def plot_fitness(
    history: Sequence[dict[str, float]], path: str | Path, *, ylabel: str = "fitness"
) -> Path:
    """Best fitness so far over generations (the paper's Figure 2) with the population's spread.

    ``history`` rows hold ``generation``, ``best`` (best so far) and optionally
    ``median``, ``q25``, ``q75`` of the current population.
    """
    gens = [h["generation"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    if history and "median" in history[0]:
        ax.fill_between(
            gens,
            [h["q25"] for h in history],
            [h["q75"] for h in history],
            alpha=0.25,
            color="tab:blue",
            label="population 25-75%",
        )
        ax.plot(
            gens, [h["median"] for h in history], color="tab:blue", lw=1, label="population median"
        )
    ax.plot(gens, [h["best"] for h in history], color="tab:red", lw=2, label="best so far")
    ax.set_xlabel("generation (tournaments)")
    ax.set_ylabel(ylabel)
    finite = [h["best"] for h in history if math.isfinite(h["best"])]
    if finite and min(finite) > 0:  # a log axis: a few bad generations squash nothing
        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _pos: f"{v:.4g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain if max(finite) / min(finite) < 10 else NullFormatter())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def image_grid(images: np.ndarray, ncols: int) -> np.ndarray:
    """Tile ``(N, C, H, W)`` images into one ``(H', W', C)`` array with 1-pixel gaps."""
    n, c, h, w = images.shape
    nrows = math.ceil(n / ncols)
    grid = np.ones((nrows * (h + 1) - 1, ncols * (w + 1) - 1, c), dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, ncols)
        grid[r * (h + 1) : r * (h + 1) + h, col * (w + 1) : col * (w + 1) + w] = images[
            i
        ].transpose(1, 2, 0)
    return grid


def show_grid(ax: plt.Axes, images: np.ndarray, ncols: int) -> None:
    grid = np.clip(image_grid(images, ncols), 0.0, 1.0)
    if grid.shape[2] == 1:
        ax.imshow(grid[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.axis("off")


def plot_reconstructions(
    originals: np.ndarray,
    recons: np.ndarray,
    path: str | Path,
    *,
    image_shape: tuple[int, int, int] | None,
    title: str = "",
) -> Path:
    """Originals (top) against reconstructions (bottom), as in the paper's Figure 3.

    Tabular rows are drawn as heat-map strips, one row per sample.
    """
    fig = reconstruction_figure(
        originals, {"reconstruction": recons}, image_shape=image_shape, title=title
    )
    return _save(fig, path)


def reconstruction_figure(
    originals: np.ndarray,
    recons: dict[str, np.ndarray],
    *,
    image_shape: tuple[int, int, int] | None,
    title: str = "",
) -> plt.Figure:
    """Originals in the top row, then one row per labelled reconstruction (e.g. the
    model's and PCA's). Tabular rows are drawn as heat-map strips, one row per sample."""
    n = len(originals)
    panels = [("original", originals), *recons.items()]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(max(4, n * 0.9), 1.1 + 1.05 * len(panels)), dpi=110
    )
    for ax, (label, data) in zip(np.atleast_1d(axes), panels, strict=True):
        if image_shape is not None:
            show_grid(ax, np.asarray(data).reshape(n, *image_shape), ncols=n)
        else:
            ax.imshow(
                np.asarray(data).reshape(n, -1), aspect="auto", cmap="viridis", vmin=0, vmax=1
            )
            ax.set_yticks([])
            ax.set_xticks([])
        ax.set_title(label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_image_grid(
    images: np.ndarray, path: str | Path, *, ncols: int = 8, title: str = ""
) -> Path:
    """A grid of ``(N, C, H, W)`` images (e.g. samples from a VAE's prior)."""
    nrows = math.ceil(len(images) / ncols)
    fig, ax = plt.subplots(figsize=(ncols * 0.8, nrows * 0.8 + 0.4), dpi=110)
    show_grid(ax, images, ncols)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    """Save through the write guard (:mod:`evoae.runs.guard`): never over a user's file."""
    import io

    from evoae.runs.atomic import atomic_write_bytes
    from evoae.runs.guard import check_inside, run_root

    path = Path(path)
    root = run_root(path)
    if root is not None:
        check_inside(root, path)  # before mkdir: a linked plots/ is refused, not followed
    buf = io.BytesIO()
    fmt = path.suffix.lstrip(".").lower() or "png"
    try:
        fig.savefig(buf, format=fmt)
    finally:
        plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path
