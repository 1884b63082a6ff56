"""EvolvedAutoencoder beside PCA: same data, same number of components, reconstruction error.

    python examples/pca_vs_evoae.py                       # digits, code size 4
    python examples/pca_vs_evoae.py --dataset mnist --data-dir ../shared/data --limit 5000

Both are fit on the same training rows and scored on the same held-out rows; the error is
the mean squared error per value in the data's own units (digits: 0-16, images: 0-1).
Prints one table and the ratio evoae / PCA (below 1: the evolved autoencoder reconstructs
better).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split

from evoae import EvolvedAutoencoder
from evoae.data import load_dataset


def compare(
    X: np.ndarray,
    *,
    code_size: int,
    seed: int,
    **budget: int,
) -> dict[str, dict[str, float]]:
    """Fit PCA and an EvolvedAutoencoder on the same split; their held-out MSEs and fit times."""
    X_train, X_test = train_test_split(X, test_size=0.25, random_state=seed)
    results = {}
    for name, model in (
        ("PCA", PCA(n_components=code_size, random_state=seed)),
        ("evoae", EvolvedAutoencoder(code_size=code_size, random_state=seed, **budget)),
    ):
        t0 = time.perf_counter()
        model.fit(X_train)
        seconds = time.perf_counter() - t0
        recon = model.inverse_transform(model.transform(X_test))
        results[name] = {"mse": float(np.mean((X_test - recon) ** 2)), "seconds": seconds}
    return results


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="digits", help="digits, mnist, fashion-mnist or a file")
    p.add_argument("--data-dir", default=None, help="folder holding mnist/ and fashion-mnist/")
    p.add_argument("--image-size", type=int, default=None, help="resize images to SIZE x SIZE")
    p.add_argument("--limit", type=int, default=None, help="use only the first N rows")
    p.add_argument("--code-size", type=int, default=4)
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--generations", type=int, default=20)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--final-epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.dataset == "digits":  # scikit-learn's own array, in its 0-16 pixel units
        X = load_digits().data[: a.limit]
    else:
        size = None if a.image_size is None else (a.image_size, a.image_size)
        ds = load_dataset(a.dataset, data_dir=a.data_dir, image_size=size, limit=a.limit)
        X = ds.x.reshape(len(ds), -1).astype(np.float64)
    results = compare(
        X,
        code_size=a.code_size,
        seed=a.seed,
        population=a.population,
        generations=a.generations,
        epochs=a.epochs,
        final_epochs=a.final_epochs,
    )
    print(f"{a.dataset}: {X.shape[0]} rows x {X.shape[1]} features, code size {a.code_size}")
    print(f"{'method':<8} {'test MSE':>12} {'fit s':>8}")
    for name, r in results.items():
        print(f"{name:<8} {r['mse']:>12.5f} {r['seconds']:>8.1f}")
    print(f"ratio evoae / PCA: {results['evoae']['mse'] / results['PCA']['mse']:.3f}")
    return results


if __name__ == "__main__":
    main()
