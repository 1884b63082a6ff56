"""``report.html``: one self-contained page about a run, and the run reader it is built on.

The page needs no network: CSS is inline, every figure is a PNG embedded as base64, and
there is no script. Sections: settings, headline figures, the best candidates, fitness
over evaluations with the population's spread, originals against reconstructions, the
best architecture as a layer diagram, the family's extra plots (a VAE's prior samples,
interpolation and latent map), and PCA at the same code size on the same data.

Everything is read from the run folder: ``settings.json``, the journal, ``summary.json``
(or ``checkpoint.json`` while a run is unfinished), ``model/`` and ``plots/``.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402
from torch import nn  # noqa: E402

from evoae.data import load_splits  # noqa: E402
from evoae.errors import EvoaeError  # noqa: E402
from evoae.export import CodePart, DecoderPart, example_input, is_variational  # noqa: E402
from evoae.families import describe as describe_spec  # noqa: E402
from evoae.families.io import load_model  # noqa: E402
from evoae.models.pca import pca_basis  # noqa: E402
from evoae.runs import folder as rf  # noqa: E402
from evoae.runs.atomic import atomic_write_text  # noqa: E402
from evoae.runs.guard import check_new_file  # noqa: E402
from evoae.runs.reader import RunView, check_data, read_run, top_candidates  # noqa: E402
from evoae.runs.vae_text import summary_rows  # noqa: E402
from evoae.settings import SearchSettings  # noqa: E402

#: Plots a family's hook may leave in ``plots/``, with the caption the report gives them.
EXTRA_PLOTS = {
    "samples.png": "Samples from the prior N(0, I), decoded by the best model",
    "interpolation.png": "Latent interpolation between two held-out images",
    "latent.png": "Latent map of held-out data (first two dimensions or principal components)",
}
#: Rows of the validation split used for the PCA comparison (enough for stable figures).
PCA_MAX_ROWS = 20_000


# ---------------------------------------------------------------- figures


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def fitness_figure(view: RunView) -> bytes:
    """Every trained candidate's fitness, the best so far, and the population's spread."""
    fig, ax = plt.subplots(figsize=(7, 3.8), dpi=100)
    hist = [h for h in view.history if "median" in h]
    if hist:
        ev = [h["evaluations"] for h in hist]
        ax.fill_between(
            ev,
            [h["q25"] for h in hist],
            [h["q75"] for h in hist],
            step="post",
            alpha=0.25,
            color="tab:blue",
            label="population 25-75%",
        )
        ax.step(
            ev,
            [h["median"] for h in hist],
            where="post",
            color="tab:blue",
            lw=1,
            label="population median",
        )
    trained = [r for r in view.trained if r.status != "failed"]
    if trained:
        ax.scatter(
            [r.id + 1 for r in trained],
            [r.fitness for r in trained],
            s=10,
            color="0.45",
            alpha=0.7,
            label="candidate",
            zorder=3,
        )
    best, xs, ys = math.inf, [], []
    for r in view.rows:
        if r.status != "failed":
            best = min(best, r.fitness)
        if math.isfinite(best):
            xs.append(r.id + 1)
            ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="tab:red", lw=2, label="best so far", zorder=4)
    failed = [r for r in view.trained if r.status == "failed"]
    if failed and ys:
        top = max(max(ys), max((r.fitness for r in trained), default=max(ys)))
        ax.scatter(
            [r.id + 1 for r in failed],
            [top] * len(failed),
            marker="x",
            color="tab:red",
            label="failed (shown at top)",
        )
    finite = [r.fitness for r in trained]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 20:
        ax.set_yscale("log")
    ax.set_xlabel("evaluations")
    ax.set_ylabel(f"validation loss ({view.settings.get('epochs', '?')} epochs)")
    ax.grid(alpha=0.3)
    if xs or hist:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


@dataclass
class Layer:
    """One box of the diagram: a layer with weights and what follows it without weights."""

    kind: str
    shape: tuple[int, ...]
    extras: list[str] = field(default_factory=list)
    role: str = "encoder"

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    def label(self) -> str:
        dims = "x".join(str(d) for d in self.shape)
        return "\n".join([self.kind, dims, *self.extras])


def trace_layers(module: nn.Module, x: torch.Tensor, role: str) -> list[Layer]:
    """The layers ``module`` runs on ``x``, in order, with their per-sample output shapes."""
    calls: list[tuple[nn.Module, tuple[int, ...]]] = []
    hooks = [
        m.register_forward_hook(
            lambda mod, _i, out: (
                calls.append((mod, tuple(out.shape[1:]))) if isinstance(out, torch.Tensor) else None
            )
        )
        for m in module.modules()
        if not list(m.children())
    ]
    try:
        with torch.no_grad():
            module(x)
    finally:
        for h in hooks:
            h.remove()
    layers: list[Layer] = []
    for mod, shape in calls:
        name = type(mod).__name__
        if any(p.ndim > 1 for p in mod.parameters(recurse=False)) or not layers:
            layers.append(Layer(name.replace("Transpose", "T"), shape, role=role))
        elif name == "Flatten":
            continue  # the next layer's width says it; the box keeps the feature-map shape
        elif name == "Unflatten":
            layers[-1].shape = shape  # a reshape into feature maps: show the maps, not a box
        else:
            layers[-1].extras.append("linear" if name == "Identity" else name.lower())
    return layers


def diagram_layers(model: nn.Module) -> list[Layer]:
    """The boxes of the architecture diagram: input, encoder, code (or VAE heads), decoder."""
    x = example_input(model, batch=2)
    encoder = CodePart(model).eval()  # the code (a VAE: the mean)
    with torch.no_grad():
        code = encoder(x)
    layers = [Layer("input", tuple(x.shape[1:]), role="input")]
    layers += trace_layers(encoder, x, "encoder")
    heads = 2 if is_variational(model, x) else 1  # a VAE's encoder ends in mean and log-var
    for layer, name in zip(layers[-heads:], ("mean head", "log-var head")[-heads:], strict=True):
        if layer.shape == tuple(code.shape[1:]):
            layer.role = "code"
            layer.kind = name if heads == 2 else layer.kind
    return layers + trace_layers(DecoderPart(model).eval(), code, "decoder")


def architecture_figure(model: nn.Module) -> bytes:
    """The best model drawn layer by layer: encoder (blue), code (red), decoder (green)."""
    layers = diagram_layers(model)
    colours = {"input": "0.8", "encoder": "#9ecae1", "code": "#fc9272", "decoder": "#a1d99b"}
    biggest = max(math.log2(layer.size + 1) for layer in layers)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.25 * len(layers)), 3.6), dpi=100)
    for i, layer in enumerate(layers):
        h = 0.25 + 2.2 * math.log2(layer.size + 1) / biggest
        ax.add_patch(
            FancyBboxPatch(
                (i - 0.35, -h / 2),
                0.7,
                h,
                boxstyle="round,pad=0.02",
                facecolor=colours[layer.role],
                edgecolor="0.3",
            )
        )
        ax.text(i, -1.35, layer.label(), ha="center", va="top", fontsize=8)
        if i:
            ax.annotate(
                "", (i - 0.37, 0), (i - 0.63, 0), arrowprops={"arrowstyle": "->", "color": "0.4"}
            )
    ax.set_xlim(-0.6, len(layers) - 0.4)
    ax.set_ylim(-2.3, 1.4)
    ax.axis("off")
    ax.set_title("box height ~ log2(units per sample)", fontsize=8, color="0.4")
    fig.tight_layout()
    return _png(fig)


# ---------------------------------------------------------------- PCA comparison


def pca_comparison(view: RunView, model: nn.Module | None) -> dict[str, Any]:
    """Validation MSE of PCA (fit on train) and of the best model, same data, same code size.

    Returns ``{"available": False, "reason": ...}`` when the data cannot be loaded (runs
    on in-memory arrays, or files no longer where the run found them).
    """
    if str(view.settings.get("dataset", "")).startswith("<"):
        return {
            "available": False,
            "reason": "the run was made from in-memory data, which the run folder does not keep",
        }
    if model is None:
        return {"available": False, "reason": "the run has no saved model yet"}
    try:
        st = SearchSettings.from_dict(view.raw_settings)
        splits = load_splits(**dataclasses.asdict(st.data), seed=st.seed)
    except EvoaeError as e:
        return {"available": False, "reason": f"the run's data could not be loaded ({e})"}
    check_data(view.path, splits.train.x, splits.val.x)  # never plot other data as the run's
    k = int(view.settings.get("code_size", 1))
    train = splits.train.x.reshape(len(splits.train), -1)
    val = splits.val.x[:PCA_MAX_ROWS]
    flat = val.reshape(len(val), -1)
    if not 1 <= k <= min(train.shape):
        return {"available": False, "reason": f"PCA cannot have {k} components on this data"}
    pca = pca_basis(train, k)
    pca_mse = float(np.mean((flat - pca.reconstruct(flat)) ** 2))
    mean_mse = float(np.mean((flat - train.mean(axis=0)) ** 2))
    with torch.no_grad():
        recon = torch.cat(
            [
                model.reconstruct(torch.as_tensor(val[i : i + 2048]))
                for i in range(0, len(val), 2048)
            ]
        ).numpy()
    model_mse = float(np.mean((flat - recon.reshape(len(val), -1)) ** 2))
    return {
        "available": True,
        "code_size": k,
        "n_train": len(train),
        "n_val": len(val),
        "pca_mse": pca_mse,
        "model_mse": model_mse,
        "mean_mse": mean_mse,
        "ratio": model_mse / pca_mse if pca_mse > 0 else math.inf,
        "explained_variance": float(np.sum(pca.explained)),
    }


# ---------------------------------------------------------------- the page


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;
background:#fafafa}main{max-width:1100px;margin:0 auto;padding:1.5rem}
h1{margin:.2rem 0 0}h2{border-bottom:1px solid #ddd;padding-bottom:.3rem;margin-top:2rem}
.sub{color:#666;margin:.2rem 0 1rem}table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:.8rem}.card{background:#fff;border:1px solid #ddd;
border-radius:6px;padding:.6rem .9rem;min-width:10rem}.card b{display:block;font-size:1.3rem}
figure{margin:.8rem 0;background:#fff;border:1px solid #ddd;border-radius:6px;padding:.5rem;
display:inline-block;max-width:100%}figure img{max-width:100%;height:auto;display:block}
figcaption{color:#555;font-size:.85rem;margin-top:.3rem}.note{color:#8a6d3b;background:#fcf8e3;
border:1px solid #faebcc;padding:.5rem .8rem;border-radius:4px}code{font-size:.85rem}
"""


def _num(x: Any, digits: int = 5) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return "-" if not math.isfinite(x) else f"{x:.{digits}g}"
    return str(x)


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode()


def render(view: RunView) -> str:
    """The report page of ``view`` as one HTML string (``templates/report.html.j2``)."""
    s = view.settings
    model_dir = view.path / rf.MODEL_DIR
    model = load_model(model_dir) if (model_dir / "model.json").is_file() else None
    final = (view.summary or {}).get("final", {})
    plots = view.path / rf.PLOTS_DIR
    recon = plots / "reconstructions.png"
    notes = []
    if final.get("fallback") == "pca":
        notes.append(f"PCA fallback: {final.get('fallback_message')}.")
    if final.get("pca_note"):
        notes.append(f"PCA comparison: {final['pca_note']}.")
    context = {
        "css": markupsafe.Markup(_CSS),  # our own constant, not user data
        "name": view.path.name,
        "path": str(view.path),
        "s": s,
        "finished": view.finished,
        "cards": _cards(view, final),
        "top": [_candidate_row(i, r) for i, r in enumerate(top_candidates(view.rows))],
        "fitness_png": _b64(fitness_figure(view)),
        "recon_png": _b64(recon.read_bytes()) if recon.is_file() else None,
        "architecture": describe_spec(model.spec) if model is not None else None,
        "architecture_png": _b64(architecture_figure(model)) if model is not None else None,
        "extras": [
            (_b64((plots / name).read_bytes()), caption)
            for name, caption in EXTRA_PLOTS.items()
            if (plots / name).is_file()
        ],
        "pca_notes": notes,
        "collapse": _collapse_note(final),
        "pca": _pca_context(pca_comparison(view, model)),
        "settings": [[k, json.dumps(v)] for k, v in sorted(s.items())],
    }
    return _template().render(**context)


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("evoae.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("report.html.j2")


def _collapse_note(final: dict[str, Any]) -> str | None:
    """A VAE whose posterior collapsed: what the report says above everything else."""
    vae = final.get("vae") or {}
    if not vae.get("collapsed"):
        return None
    return (
        f"Posterior collapse: {vae.get('collapse_reason')}: samples and interpolations "
        "below barely depend on the code."
    )


def _cards(view: RunView, final: dict[str, Any]) -> list[tuple[str, str]]:
    """The headline figures at the top of the page."""
    s = view.settings
    best = view.best()
    no_pca = "pca_note" in final
    return [
        ("evaluations", str(len(view.rows))),
        ("trainings", str(len(view.trained))),
        ("best search fitness", _num(best.fitness if best else None)),
        (
            f"retrained val loss ({final.get('epochs', s.get('final_epochs'))} ep.)",
            _num(final.get("val_loss")),
        ),
        (
            f"PCA val loss ({s.get('code_size')} comp.)",
            "n/a" if no_pca else _num(final.get("pca_val_loss")),
        ),
        ("ratio to PCA", "n/a" if no_pca else _num(final.get("pca_ratio"), 4)),
        ("retrained test loss", _num(final.get("test_loss"))),
        *((k, str(v)) for k, v in summary_rows(final.get("vae"))),  # a VAE: collapse, NLL
        ("parameters", _num(final.get("params"))),
        ("wall time", f"{view.summary['seconds']:.1f} s" if view.summary else "-"),
    ]


def _candidate_row(i: int, r: Any) -> list[str]:
    return [
        str(i + 1),
        str(r.id),
        str(r.generation),
        _num(r.fitness),
        _num(r.train_loss),
        str(r.params),
        describe_spec(r.spec),
        _training(r.spec),
        f"{r.seconds:.2f}",
    ]


def _pca_context(cmp: dict[str, Any]) -> dict[str, Any]:
    """The PCA table's rows (model, PCA, the mean image) or why there is none."""
    if not cmp["available"]:
        return {"available": False, "reason": cmp["reason"]}
    k = cmp["code_size"]
    rows = [
        [f"best evolved model (code size {k})", _num(cmp["model_mse"]), _num(cmp["ratio"], 4)],
        [f"PCA, {k} components (fit on train)", _num(cmp["pca_mse"]), "1"],
        [
            "mean of the training rows (no code)",
            _num(cmp["mean_mse"]),
            _num(cmp["mean_mse"] / cmp["pca_mse"], 4),
        ],
    ]
    return {
        "available": True,
        "rows": rows,
        "n_val": cmp["n_val"],
        "n_train": cmp["n_train"],
        "explained": f"{cmp['explained_variance']:.1%}",
    }


def _training(spec: dict[str, Any]) -> str:
    return f"{spec.get('optimizer')} lr={spec.get('lr', 0):.3g} batch={spec.get('batch_size')}"


def write_report(run: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of ``run`` to ``out`` (default ``<run>/report.html``)."""
    view = read_run(run)
    path = Path(out) if out is not None else view.path / rf.REPORT
    if out is not None:
        rf.check_path(out, "--out")
    check_new_file(path)  # refused before the (slow) rendering: never over a user's file
    try:
        atomic_write_text(path, render(view))
    except OSError as e:
        raise EvoaeError(
            f"cannot write the report to {path} ({e.strerror}): choose another --out"
        ) from None
    return path
