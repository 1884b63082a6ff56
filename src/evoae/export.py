"""Export a run's best model as ONNX, TorchScript or safetensors, part by part.

A model family is exportable when its module has ``encode(x)`` and ``decode(z)``.
``forward`` returns a :class:`~evoae.models.base.ModelOutput`, which no exporter can
trace, so each part is a small module returning plain tensors:

* ``encoder``: ``x -> code``; for a VAE ``x -> (mean, log_var)``, the posterior's two
  heads (``log_var`` is the log-variance, soft-clamped as in training);
* ``decoder``: ``z -> recon``. It is also a VAE's sampler: fed ``z ~ N(0, 1)`` of shape
  ``(n, latent)`` it draws from the model (noise is an input, so deployments choose their
  own random source and results are reproducible); no separate sampler file is written;
* ``autoencoder``: ``x -> decode(encode(x))`` (the posterior mean for a VAE: no noise).

The batch dimension is dynamic in every format. Inputs ``x`` are *preprocessed* data, of
the shape the model was trained on (``(n, features)`` for the dense family, which also
takes flattened images); the ``export.json`` manifest lists what was written, with input
and output names and shapes, and the ``preprocess`` record that turns raw data into ``x``.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from evoae.errors import EvoaeError
from evoae.families import family_of
from evoae.families.io import load_model, read_model_json
from evoae.runs import folder as rf
from evoae.runs import guard
from evoae.runs.atomic import atomic_write_bytes, atomic_write_text

FORMATS = ("onnx", "torchscript", "safetensors")
PARTS = ("encoder", "decoder", "autoencoder")
#: The default ``fmt`` of :func:`export_run` and ``evoae export``.
DEFAULT_FORMAT = "safetensors"
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "safetensors": ".safetensors"}
MANIFEST = "export.json"
#: Default destination inside a run folder.
EXPORT_DIR = "export"
#: ONNX opset: 17 is read by every onnxruntime of the last years.
OPSET = 17
#: Opsets the exporter is used with here (older ones lack ops these graphs need).
OPSET_RANGE = (11, 20)


class EncoderPart(nn.Module):
    """``x -> code``, or ``x -> (mean, log_var)`` for a VAE (its ``posterior``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.variational = is_variational(model)

    def forward(self, x: torch.Tensor) -> Any:
        if self.variational:
            return self.model.posterior(x)
        return self.model.encode(x)


class CodePart(nn.Module):
    """``x -> code`` (a VAE's posterior mean): the first half of the autoencoder."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x)


class DecoderPart(nn.Module):
    """``z -> reconstruction``. Also the VAE sampler, fed with standard normal noise."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z)


class AutoencoderPart(nn.Module):
    """``x -> decode(encode(x))`` with the code (or posterior mean) in between."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.encoder = CodePart(model)
        self.decoder = DecoderPart(model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


@dataclass
class Exported:
    """One written part: where, and its input/output names and shapes (``None`` = batch)."""

    part: str
    path: Path
    input_name: str
    input_shape: list[int | None]
    outputs: list[tuple[str, list[int | None]]]

    @property
    def output_name(self) -> str:
        """The first (for most parts the only) output's name."""
        return self.outputs[0][0]

    @property
    def output_shape(self) -> list[int | None]:
        return self.outputs[0][1]


def is_variational(model: nn.Module, example: torch.Tensor | None = None) -> bool:
    """True for models with a posterior and a prior (the autoencoder protocol's flag)."""
    return bool(getattr(model, "variational", False))


def example_input(model: nn.Module, batch: int = 2) -> torch.Tensor:
    """A batch of inputs of the shape the model was built for, from its family."""
    spec = getattr(model, "spec", None) or {}
    shape = family_of(spec).input_shape(spec)
    return torch.rand([batch, *shape], generator=torch.Generator().manual_seed(0))


def part_module(model: nn.Module, part: str) -> nn.Module:
    """The tensor-in, tensor-out module for ``part`` of ``model``."""
    if not (hasattr(model, "encode") and hasattr(model, "decode")):
        raise EvoaeError(
            f"model family {model.spec.get('family')!r} has no encode/decode: it cannot be exported"
        )
    if part == "encoder":
        return EncoderPart(model).eval()
    if part == "decoder":
        return DecoderPart(model).eval()
    if part == "autoencoder":
        return AutoencoderPart(model).eval()
    raise EvoaeError(f"unknown part {part!r}: choose from {', '.join(PARTS)} or all")


def part_input(model: nn.Module, part: str, batch: int = 2) -> torch.Tensor:
    """An example input of ``part``: data for encoders, codes for the decoder."""
    x = example_input(model, batch)
    if part in ("encoder", "autoencoder"):
        return x
    with torch.no_grad():
        return CodePart(model)(x)


def resolve_parts(model: nn.Module, part: str) -> list[str]:
    """The parts ``part`` names (``all``: every part the model has)."""
    if part == "all":
        return list(PARTS)
    if part == "sampler":
        raise EvoaeError(
            "the sampler is the decoder: export --part decoder and feed it z ~ N(0, 1) of "
            "shape (n, latent) (variational models only)"
        )
    if part not in PARTS:
        raise EvoaeError(f"unknown part {part!r}: choose from {', '.join(PARTS)} or all")
    return [part]


def locate_model(run: str | Path) -> Path:
    """The model folder of a run folder (or ``run`` itself when it is a model folder)."""
    run = Path(run)
    if (run / "model.json").is_file():
        return run
    if (run / rf.MODEL_DIR / "model.json").is_file():
        return run / rf.MODEL_DIR
    if rf.is_run(run):
        raise EvoaeError(f"run {run} has no saved model yet: let the search finish first")
    raise EvoaeError(f"{run} is not an evoae run folder or model folder")


def export_run(
    run: str | Path,
    *,
    fmt: str = DEFAULT_FORMAT,
    part: str = "all",
    out: str | Path | None = None,
    opset: int = OPSET,
) -> list[Exported]:
    """Export the best model of ``run`` (a run or model folder) into ``out``.

    Parameters
    ----------
    run
        Run folder (its ``model/`` is used) or a model folder.
    fmt
        ``safetensors`` (the default), ``onnx`` or ``torchscript``.
    part
        ``encoder``, ``decoder``, ``autoencoder`` or ``all``.
    out
        Destination folder; default ``<run>/export`` (``<model>-export`` beside a bare
        model folder).
    opset
        ONNX opset version.

    Returns
    -------
    list of Exported
        The written parts; ``export.json`` in ``out`` lists them too.
    """
    if fmt not in FORMATS:
        raise EvoaeError(f"unknown export format {fmt!r}: choose from {', '.join(FORMATS)}")
    lo, hi = OPSET_RANGE
    if isinstance(opset, bool) or not isinstance(opset, int) or not lo <= opset <= hi:
        raise EvoaeError(f"ONNX opset {opset!r} is not supported: choose {lo} to {hi}")
    model_dir = locate_model(run)
    model = load_model(model_dir)
    meta = read_model_json(model_dir)
    parts = resolve_parts(model, part)
    if out is not None:
        dest = Path(out)
    elif model_dir == Path(run):  # a bare model folder: export next to it
        dest = model_dir.parent / f"{model_dir.name}-export"
    else:
        dest = Path(run) / EXPORT_DIR
    check_destination(dest, [f"{p}{SUFFIX[fmt]}" for p in parts])
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EvoaeError(f"cannot create export folder {dest} ({e.strerror})") from None
    written = [export_part(model, p, fmt, dest / f"{p}{SUFFIX[fmt]}", opset=opset) for p in parts]
    write_manifest(dest, fmt, model_dir, meta, written, model=model)
    return written


def _export_digests(path: Path) -> dict[str, str] | None:
    """The ``sha256`` of each file an ``export.json`` evoae wrote lists, or None when
    ``path`` is not such a manifest (a regular file) or was edited since (its
    ``manifest_sha256``, the digest of the rest of it, no longer matches)."""
    if path.is_symlink() or not path.is_file():
        return None
    try:
        if path.stat().st_size > 1 << 20:
            return None
        old = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    if not (
        isinstance(old, dict)
        and isinstance(old.get("files"), list)
        and "preprocess_note" in old
        and "source" in old
    ):
        return None
    own = old.pop("manifest_sha256", None)
    if own != _self_digest(old):
        return None
    return {
        f["file"]: f["sha256"]
        for f in old["files"]
        if isinstance(f, dict)
        and isinstance(f.get("file"), str)
        and isinstance(f.get("sha256"), str)
    }


def check_destination(dest: Path, names: list[str]) -> None:
    """Refuse to write over files in ``dest`` that evoae did not write.

    ``names`` are the part files about to be written. ``dest`` may not be or pass
    through a symbolic link inside a run, and may not itself be a link anywhere. In an
    existing ``dest`` a part file may be replaced only when the folder's ``export.json``
    (an evoae export manifest) records the SHA-256 of its current content, or, inside a
    run folder, when the run's manifest does (:mod:`evoae.runs.guard`); a temporary
    file or a link among them is always refused.
    """
    root = guard.run_root(dest / MANIFEST)
    if root is not None:
        guard.check_inside(root, dest / MANIFEST)
    if dest.is_symlink():
        raise EvoaeError(
            f"export folder {dest} is a symbolic link, which evoae never writes through: "
            "pass the real folder or choose another --out; nothing was written"
        )
    if dest.exists() and not dest.is_dir():
        raise EvoaeError(f"export folder {dest} exists and is not a folder: choose another --out")
    if not dest.is_dir():
        return  # created by the caller
    recorded = _export_digests(dest / MANIFEST)
    manifest = dest / MANIFEST
    if (manifest.exists() or manifest.is_symlink()) and recorded is None:
        if root is None or not guard.is_recorded(root, manifest):
            _not_ours(dest, MANIFEST)
    for name in names:
        candidate = dest / name
        temp = dest / f"{name}.tmp"
        if temp.exists() or temp.is_symlink():
            _not_ours(dest, temp.name)
        if not (candidate.exists() or candidate.is_symlink()):
            continue
        if candidate.is_symlink() or not candidate.is_file():
            _not_ours(dest, name)
        if root is not None and guard.is_recorded(root, candidate):
            continue
        if recorded is None or recorded.get(name) != guard.digest(candidate):
            _not_ours(dest, name)


def _not_ours(dest: Path, name: str) -> None:
    raise EvoaeError(
        f"export folder {dest} already holds {name}, which evoae did not export there (or "
        "it was changed since): move it away or choose an empty or new --out"
    )


#: How to use what export.json lists, for readers of the file.
PREPROCESS_NOTE = (
    "inputs x of the encoder and autoencoder are preprocessed: reshape a raw example to "
    "raw_shape (channels first), x = (raw - data_min) / data_range (per feature when lists), "
    "then for images resize to resize (bilinear, half-pixel centres, no antialiasing) when "
    "set and clip to [0, 1], and reshape to input_shape; evoae.load_model(folder).preprocess "
    "does all of it"
)
SAMPLING_NOTE = (
    "variational model: to sample, feed the decoder z drawn from N(0, 1) with shape "
    "(n, latent); the encoder's log_var output is the posterior log-variance"
)


def write_manifest(
    dest: Path,
    fmt: str,
    model_dir: Path,
    meta: dict[str, Any],
    written: list[Exported],
    *,
    model: nn.Module | None = None,
) -> None:
    """Add ``written`` to ``dest/export.json``, keeping other formats' entries of the same model.

    The manifest also holds the model's ``preprocess`` record (raw data -> ``x``) and, for
    VAEs, how to sample with the decoder.
    """
    path = dest / MANIFEST
    files: list[dict[str, Any]] = []
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            old = {}
        if isinstance(old, dict) and old.get("weights_sha256") == meta.get("weights_sha256"):
            files = [f for f in old.get("files", []) if isinstance(f, dict)]
    names = {e.path.name for e in written}
    files = [f for f in files if f.get("file") not in names]
    files += [
        {
            "file": e.path.name,
            "sha256": guard.digest(e.path),
            "format": fmt,
            "part": e.part,
            "input": {"name": e.input_name, "shape": e.input_shape},
            "output": {"name": e.output_name, "shape": e.output_shape},  # the first output
            "outputs": [{"name": n, "shape": shape} for n, shape in e.outputs],
        }
        for e in written
    ]
    pre = getattr(model, "preprocess", None)
    manifest: dict[str, Any] = {
        "source": str(model_dir),
        "family": meta["spec"].get("family"),
        "spec": meta["spec"],
        "weights_sha256": meta.get("weights_sha256"),
        "preprocess": pre.record if pre is not None else meta.get("preprocess"),
        "preprocess_note": PREPROCESS_NOTE,
        "files": sorted(files, key=lambda f: f["file"]),
    }
    if model is not None and is_variational(model):
        manifest["sampling"] = SAMPLING_NOTE
    manifest["manifest_sha256"] = _self_digest(manifest)
    atomic_write_text(path, json.dumps(manifest, indent=2))


def _self_digest(manifest: dict[str, Any]) -> str:
    """SHA-256 of an ``export.json`` without its own digest field (canonical JSON)."""
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def export_part(
    model: nn.Module, part: str, fmt: str, path: Path, *, opset: int = OPSET
) -> Exported:
    """Write one part of ``model`` to ``path`` in ``fmt``."""
    module = part_module(model, part)
    example = part_input(model, part)
    with torch.no_grad():
        output = module(example)
    results = list(output) if isinstance(output, tuple) else [output]
    in_name = "x" if part in ("encoder", "autoencoder") else "z"
    if part != "encoder":
        out_names = ["recon"]
    else:
        out_names = ["mean", "log_var"] if len(results) == 2 else ["code"]
    if fmt == "onnx":
        _write_onnx(module, example, path, in_name, out_names, opset)
    elif fmt == "torchscript":
        _write_torchscript(module, example, path)
    elif fmt == "safetensors":
        _write_safetensors(model, module, example, path, part)
    else:
        raise EvoaeError(f"unknown export format {fmt!r}: choose from {', '.join(FORMATS)}")
    return Exported(
        part=part,
        path=path,
        input_name=in_name,
        input_shape=[None, *example.shape[1:]],
        outputs=[(n, [None, *r.shape[1:]]) for n, r in zip(out_names, results, strict=True)],
    )


def _quiet_tracing() -> None:
    """Silence what tracing says about these graphs (call inside ``catch_warnings``).

    Both exporters are deprecated in favour of torch.export (whose ONNX path needs
    onnxscript); shape checks on non-batch dimensions are constants by design.
    """
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", torch.jit.TracerWarning)


def _write_onnx(
    module: nn.Module,
    example: torch.Tensor,
    path: Path,
    in_name: str,
    out_names: list[str],
    opset: int,
) -> None:
    tmp = path.with_name(path.name + ".tmp")
    # The torch.export-based exporter needs onnxscript, which evoae does not depend on; the
    # TorchScript-based one is deprecated but exact for these feed-forward graphs.
    with warnings.catch_warnings():
        _quiet_tracing()
        torch.onnx.export(
            module,
            (example,),
            str(tmp),
            dynamo=False,
            input_names=[in_name],
            output_names=out_names,
            dynamic_axes={name: {0: "batch"} for name in [in_name, *out_names]},
            opset_version=opset,
        )
    data = tmp.read_bytes()
    tmp.unlink()
    try:
        import onnx
    except ImportError:  # checking is a bonus: the file is written either way
        onnx = None
    if onnx is not None:
        try:
            onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
        except onnx.checker.ValidationError as e:
            raise EvoaeError(f"the exported ONNX graph for {path.name} is invalid ({e})") from None
    atomic_write_bytes(path, data)


def _write_torchscript(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        _quiet_tracing()
        traced = torch.jit.trace(module, (example,), check_trace=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.jit.save(traced, str(tmp))
    data = tmp.read_bytes()
    tmp.unlink()
    atomic_write_bytes(path, data)


def used_state(model: nn.Module, module: nn.Module, example: torch.Tensor) -> dict[str, Any]:
    """The entries of ``model``'s state dict that ``module``'s forward actually uses.

    Found by running it once with forward hooks on every submodule of ``model``: the
    parameters and buffers of the submodules that ran (BatchNorm statistics included).
    """
    ran: set[str] = set()
    names = {id(m): n for n, m in model.named_modules()}
    hooks = [
        m.register_forward_hook(lambda mod, _i, _o: ran.add(names[id(mod)]))
        for m in model.modules()
    ]
    try:
        with torch.no_grad():
            module(example)
    finally:
        for h in hooks:
            h.remove()
    state = model.state_dict()
    owner = {k: k.rsplit(".", 1)[0] if "." in k else "" for k in state}
    ran.add("")  # tensors held by the root module itself: keep them, they are cheap
    return {k: v for k, v in state.items() if owner[k] in ran}


def _write_safetensors(
    model: nn.Module, module: nn.Module, example: torch.Tensor, path: Path, part: str
) -> None:
    tensors = {
        k: v.detach().cpu().contiguous() for k, v in used_state(model, module, example).items()
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(
        tensors,
        str(tmp),
        metadata={"format": "evoae-export", "part": part, "spec": json.dumps(model.spec)},
    )
    data = tmp.read_bytes()
    tmp.unlink()
    atomic_write_bytes(path, data)
