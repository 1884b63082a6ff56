"""Benchmark: an evolved CNN-VAE against the classic MLP VAE on full MNIST, in one run.

Protocol (both models): 28x28 MNIST with continuous pixels in [0, 1], the 60,000 training
images, Adam, batch 128, 10 epochs; score = negative ELBO per image on the 10,000 test
images (Bernoulli cross-entropy summed over pixels + KL, one reparameterised sample per
image with a fixed seed, so the estimate is deterministic).

(a) Reference: the classic MLP VAE 784-400-20-400-784 (ReLU, sigmoid output, Adam 1e-3),
    as in the PyTorch examples (published re-runs report about 105.6 nats on the test set).
(b) The best CNN-VAE (latent 20) of an evoae search on a data subset with short candidate
    training, retrained from scratch with the same 10 epochs on the full training set.

Prints both test negative ELBOs, their ratio (target <= 0.92), and the search's number of
trainings and wall time (target < 20 minutes on a 2-core CPU).

    python benchmarks/vae.py --data-dir ../shared/data
    python benchmarks/vae.py --smoke    # seconds: checks it still runs
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import evoae
from evoae.data import load_dataset, load_test_dataset
from evoae.families import build_model
from evoae.families.conv.model import vae_terms
from evoae.models import count_params
from evoae.models.base import ModelOutput
from evoae.training.trainer import evaluate, fit

#: ../shared/data relative to the repository root (never an absolute path).
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

LATENT = 20
TARGET_RATIO = 0.92
TARGET_SEARCH_SECONDS = 20 * 60
#: The smoke run reads MNIST too (tests/test_benchmarks_smoke.py skips without it).
NEEDS_SHARED_DATA = True
#: ``--smoke``: a few hundred images, one epoch, two candidates, so a test runs every step
#: in seconds (the figures mean nothing).
SMOKE = {
    "epochs": 1,
    "train_limit": 300,
    "test_limit": 200,
    "search_limit": 300,
    "search_epochs": 1,
    "population": 2,
    "generations": 1,
    "out": "runs/smoke-vae",
}


class MLPVAE(nn.Module):
    """The classic MLP VAE (Kingma & Welling; PyTorch examples): 784-400-20-400-784.

    PyTorch default initialisation, drawn under ``torch.manual_seed(seed)``; the same loss
    function and noise scheme as evoae's CNN-VAE, so the two scores compare like for like.
    """

    def __init__(self, seed: int, d: int = 784, hidden: int = 400, latent: int = LATENT):
        super().__init__()
        torch.manual_seed(seed)
        self.fc1, self.mu, self.logvar = (
            nn.Linear(d, hidden),
            nn.Linear(hidden, latent),
            nn.Linear(hidden, latent),
        )
        self.fc3, self.fc4 = nn.Linear(latent, hidden), nn.Linear(hidden, d)
        self.seed = seed
        self.noise = torch.Generator().manual_seed(seed)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        flat = x.reshape(x.shape[0], -1)
        h = torch.relu(self.fc1(flat))
        mean, logvar = self.mu(h), self.logvar(h)
        # Evaluation restarts its noise at every call, like evoae's models.
        g = self.noise if self.training else torch.Generator().manual_seed(self.seed + 1)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=g)
        logits = self.fc4(torch.relu(self.fc3(z)))
        rec, kl = vae_terms(logits, flat, mean, logvar)
        terms = {"neg_elbo": (rec + kl).mean(), "recon": rec.mean(), "kl": kl.mean()}
        return ModelOutput(recon=torch.sigmoid(logits), loss=terms["neg_elbo"], terms=terms)


def train_and_test(
    model: nn.Module,
    x: torch.Tensor,
    x_test: torch.Tensor,
    *,
    epochs: int,
    optimizer: str,
    lr: float,
    seed: int,
) -> dict[str, Any]:
    """Train with evoae's own loop (batch 128) and score on the test set."""
    t0 = time.perf_counter()
    losses = fit(model, x, epochs=epochs, batch_size=128, optimizer=optimizer, lr=lr, seed=seed)
    seconds = time.perf_counter() - t0
    test = evaluate(model, x_test)
    return {
        "test_neg_elbo": test["neg_elbo"],
        "test_recon": test["recon"],
        "test_kl": test["kl"],
        "train_losses": losses,
        "train_seconds": seconds,
        "params": count_params(model),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=str(SHARED))
    p.add_argument("--epochs", type=int, default=10, help="final epochs of both models")
    p.add_argument("--train-limit", type=int, default=None, help="first N training images")
    p.add_argument("--test-limit", type=int, default=None, help="first N test images")
    p.add_argument("--search-limit", type=int, default=12000, help="images the search splits")
    p.add_argument("--search-epochs", type=int, default=2, help="epochs per candidate")
    p.add_argument("--population", type=int, default=10)
    p.add_argument("--generations", type=int, default=26)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1 is fastest on a shared 2-core machine: no spinning)",
    )
    p.add_argument("--out", default="/tmp/evoae-bench-vae", help="the search's run folder")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: check that it runs")
    args = p.parse_args(argv)
    if args.smoke:
        vars(args).update(SMOKE)
    torch.set_num_threads(args.threads)

    train = load_dataset(
        "mnist", data_dir=args.data_dir, image_size=(28, 28), limit=args.train_limit
    )
    test = load_test_dataset(
        "mnist", data_dir=args.data_dir, image_size=(28, 28), limit=args.test_limit
    )
    x, x_test = torch.as_tensor(train.x), torch.as_tensor(test.x)
    print(f"MNIST {tuple(x.shape)} train, {tuple(x_test.shape)} test, pixels in [0, 1]")

    ref = train_and_test(
        MLPVAE(args.seed), x, x_test, epochs=args.epochs, optimizer="adam", lr=1e-3, seed=args.seed
    )
    print(
        f"(a) MLP VAE 784-400-20: test neg-ELBO {ref['test_neg_elbo']:.2f} nats "
        f"({ref['train_seconds']:.0f} s, {ref['params']} params)"
    )

    t0 = time.perf_counter()
    result = evoae.search(
        "mnist",
        data_dir=args.data_dir,
        image_size=28,
        split="random",
        limit=args.search_limit,
        model="conv-vae",
        code_size=LATENT,
        # The CPU budget: downsampling blocks only, up to 64 filters, Adam-family optimizers
        # with learning rates that suit a 10-epoch run (short candidate training favours
        # large ones that stall later).
        space_options={
            "strides": [2],
            "filters_range": [8, 64],
            "optimizers": ["adam", "adamw"],
            "lr_range": [3e-4, 3e-3],
        },
        population=args.population,
        generations=args.generations,
        epochs=args.search_epochs,
        final_epochs=0,
        seed=args.seed,
        out=args.out,
        overwrite=True,
        **({"min_steps": 0} if args.smoke else {}),
    )
    search_seconds = time.perf_counter() - t0
    spec = result.best_spec
    print(
        f"search: {result.n_trainings} trainings, {search_seconds:.0f} s, best validation "
        f"neg-ELBO {result.best_fitness:.2f} ({args.search_epochs} epochs on "
        f"{args.search_limit} images)\nbest spec: {json.dumps(spec)}"
    )
    cnn = train_and_test(
        build_model(spec, args.seed),
        x,
        x_test,
        epochs=args.epochs,
        optimizer=spec["optimizer"],
        lr=spec["lr"],
        seed=args.seed,
    )
    ratio = cnn["test_neg_elbo"] / ref["test_neg_elbo"]
    print(
        f"(b) evolved CNN-VAE: test neg-ELBO {cnn['test_neg_elbo']:.2f} nats "
        f"(recon {cnn['test_recon']:.2f} + KL {cnn['test_kl']:.2f}; "
        f"{cnn['train_seconds']:.0f} s, {cnn['params']} params)"
    )
    print(
        f"ratio CNN-VAE / MLP VAE = {ratio:.3f} (target <= {TARGET_RATIO}: "
        f"{'met' if ratio <= TARGET_RATIO else 'MISSED'}); search {search_seconds / 60:.1f} min "
        f"(target < {TARGET_SEARCH_SECONDS // 60}: "
        f"{'met' if search_seconds < TARGET_SEARCH_SECONDS else 'MISSED'})"
    )
    figures = {
        "reference": ref,
        "evolved": cnn,
        "ratio": ratio,
        "search_trainings": result.n_trainings,
        "search_seconds": search_seconds,
        "best_spec": spec,
        "settings": vars(args),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
