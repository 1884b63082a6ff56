"""The dense symmetric autoencoder built from a dense spec."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from evoae.models.base import ModelOutput
from evoae.models.layers import activation, glorot_
from evoae.models.pca import PCA_RESIDUAL, PCABasis


class DenseAutoencoder(nn.Module):
    """Encoder ``input -> hidden... -> code``, decoder mirrors it back to the input width.

    Inputs of any shape ``(N, ...)`` are flattened; :meth:`decode` returns ``(N, input_dim)``.
    Weights are Glorot-uniform with zero biases, drawn from ``seed`` alone. A spec with
    ``"init": "pca"`` (no hidden layer, linear code and output) built with ``init`` (the
    PCA of the training split) starts as PCA: encoder the top components, decoder their
    transpose, biases from the mean; without ``init`` (e.g. before loading saved
    weights) it is drawn like any other.

    A spec with ``"init": "pca-residual"`` adds a linear path to the evolved layers:
    ``encode(x) = x @ lin_encoder_weight.T + lin_encoder_bias + encoder(x)`` and
    ``decode(z) = z @ lin_decoder_weight.T + lin_decoder_bias + decoder(z)``, where
    ``encoder`` / ``decoder`` are the hidden layers (the branches e and d) ending in a
    linear layer whose weights and bias start at zero. Built with
    ``init``, the linear path is PCA's (``P^T (x - mu)`` and ``mu + P z``), so the
    untrained model reconstructs exactly as PCA does; every tensor, the linear path
    included, is trained and saved in the state dict. The linear path is held by the
    model itself rather than by layer modules, so layer-by-layer views (the report's
    diagram) show the evolved architecture, ending in the code. Its code and output are
    linear (the schema refuses anything else): the branches' activations are the evolved
    ones.
    """

    #: Deterministic: the code is a point, there is no posterior to sample.
    variational = False

    def __init__(self, spec: dict[str, Any], seed: int = 0, init: PCABasis | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.code_size = int(spec["code_size"])
        d, k = spec["input_dim"], spec["code_size"]
        self.residual = spec.get("init") == PCA_RESIDUAL
        if self.residual and not spec["code_activation"] == spec["output_activation"] == "linear":
            raise ValueError("a PCA-residual spec has a linear code and output")
        widths = [d] + [w for w, _ in spec["hidden"]]
        acts = [a for _, a in spec["hidden"]]
        enc: list[nn.Module] = []
        for i, act in enumerate(acts):
            enc += [nn.Linear(widths[i], widths[i + 1]), activation(act)]
        enc += [nn.Linear(widths[-1], k)]
        if not self.residual:
            enc.append(activation(spec["code_activation"]))
        dec: list[nn.Module] = []
        back = [k] + widths[:0:-1]
        for i, act in enumerate(reversed(acts)):
            dec += [nn.Linear(back[i], back[i + 1]), activation(act)]
        dec += [nn.Linear(back[-1], d)]
        if not self.residual:
            dec.append(activation(spec["output_activation"]))
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        g = torch.Generator().manual_seed(int(seed))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                glorot_(m, g)
        if self.residual:
            lin_enc, lin_dec = nn.Linear(d, k), nn.Linear(k, d)
            glorot_(lin_enc, g)
            glorot_(lin_dec, g)
            if init is not None:
                _set_pca(lin_enc, lin_dec, init, self.code_size)
            self.lin_encoder_weight, self.lin_encoder_bias = lin_enc.weight, lin_enc.bias
            self.lin_decoder_weight, self.lin_decoder_bias = lin_dec.weight, lin_dec.bias
            # The branches start at zero: the model is its linear path until trained.
            for last in (self.encoder[-1], self.decoder[-1]):
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)
        elif init is not None and spec.get("init") == "pca":
            self.init_from_pca(init)

    @torch.no_grad()
    def init_from_pca(self, basis: PCABasis) -> None:
        """Set the weights of this linear autoencoder without hidden layers to PCA's."""
        spec = self.spec
        linear = spec["code_activation"] == spec["output_activation"] == "linear"
        if spec["hidden"] or not linear or basis.code_size != self.code_size:
            raise ValueError("PCA initialisation needs a linear autoencoder without hidden layers")
        _set_pca(self.encoder[0], self.decoder[0], basis, self.code_size)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        if self.residual:
            return F.linear(flat, self.lin_encoder_weight, self.lin_encoder_bias) + self.encoder(
                flat
            )
        return self.encoder(flat)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.residual:
            return F.linear(z, self.lin_decoder_weight, self.lin_decoder_bias) + self.decoder(z)
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        flat = x.reshape(x.shape[0], -1)
        recon = self.decode(self.encode(flat))
        mse = F.mse_loss(recon, flat)
        return ModelOutput(recon=recon, loss=mse, terms={"mse": mse})

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstructions in the input's shape."""
        return self.decode(self.encode(x)).reshape(x.shape)


@torch.no_grad()
def _set_pca(enc: nn.Linear, dec: nn.Linear, basis: PCABasis, k: int) -> None:
    """Encoder ``P^T (x - mu)``, decoder ``mu + P z``: PCA's reconstruction."""
    if basis.code_size != k:
        raise ValueError(f"a PCA basis of {basis.code_size} components for code size {k}")
    comps = torch.as_tensor(basis.components, dtype=torch.float64)
    mean = torch.as_tensor(basis.mean, dtype=torch.float64)
    enc.weight.copy_(comps)
    enc.bias.copy_(-(comps @ mean))
    dec.weight.copy_(comps.T)
    dec.bias.copy_(mean)
