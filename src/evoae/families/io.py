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

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import nn

from evoae.data.preprocess import Preprocess
from evoae.errors import EvoaeError
from evoae.families.registry import build_model, check_spec, family_of
from evoae.runs.atomic import atomic_write_bytes, atomic_write_text
from evoae.runs.schema import MAX_JSON_BYTES, MAX_PARAMS, validate_model_json

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
    """The parsed ``model.json`` of a saved model, validated (format, digest, spec).

    Every field is checked before use: the envelope by
    :func:`evoae.runs.schema.validate_model_json`, the spec by its family's schema
    (:func:`evoae.families.registry.check_spec`: widths, activations, optimizers, sizes).
    """
    path = Path(folder) / JSON_NAME
    if not path.exists() and not path.is_symlink():
        raise EvoaeError(f"no saved model in {folder}: {JSON_NAME} is missing")
    try:
        if not path.is_file():
            raise OSError(f"{path.name} is not a regular file")
        if path.stat().st_size > MAX_JSON_BYTES:
            raise ValueError(f"{path.stat().st_size} bytes is too large")
        meta = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise EvoaeError(
            f"{path} is not a readable evoae model description (nested too deeply)"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        detail = " ".join(str(e).split())[:200]
        raise EvoaeError(f"{path} is not a readable evoae model description ({detail})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "spec" not in meta:
        raise EvoaeError(f"{path} is not an evoae model description")
    where = f"model description {path}"
    validate_model_json(meta, where)
    check_spec(meta["spec"], where)
    return meta


def _weights_header(data: bytes, wpath: Path) -> dict[str, Any]:
    """The safetensors header (names, dtypes, shapes), read without loading any tensor."""
    bad = EvoaeError(f"model weights {wpath} are not valid safetensors (bad header)")
    if len(data) < 8:
        raise bad
    n = int.from_bytes(data[:8], "little")
    if n > min(len(data) - 8, 100 * 1024 * 1024):
        raise bad
    try:
        header = json.loads(data[8 : 8 + n])
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise bad from None
    if not isinstance(header, dict):
        raise bad
    header.pop("__metadata__", None)
    return header


def load_model(folder: str | Path) -> nn.Module:
    """Rebuild a saved model: module from the JSON spec, weights from safetensors.

    The weights must match the digest in ``model.json``, have exactly the names, shapes
    and dtypes (float32 for parameters) the architecture declares, and be finite.
    """
    folder = Path(folder)
    meta = read_model_json(folder)
    wpath = folder / WEIGHTS_NAME
    try:
        if not wpath.is_file():
            raise OSError
        size = wpath.stat().st_size
        if size > (MAX_PARAMS + 1_000_000) * 4:
            raise EvoaeError(f"model weights {wpath} are {size} bytes: too large to be evoae's")
        data = wpath.read_bytes()
    except OSError:
        raise EvoaeError(f"model weights {wpath} are missing or unreadable") from None
    if hashlib.sha256(data).hexdigest() != meta.get("weights_sha256"):
        raise EvoaeError(
            f"model weights {wpath} do not match the digest in {JSON_NAME}: "
            "the file is truncated or was modified; re-export or retrain the model"
        )
    header = _weights_header(data, wpath)
    try:
        model = build_model(meta["spec"])
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as e:
        msg = " ".join(str(e).split())[:200]
        raise EvoaeError(
            f"the spec in {folder / JSON_NAME} does not describe a buildable model ({msg})"
        ) from None
    expected = model.state_dict()
    misfit = f"model weights {wpath} do not fit the architecture in {JSON_NAME}"
    if set(header) != set(expected):
        raise EvoaeError(misfit)
    for k, t in expected.items():
        info = header[k]
        want = _SAFE_DTYPES.get(t.dtype)
        if not isinstance(info, dict) or info.get("dtype") != want:
            got = info.get("dtype") if isinstance(info, dict) else None
            raise EvoaeError(
                f"model weights {wpath}: tensor {k} has dtype {got}, the architecture declares "
                f"{want}; re-export or retrain the model"
            )
        if info.get("shape") != list(t.shape):
            raise EvoaeError(misfit)
    try:
        tensors = load(data)
    except (SafetensorError, OSError, ValueError) as e:
        raise EvoaeError(f"model weights {wpath} are not valid safetensors ({e})") from None
    for k, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise EvoaeError(
                f"model weights {wpath}: tensor {k} holds NaN or infinite values; retrain the model"
            )
    model.load_state_dict(tensors)
    model.eval()
    attach_preprocess(model, meta.get("preprocess"))
    return model


_SAFE_DTYPES = {
    torch.float32: "F32",
    torch.float64: "F64",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
}


#: Bounds of a usable scaling ``x = (raw - data_min) / data_range``: a smaller range
#: turns any difference into an overflow in float32, a larger offset swamps the data.
MIN_DATA_RANGE = 1e-30
MAX_DATA_MIN = 1e300


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
    if np.any(pre.data_range < MIN_DATA_RANGE) or np.any(np.abs(pre.data_min) > MAX_DATA_MIN):
        raise EvoaeError(
            f"the model's preprocess record is damaged (data_range below {MIN_DATA_RANGE:g} or "
            f"data_min beyond {MAX_DATA_MIN:g} would saturate every input): restore model.json"
        )
    model.preprocess = pre
    return pre


def weights_equal(a: nn.Module, b: nn.Module) -> bool:
    """True when two modules hold bit-identical parameters and buffers."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
