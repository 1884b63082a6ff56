"""A toy model family written as a contributor would: one folder, one registration.

``tied``: a linear autoencoder whose decoder is the transpose of its encoder (tied
weights), with a learned input offset. Genes: optimizer and learning rate. Everything
evoae needs of a family is here; ``tests/families/test_family_contract.py`` registers it with
``evoae.families.register(TIED)`` and drives it through search, resume, ``load_model``,
export, the report and ``runs show`` like the built-ins.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from evoae.families import Family
from evoae.models import ModelOutput
from evoae.runs.schema import integer, number, record, string
from evoae.spaces import OPTIMIZERS, Choice, Float, Gene, Genome, Space

NAME = "tied"


class TiedSpace(Space):
    """Two genes: the optimizer and a log-uniform learning rate."""

    family = NAME

    def __init__(self, input_dim: int, code_size: int) -> None:
        self.input_dim, self.code_size = int(input_dim), int(code_size)
        self._genes = (
            Gene("optimizer", lambda r: str(r.choice(["adam", "sgd"])), Choice(("adam", "sgd"))),
            Gene(
                "lr",
                lambda r: float(np.exp(r.uniform(np.log(1e-3), np.log(3e-2)))),
                Float(1e-3, 3e-2, log=True),
            ),
        )

    def decode(self, genome: Genome) -> dict[str, Any]:
        g = self.named(genome)
        return {
            "family": NAME,
            "input_dim": self.input_dim,
            "code_size": self.code_size,
            "optimizer": g["optimizer"],
            "lr": round(float(g["lr"]), 8),
            "batch_size": 32,
        }

    def config(self) -> dict[str, Any]:
        return {"family": NAME, "input_dim": self.input_dim, "code_size": self.code_size}

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> TiedSpace:
        return cls(cfg["input_dim"], cfg["code_size"])


class TiedAutoencoder(nn.Module):
    """``z = W (x - b)``, ``x_hat = W^T z + b``."""

    variational = False

    def __init__(self, spec: dict[str, Any], seed: int = 0) -> None:
        super().__init__()
        self.spec = spec
        self.code_size = int(spec["code_size"])
        g = torch.Generator().manual_seed(int(seed) % (1 << 63))
        d, k = int(spec["input_dim"]), self.code_size
        self.weight = nn.Parameter(torch.randn(k, d, generator=g) / d**0.5)
        self.offset = nn.Parameter(torch.zeros(d))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) - self.offset) @ self.weight.T

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.weight + self.offset

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)).view_as(x)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        recon = self.reconstruct(x)
        loss = F.mse_loss(recon, x)
        return ModelOutput(recon=recon, loss=loss, terms={"mse": loss.detach()})


TIED_SPEC = record(
    {
        "family": string(16, choices=(NAME,)),
        "input_dim": integer(1, 2**24),
        "code_size": integer(1, 65536),
        "optimizer": string(16, choices=OPTIMIZERS),
        "lr": number(1e-12, 1e6),
        "batch_size": integer(1, 2**20),
    }
)


def _space(preset: str, train: Any, code_size: int, **options: Any) -> Space:
    return TiedSpace(train.n_features, code_size)


TIED = Family(
    name=NAME,
    make_space=_space,
    space_from_config=TiedSpace.from_config,
    build=TiedAutoencoder,
    describe=lambda spec: f"{spec['input_dim']} > [{spec['code_size']} tied linear]",
    input_shape=lambda spec: (int(spec["input_dim"]),),
    check_spec=TIED_SPEC,
    spec_params=lambda spec: spec["input_dim"] * (spec["code_size"] + 1),
)
