"""Optimizers by name, with the Keras defaults the published GA used."""

from __future__ import annotations

import sys
from collections.abc import Iterable

import torch

from evoae.errors import EvoaeError
from evoae.spaces.base import OPTIMIZERS

#: Keras' Adam epsilon (PyTorch's default is 1e-8); kept so the seed preset matches.
ADAM_EPS = 1e-7
#: Devices with PyTorch's fused SGD, Adam and AdamW kernels.
FUSED_DEVICES = ("cpu", "cuda")


def make_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float, *, fused: bool | None = None
) -> torch.optim.Optimizer:
    """Plain SGD (no momentum), Adam or AdamW at learning rate ``lr``.

    ``fused`` (default: wherever the parameters' device has the kernels) updates all
    parameters in one kernel per step instead of a Python loop over them: for the small
    models of a search the loop costs more than the matrix products of the step. Both
    give the same updates up to float rounding, and each is deterministic for one seed.
    """
    params = list(params)
    if fused is None:
        fused = bool(params) and all(p.device.type in FUSED_DEVICES for p in params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, fused=fused)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, eps=ADAM_EPS, fused=fused)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, eps=ADAM_EPS, fused=fused)
    raise EvoaeError(f"unknown optimizer {name!r}: choose from {', '.join(OPTIMIZERS)}")


#: The ``torch.optim.Optimizer`` methods PyTorch wraps in ``torch._disable_dynamo``.
_DYNAMO_WRAPPED = ("add_param_group", "state_dict", "load_state_dict", "zero_grad")


def defer_dynamo() -> bool:
    """Let this process build, save and load optimizers without importing
    ``torch._dynamo`` (1.3-2.6 s of CPU, paid by every process that trains).

    PyTorch wraps four ``Optimizer`` methods so that ``torch.compile`` does not trace
    them; the wrapper imports the compiler on its first call and caches the wrapped
    function on it (``fn.__dynamo_disable``). Setting that cache to the function itself
    skips the import: the methods run exactly as before, only a ``torch.compile`` of
    code calling them would trace into them. So only processes evoae owns call this
    (the CLI's training commands and the process pool's workers), never the library;
    the kernel path then never imports the compiler (``Optimizer.step``, which the
    autograd path calls, still does). Returns whether the cache was set; a no-op when
    the compiler is already imported or the wrapper is not the one expected.
    """
    if "torch._dynamo" in sys.modules:
        return False
    opt = torch.optim.Optimizer
    wrapped = [getattr(getattr(opt, n), "__wrapped__", None) for n in _DYNAMO_WRAPPED]
    if any(w is None or not callable(w) for w in wrapped):
        return False
    for w in wrapped:
        if getattr(w, "__dynamo_disable", None) is None:
            w.__dynamo_disable = w  # type: ignore[union-attr]
    return True
