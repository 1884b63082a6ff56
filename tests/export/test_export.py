"""Export: ONNX round trip through onnxruntime, TorchScript, safetensors parts, VAE parts,
preprocessing recorded in export.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import evoae
from evoae.cli import main
from evoae.data import load_dataset
from evoae.export import export_run, used_state
from evoae.families import build_model, make_space
from evoae.families.io import save_model
from evoae.settings import SearchSettings

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = 1e-5


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A real (tiny) dense search on digits."""
    out = tmp_path_factory.mktemp("export") / "run"
    evoae.search(
        "digits",
        out=out,
        strategy="microbial",
        population=2,
        generations=1,
        epochs=1,
        final_epochs=2,
    )
    return out


@pytest.fixture(scope="module")
def real_x(run) -> np.ndarray:
    """Validation images of the run, loaded as the search did, flattened for the dense model."""
    settings = SearchSettings.from_dict(json.loads((run / "settings.json").read_text()))
    x = settings.load_splits().val.x
    return x.reshape(len(x), -1)


def session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_onnx_round_trip(run, real_x, tmp_path, capsys):
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path)]) == 0
    assert "autoencoder" in capsys.readouterr().out
    model = evoae.load_model(run / "model")
    for part in ("encoder", "decoder", "autoencoder"):
        proto = onnx.load(str(tmp_path / f"{part}.onnx"))
        onnx.checker.check_model(proto, full_check=True)
        assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    with torch.no_grad():
        codes = model.encode(torch.as_tensor(real_x)).numpy()
        recons = model.decode(torch.as_tensor(codes)).numpy()
    enc, dec, ae = (session(tmp_path / f"{p}.onnx") for p in ("encoder", "decoder", "autoencoder"))
    for n in (1, 7, len(real_x)):  # dynamic batch size
        np.testing.assert_allclose(enc.run(None, {"x": real_x[:n]})[0], codes[:n], atol=TOL)
        np.testing.assert_allclose(dec.run(None, {"z": codes[:n]})[0], recons[:n], atol=TOL)
        np.testing.assert_allclose(ae.run(None, {"x": real_x[:n]})[0], recons[:n], atol=TOL)
    # The comparison is not vacuous: a different input gives different codes.
    assert not np.allclose(enc.run(None, {"x": real_x[:5] * 0.5})[0], codes[:5], atol=TOL)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_parts(run, real_x, tmp_path):
    written = export_run(run, fmt="torchscript", out=tmp_path)
    assert [e.part for e in written] == ["encoder", "decoder", "autoencoder"]
    model = evoae.load_model(run / "model")
    x = torch.as_tensor(real_x)
    with torch.no_grad():
        for n in (1, 13):
            scripted = torch.jit.load(str(tmp_path / "autoencoder.pt"))
            np.testing.assert_allclose(
                scripted(x[:n]).numpy(), model.reconstruct(x[:n]).numpy(), atol=TOL
            )
            encoder = torch.jit.load(str(tmp_path / "encoder.pt"))
            np.testing.assert_allclose(encoder(x[:n]).numpy(), model.encode(x[:n]).numpy())


def test_safetensors_parts_hold_their_weights(run, real_x, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    export_run(run, fmt="safetensors", out=tmp_path)
    model = evoae.load_model(run / "model")
    enc = load_file(str(tmp_path / "encoder.safetensors"))
    dec = load_file(str(tmp_path / "decoder.safetensors"))
    whole = load_file(str(tmp_path / "autoencoder.safetensors"))
    # A PCA-residual model's linear path is held by the model itself: in every part.
    assert enc and all(k.startswith("encoder.") or "." not in k for k in enc)
    assert dec and all(k.startswith("decoder.") or "." not in k for k in dec)
    assert set(whole) == set(model.state_dict()) == set(enc) | set(dec)
    with safe_open(str(tmp_path / "encoder.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["part"] == "encoder" and json.loads(meta["spec"]) == model.spec
    fresh = build_model(model.spec, seed=123)
    fresh.load_state_dict(enc, strict=False)
    x = torch.as_tensor(real_x[:20])
    with torch.no_grad():
        np.testing.assert_array_equal(fresh.encode(x).numpy(), model.encode(x).numpy())


def test_manifest_lists_every_format(run, tmp_path):
    for fmt in ("onnx", "torchscript"):
        export_run(run, fmt=fmt, out=tmp_path, part="encoder")
    manifest = json.loads((tmp_path / "export.json").read_text())
    assert [(f["file"], f["format"]) for f in manifest["files"]] == [
        ("encoder.onnx", "onnx"),
        ("encoder.pt", "torchscript"),
    ]
    assert manifest["files"][0]["input"] == {"name": "x", "shape": [None, 64]}
    assert manifest["files"][0]["output"] == {"name": "code", "shape": [None, 2 * 2]}
    assert manifest["files"][0]["outputs"] == [{"name": "code", "shape": [None, 4]}]
    assert "sampling" not in manifest  # not a VAE


def test_format_defaults_to_safetensors(run, tmp_path, capsys):
    assert main(["export", str(run), "--out", str(tmp_path), "--quiet"]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "autoencoder.safetensors",
        "decoder.safetensors",
        "encoder.safetensors",
        "export.json",
    ]
    assert {f["format"] for f in json.loads((tmp_path / "export.json").read_text())["files"]} == {
        "safetensors"
    }


def test_preprocessing_travels_to_export_json_and_matches_onnx(run, tmp_path):
    """Raw digits rows preprocessed from export.json alone, run in onnxruntime, give what
    torch gives on model.preprocess(raw)."""
    from sklearn.datasets import load_digits

    export_run(run, fmt="onnx", out=tmp_path, part="encoder")
    manifest = json.loads((tmp_path / "export.json").read_text())
    pre = manifest["preprocess"]
    assert pre == json.loads((run / "model" / "model.json").read_text())["preprocess"]
    assert pre["kind"] == "image" and pre["raw_shape"] == [1, 8, 8]
    assert (pre["data_min"], pre["data_range"], pre["resize"]) == (0.0, 16.0, None)
    assert pre["input_shape"] == [64] and "preprocess_note" in manifest
    raw = load_digits().data[:50]  # pixel values 0..16, as scikit-learn gives them
    x = ((raw - pre["data_min"]) / pre["data_range"]).astype(np.float32)
    x = x.reshape(len(x), *pre["input_shape"])
    model = evoae.load_model(run / "model")
    with torch.no_grad():
        expected = model.encode(model.preprocess(raw)).numpy()
    np.testing.assert_allclose(
        session(tmp_path / "encoder.onnx").run(None, {"x": x})[0], expected, atol=TOL
    )
    # Raw values straight into the model would be far off (the codes around -39).
    with torch.no_grad():
        unscaled = model.encode(torch.as_tensor(raw, dtype=torch.float32)).numpy()
    assert not np.allclose(unscaled, expected, atol=0.1)


def test_default_destination_is_inside_the_run(run):
    written = export_run(run, fmt="onnx", part="decoder")
    assert written[0].path == run / "export" / "decoder.onnx"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "onnx", "--out", "/proc/evoae-nope"], "cannot create export folder"),
    ],
)
def test_cli_errors(run, args, message, capsys):
    assert main(["export", str(run), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("evoae: error: ") and message in err and err.count("\n") == 1


def test_cli_has_no_sampler_part(run, capsys):
    with pytest.raises(SystemExit) as info:
        main(["export", str(run), "--part", "sampler"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'sampler'" in err and err.count("\n") == 1


def test_not_a_run(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--format", "onnx"]) == 2
    assert "not an evoae run folder" in capsys.readouterr().err


def conv_model(family: str, tmp_path: Path) -> tuple[torch.nn.Module, Path, np.ndarray]:
    """A conv model of the digits images built from a random genome of its space."""
    ds = load_dataset("digits")
    space = make_space(family, "seed", ds, 4)
    genome = space.sample(np.random.default_rng(3))
    model = build_model(space.decode(genome), seed=5).eval()
    folder = save_model(
        model, tmp_path / "model", space=space.config(), genome=space.to_json(genome)
    )
    return model, folder, ds.x[:40]


def test_vae_exports_mean_and_log_var_and_samples_with_the_decoder(tmp_path):
    model, folder, x = conv_model("conv-vae", tmp_path)
    written = export_run(folder, fmt="onnx", out=tmp_path / "out")
    assert [e.part for e in written] == ["encoder", "decoder", "autoencoder"]
    assert written[0].outputs == [("mean", [None, 4]), ("log_var", [None, 4])]
    xt = torch.as_tensor(x)
    with torch.no_grad():
        mean, logvar = model.posterior(xt)
        recon = model.reconstruct(xt).numpy()
        samples = model.sample(6, seed=11).numpy()
    assert not torch.allclose(mean, logvar)
    enc = session(tmp_path / "out" / "encoder.onnx")
    assert [o.name for o in enc.get_outputs()] == ["mean", "log_var"]
    for n in (1, len(x)):
        got_mean, got_logvar = enc.run(None, {"x": x[:n]})
        np.testing.assert_allclose(got_mean, mean[:n].numpy(), atol=TOL)
        np.testing.assert_allclose(got_logvar, logvar[:n].numpy(), atol=TOL)
    ae = session(tmp_path / "out" / "autoencoder.onnx")
    np.testing.assert_allclose(ae.run(None, {"x": x[:3]})[0], recon[:3], atol=TOL)
    # No sampler file that would copy the decoder: the decoder fed N(0, 1) noise samples,
    # and the same noise gives sample()'s images.
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["autoencoder.onnx", "decoder.onnx", "encoder.onnx", "export.json"]
    eps = torch.randn(6, 4, generator=torch.Generator().manual_seed(11)).numpy()
    out = session(tmp_path / "out" / "decoder.onnx").run(None, {"z": eps})[0]
    assert out.shape == (6, 1, 8, 8)
    np.testing.assert_allclose(out, samples, atol=TOL)
    manifest = json.loads((tmp_path / "out" / "export.json").read_text())
    encoder_entry = next(f for f in manifest["files"] if f["part"] == "encoder")
    assert [o["name"] for o in encoder_entry["outputs"]] == ["mean", "log_var"]
    assert "decoder" in manifest["sampling"] and "N(0, 1)" in manifest["sampling"]
    with pytest.raises(evoae.EvoaeError, match="the sampler is the decoder"):
        export_run(folder, fmt="onnx", out=tmp_path / "out", part="sampler")


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_vae_encoder_two_outputs_in_torchscript_and_safetensors(tmp_path):
    from safetensors.torch import load_file

    model, folder, x = conv_model("conv-vae", tmp_path)
    export_run(folder, fmt="torchscript", out=tmp_path / "ts", part="encoder")
    xt = torch.as_tensor(x[:5])
    with torch.no_grad():
        mean, logvar = torch.jit.load(str(tmp_path / "ts" / "encoder.pt"))(xt)
        want_mean, want_logvar = model.posterior(xt)
    np.testing.assert_allclose(mean.numpy(), want_mean.numpy(), atol=TOL)
    np.testing.assert_allclose(logvar.numpy(), want_logvar.numpy(), atol=TOL)
    export_run(folder, out=tmp_path / "st")  # safetensors by default
    enc = load_file(str(tmp_path / "st" / "encoder.safetensors"))
    assert any(k.startswith("logvar.") for k in enc) and any(k.startswith("mean.") for k in enc)
    # Every written file is its own: none is a byte copy of another.
    blobs = [p.read_bytes() for p in (tmp_path / "st").glob("*.safetensors")]
    assert len(blobs) == 3 and len({hash(b) for b in blobs}) == 3


def test_conv_ae_has_no_sampler(tmp_path):
    _, folder, _ = conv_model("conv-ae", tmp_path)
    written = export_run(folder, fmt="torchscript", out=tmp_path / "out")
    assert [e.part for e in written] == ["encoder", "decoder", "autoencoder"]


def test_used_state_follows_the_forward(tmp_path):
    model, _, x = conv_model("conv-vae", tmp_path)
    from evoae.export import part_module

    keys = used_state(model, part_module(model, "encoder"), torch.as_tensor(x[:2]))
    assert any(k.startswith("mean.") for k in keys)  # the mean head is used...
    assert not any(k.startswith("decoder.") for k in keys)  # ...the decoder is not
    # The encoder part gives the log-variance too, so its head is kept.
    assert any(k.startswith("logvar.") for k in keys)
    decoder_keys = used_state(model, part_module(model, "decoder"), torch.zeros(2, 4))
    # Root-level tensors (the VAE's noise seed and KL warm-up step buffers) travel along.
    assert {k.split(".")[0] for k in decoder_keys} == {"decoder", "noise_seed", "kl_steps"}
