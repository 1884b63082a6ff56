"""Saving and loading models: a JSON description plus safetensors weights, never pickle.

``<folder>/model.json`` holds the space configuration, the genome, the decoded spec, the
SHA-256 of ``<folder>/model.safetensors`` and the ``preprocess`` record (how raw data is
scaled and resized into what the model takes: :mod:`evoae.data.preprocess`); loading
rebuilds the module from the spec, refuses weights whose digest, names or shapes do not
match, and gives the module a ``preprocess`` callable (raw batch -> input tensor).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from evoae.data.preprocess import Preprocess
from evoae.errors import EvoaeError
from evoae.families.registry import build_model, family_of
from evoae.runs.atomic import atomic_write_bytes, atomic_write_text

FORMAT = "evoae-model"
VERSION = 1
JSON_NAME = "model.json"
WEIGHTS_NAME = "model.safetensors"


def save_model(
    model: nn.Module,
    folder: str | Path,
    *,
    space: dict[str, Any],
    genome: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    preprocess: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into ``folder`` (atomically).

    ``preprocess`` is the training data's record (``Dataset.preprocess``); without it the
    model is recorded as taking its inputs as they are.
    """
    folder = Path(folder)
    record = attach_preprocess(model, preprocess).record
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # Serialised in memory: the only file written is the atomic one (no stray temp file).
    data = save(tensors, metadata={"format": FORMAT})
    atomic_write_bytes(folder / WEIGHTS_NAME, data)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "family": model.spec["family"],
        "space": space,
        "genome": genome,
        "spec": model.spec,
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        "metrics": metrics or {},
        "preprocess": record,
    }
    atomic_write_text(folder / JSON_NAME, json.dumps(meta, indent=2))
    return folder


def read_model_json(folder: str | Path) -> dict[str, Any]:
    """The parsed ``model.json`` of a saved model, validated."""
    path = Path(folder) / JSON_NAME
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise EvoaeError(f"no saved model in {folder}: {JSON_NAME} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EvoaeError(f"{path} is not a readable evoae model description ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "spec" not in meta:
        raise EvoaeError(f"{path} is not an evoae model description")
    return meta


def load_model(folder: str | Path) -> nn.Module:
    """Rebuild a saved model: module from the JSON spec, weights from safetensors."""
    folder = Path(folder)
    meta = read_model_json(folder)
    wpath = folder / WEIGHTS_NAME
    try:
        data = wpath.read_bytes()
    except OSError:
        raise EvoaeError(f"model weights {wpath} are missing or unreadable") from None
    if hashlib.sha256(data).hexdigest() != meta.get("weights_sha256"):
        raise EvoaeError(
            f"model weights {wpath} do not match the digest in {JSON_NAME}: "
            "the file is truncated or was modified; re-export or retrain the model"
        )
    try:
        tensors = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError) as e:
        raise EvoaeError(f"model weights {wpath} are not valid safetensors ({e})") from None
    model = build_model(meta["spec"])
    expected = model.state_dict()
    if set(tensors) != set(expected) or any(
        tensors[k].shape != expected[k].shape for k in expected
    ):
        raise EvoaeError(f"model weights {wpath} do not fit the architecture in {JSON_NAME}")
    model.load_state_dict(tensors)
    model.eval()
    attach_preprocess(model, meta.get("preprocess"))
    return model


def attach_preprocess(model: nn.Module, record: dict[str, Any] | None) -> Preprocess:
    """Set ``model.preprocess`` (a plain callable, not a submodule) from ``record``.

    Without a record (models saved by evoae 0.2 and earlier) inputs are taken as they
    are: already scaled to [0, 1], only reshaped.
    """
    shape = family_of(model.spec).input_shape(model.spec)
    if record is None:
        kind = "image" if len(shape) == 3 else "tabular"
        record = {"kind": kind, "raw_shape": list(shape), "data_min": 0.0, "data_range": 1.0}
    pre = Preprocess(record, input_shape=shape)
    model.preprocess = pre
    return pre


def weights_equal(a: nn.Module, b: nn.Module) -> bool:
    """True when two modules hold bit-identical parameters and buffers."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
