"""``report.html``: one self-contained page about a run, and the run reader it is built on.

The page needs no network: CSS is inline, every figure is a PNG embedded as base64, and
there is no script. Sections: headline figures, the best candidate (one meaning of
"best" with :mod:`evoae.runs.best`: the returned model's candidate, its journal id, spec
and the epochs behind each figure), the best candidates, fitness over evaluations (log
axis; the PCA seed's best-so-far apart from the others'; failures marked off the scale),
the Pareto front for multi-objective strategies, learning curves when the journal has
them, originals against the model's and PCA's reconstructions, the best architecture as
a layer diagram, the family's extra plots (a VAE's prior samples, interpolation and
latent map), PCA at the same code size on the same data, and the settings by section
with the values left at their defaults folded away. A collapsed VAE is said so in one
sentence at the top.

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
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter  # noqa: E402
from torch import nn  # noqa: E402

from evoae.data import load_splits  # noqa: E402
from evoae.errors import EvoaeError  # noqa: E402
from evoae.evolution import STRATEGIES, make_options  # noqa: E402
from evoae.export import CodePart, DecoderPart, example_input, is_variational  # noqa: E402
from evoae.families import describe as describe_spec  # noqa: E402
from evoae.families.io import load_model  # noqa: E402
from evoae.models.pca import cached_pca_basis  # noqa: E402
from evoae.plots.figures import reconstruction_figure  # noqa: E402
from evoae.runs import folder as rf  # noqa: E402
from evoae.runs.atomic import atomic_write_text  # noqa: E402
from evoae.runs.best import Best, best_of, is_pca_seed  # noqa: E402
from evoae.runs.guard import check_new_file  # noqa: E402
from evoae.runs.reader import (  # noqa: E402
    RunView,
    check_data,
    pareto_front,
    read_run,
    top_candidates,
)
from evoae.runs.vae_text import collapse_text, summary_rows  # noqa: E402
from evoae.settings import SearchSettings  # noqa: E402

#: Plots a family's hook may leave in ``plots/``, with the caption the report gives them.
EXTRA_PLOTS = {
    "samples.png": "Samples from the prior N(0, I), decoded by the best model",
    "interpolation.png": "Latent interpolation between two held-out images",
    "latent.png": "Latent map of held-out data (first two dimensions or principal components)",
}
#: Rows of the validation split used for the PCA comparison (enough for stable figures).
PCA_MAX_ROWS = 20_000
#: Held-out images drawn with the model's and PCA's reconstructions.
EXAMPLES = 10


# ---------------------------------------------------------------- figures


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def fitness_axes(view: RunView, best: Best | None = None) -> tuple[plt.Figure, plt.Axes]:
    """Every trained candidate's search fitness over evaluations, on a log axis.

    The PCA seed (it starts where the others must train to) and the other candidates
    (from scratch, nonlinear, PCA-residual) get a best-so-far line each, so a seed that
    leads from the first evaluation cannot hide what the search found. Failed
    candidates are marked along the top edge (axes coordinates): they never stretch the
    fitness axis. ``best``'s candidate, the returned model's, is starred.
    """
    best = best_of(view) if best is None else best
    fig, ax = plt.subplots(figsize=(9.5, 4.0), dpi=100)
    hist = [h for h in view.history if _finite_all(h, ("median", "q25", "q75"))]
    if hist:
        ev = [h["evaluations"] for h in hist]
        ax.fill_between(ev, [h["q25"] for h in hist], [h["q75"] for h in hist], step="post",
                        alpha=0.2, color="tab:blue", label="population 25-75%")  # fmt: skip
        ax.step(ev, [h["median"] for h in hist], where="post", color="tab:blue", lw=1,
                label="population median")  # fmt: skip
    ok = [r for r in view.trained if r.status != "failed" and math.isfinite(r.fitness)]
    seeds = [r for r in ok if is_pca_seed(r)]
    others = [r for r in ok if not is_pca_seed(r)]
    if others:
        ax.scatter([r.id + 1 for r in others], [r.fitness for r in others], s=10,
                   color="0.45", alpha=0.7, label="candidate", zorder=3)  # fmt: skip
    if seeds:
        ax.scatter([r.id + 1 for r in seeds], [r.fitness for r in seeds], s=40, marker="D",
                   color="tab:purple", label="PCA seed", zorder=4)  # fmt: skip
    rows = [r for r in view.rows if r.status != "failed" and math.isfinite(r.fitness)]
    last = len(view.rows)
    for pick, colour, style, label in (
        (lambda r: not is_pca_seed(r), "tab:red", "-", "best so far (from scratch / nonlinear)"),
        (is_pca_seed, "tab:purple", "--", "best so far (PCA seed)"),
    ):
        xs, ys = _best_so_far([r for r in rows if pick(r)], last)
        if xs:
            ax.step(xs, ys, where="post", color=colour, ls=style, lw=2, label=label, zorder=5)
    if best.row is not None and math.isfinite(best.row.fitness):
        ax.scatter([best.row.id + 1], [best.row.fitness], s=160, marker="*", color="gold",
                   edgecolor="k", zorder=6,
                   label=f"returned model's candidate (eval {best.row.id})")  # fmt: skip
    failed = [r for r in view.trained if r.status == "failed" or not math.isfinite(r.fitness)]
    if failed:
        ax.scatter([r.id + 1 for r in failed], [0.97] * len(failed), marker="x",
                   color="tab:red", transform=ax.get_xaxis_transform(), clip_on=False,
                   label=f"failed ({len(failed)}, not on the fitness scale)")  # fmt: skip
    _log_axis(ax.yaxis, [r.fitness for r in ok] + [h[k] for h in hist for k in ("q25", "q75")])
    ax.set_xlabel("evaluations")
    rungs = any("rung" in r.terms for r in ok)  # ASHA: rows trained different epochs
    ax.set_ylabel(
        "search fitness (each at its rung's epochs)"
        if rungs
        else f"search fitness ({best.search_fidelity})"
    )
    ax.grid(alpha=0.3, which="both")
    if ok or hist or failed:
        _legend(ax)
    fig.tight_layout()
    return fig, ax


def _log_axis(axis: Any, values: list[float]) -> None:
    """A log scale for positive ``values``, its ticks as plain numbers (no 10^-2 factors)."""
    if not values or min(values) <= 0:
        return
    if axis.axis_name == "y":
        axis.axes.set_yscale("log")
    else:
        axis.axes.set_xscale("log")
    plain = FuncFormatter(lambda v, _pos: f"{v:.4g}" if v < 1e4 else f"{v:,.0f}")
    axis.set_major_formatter(plain)
    axis.set_minor_formatter(plain if max(values) / min(values) < 10 else NullFormatter())


def _legend(ax: plt.Axes) -> None:
    """The legend beside the plot, where it hides no point."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def fitness_figure(view: RunView, best: Best | None = None) -> bytes:
    """:func:`fitness_axes` as a PNG."""
    return _png(fitness_axes(view, best)[0])


def _finite_all(h: dict[str, Any], keys: tuple[str, ...]) -> bool:
    return all(isinstance(h.get(k), int | float) and math.isfinite(h[k]) for k in keys)


def _best_so_far(rows: list[Any], last: int) -> tuple[list[int], list[float]]:
    """Steps of the running minimum of ``rows``' fitness, drawn on to evaluation ``last``."""
    best, xs, ys = math.inf, [], []
    for r in sorted(rows, key=lambda r: r.id):
        if r.fitness < best:
            best = r.fitness
            xs.append(r.id + 1)
            ys.append(best)
    if xs and xs[-1] < last:
        xs.append(last)
        ys.append(best)
    return xs, ys


def front_figure(view: RunView, best: Best) -> bytes | None:
    """The Pareto front of (search fitness, parameters) over every trained candidate;
    None when no candidate trained."""
    ok = [r for r in view.trained if r.status != "failed" and math.isfinite(r.fitness)]
    front = pareto_front(view.rows)
    if not front:
        return None
    fig, ax = plt.subplots(figsize=(9.5, 4.0), dpi=100)
    ax.scatter([r.params for r in ok], [r.fitness for r in ok], s=10, color="0.55",
               alpha=0.7, label="candidate")  # fmt: skip
    ax.step([r.params for r in front], [r.fitness for r in front], where="post",
            color="tab:red", lw=1.5, marker="o", ms=5,
            label=f"Pareto front ({len(front)} members)")  # fmt: skip
    for n, r in enumerate(front, 1):
        ax.annotate(str(n), (r.params, r.fitness), textcoords="offset points", xytext=(4, 4),
                    fontsize=7, color="tab:red")  # fmt: skip
    _log_axis(ax.xaxis, [float(r.params) for r in ok])
    _log_axis(ax.yaxis, [r.fitness for r in ok])
    ax.set_xlabel("parameters")
    ax.set_ylabel(f"validation loss (search, {best.search_fidelity})")
    ax.grid(alpha=0.3, which="both")
    _legend(ax)
    fig.tight_layout()
    return _png(fig)


def curves_figure(view: RunView, n: int = 3) -> bytes | None:
    """Learning curves (per-epoch training and validation loss, as the journal records
    them) of the final training and of the ``n`` best candidates; None without any."""
    drawn: list[tuple[str, Any, str | None]] = []
    if view.final_curve is not None:
        ev, curve = view.final_curve
        who = f" (eval {ev})" if ev >= 0 else ""
        drawn.append((f"final training{who}", curve, "tab:red"))
    for r in top_candidates(view.rows, n):
        if r.id in view.curves:
            drawn.append((f"eval {r.id} (search)", view.curves[r.id], None))
    drawn = [d for d in drawn if any(p[1] is not None or p[2] is not None for p in d[1])]
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(9.5, 4.0), dpi=100)
    values: list[float] = []
    for label, curve, colour in drawn:
        for col, style, what in ((1, "-", "train"), (2, "--", "val")):
            pts = [(p[0], p[col]) for p in curve if p[col] is not None]
            if not pts:
                continue
            values += [v for _, v in pts]
            (line,) = ax.plot(*zip(*pts, strict=True), ls=style, color=colour,
                              marker="." if len(pts) < 3 else None,
                              label=f"{label} {what}")  # fmt: skip
            colour = line.get_color()  # train and val of one training share a colour
    _log_axis(ax.yaxis, values)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3, which="both")
    _legend(ax)
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
    pca = cached_pca_basis(train, k)
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
    n = min(EXAMPLES, len(val))
    return {
        "examples": {
            "originals": val[:n],
            "model": recon[:n],
            "pca": pca.reconstruct(flat[:n]).reshape(val[:n].shape),
            "image_shape": splits.val.image_shape,
        },
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
    best = best_of(view)
    cmp = pca_comparison(view, model)
    plots = view.path / rf.PLOTS_DIR
    notes = []
    if final.get("fallback") == "pca":
        notes.append(f"PCA fallback: {final.get('fallback_message')}.")
    if final.get("pca_note") and not cmp["available"]:
        notes.append(f"PCA comparison: {final['pca_note']}.")
    elif final.get("pca_note"):  # a loss other than MSE (a VAE's neg-ELBO): say what is compared
        notes.append(
            "The search's loss is not a mean squared error, so the summary has no PCA ratio; "
            "the table below compares plain reconstruction MSE instead (the model decodes "
            "its code: a VAE, its posterior mean)."
        )
    if cmp["available"] and cmp["model_mse"] > cmp["mean_mse"]:
        notes.append(
            "The model reconstructs worse than the mean training image: predicting that "
            "one image for every input would do better than its code."
        )
    strategy = STRATEGIES.get(str(s.get("strategy")))
    front_png = None
    if strategy is not None and "params" in strategy.objectives:
        front_png = front_figure(view, best)
    curves_png = curves_figure(view)
    context = {
        "css": markupsafe.Markup(_CSS),  # our own constant, not user data
        "name": view.path.name,
        "path": str(view.path),
        "s": s,
        "finished": view.finished,
        "cards": _cards(view, final, best, cmp),
        "best": _best_context(best),
        "top": [
            _candidate_row(i, r, best.evaluation if view.finished else None)
            for i, r in enumerate(top_candidates(view.rows))
        ],
        "fitness_png": _b64(fitness_figure(view, best)),
        "fitness_caption": _fitness_caption(view, best),
        "front_png": _b64(front_png) if front_png is not None else None,
        "curves_png": _b64(curves_png) if curves_png is not None else None,
        "recon": _recon_context(view, final, best, cmp, plots / "reconstructions.png"),
        "architecture": describe_spec(model.spec) if model is not None else None,
        "architecture_png": _b64(architecture_figure(model)) if model is not None else None,
        "extras": [
            (_b64((plots / name).read_bytes()), caption)
            for name, caption in EXTRA_PLOTS.items()
            if (plots / name).is_file()
        ],
        "pca_notes": notes,
        "collapse": collapse_sentence(final),
        "pca": _pca_context(cmp),
        "settings": settings_sections(view.raw_settings),
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


def _best_context(best: Best) -> dict[str, Any]:
    """The best candidate in words: which one, its spec and at what fidelity."""
    row = best.row
    return {
        "search": best.search_text(),
        "final": best.final_text(),
        "fidelity": best.search_fidelity,
        "architecture": describe_spec(row.spec) if row is not None else None,
        "leader": best.leader_note,
    }


def _fitness_caption(view: RunView, best: Best) -> str:
    text = (
        f"Search fitness of every trained candidate after {best.search_fidelity} (log "
        "axis). The red line is the best so far of the candidates trained from scratch "
        "(nonlinear or PCA-residual); the purple dashed line the PCA seed's, which starts "
        "from PCA's solution; the star the candidate whose model the run returns. The "
        "band is the population's 25-75% spread after each generation."
    )
    failed = sum(1 for r in view.trained if r.status == "failed" or not math.isfinite(r.fitness))
    if failed:
        text += f" {failed} failed candidate(s) are marked x along the top edge."
    return text


def _recon_context(
    view: RunView, final: dict[str, Any], best: Best, cmp: dict[str, Any], saved: Path
) -> dict[str, Any] | None:
    """Originals against the model's and PCA's reconstructions (drawn here from the
    run's data), else the run's own ``plots/reconstructions.png``; None before both."""
    epochs = final.get("epochs")
    trained = f"{epochs} epoch{'' if epochs == 1 else 's'}" if isinstance(epochs, int) else "?"
    who = f"evaluation {best.evaluation}" if best.evaluation is not None else "the best"
    if cmp["available"]:
        ex = cmp["examples"]
        k = cmp["code_size"]
        labels = {
            f"best model ({who}), after {trained} of final training": ex["model"],
            f"PCA, {k} components": ex["pca"],
        }
        fig = reconstruction_figure(ex["originals"], labels, image_shape=ex["image_shape"])
        caption = (
            f"Held-out originals (top), the best model's reconstructions ({who}, {trained} "
            f"of final training; a VAE: its posterior mean decoded) and PCA's with {k} "
            "components, fit on the training split (bottom)."
        )
        return {"png": _b64(_png(fig)), "caption": caption, "epochs": epochs}
    if saved.is_file():
        caption = (
            f"Held-out originals (top) and the best model's reconstructions ({who}, "
            f"{trained} of final training) (bottom); PCA's are not shown: "
            f"{cmp['reason']}."
        )
        return {"png": _b64(saved.read_bytes()), "caption": caption, "epochs": epochs}
    return None


def collapse_sentence(final: dict[str, Any]) -> str | None:
    """A VAE whose posterior collapsed, in one plain sentence; None otherwise."""
    vae = final.get("vae") if isinstance(final.get("vae"), dict) else {}
    return collapse_text(vae)


def _cards(
    view: RunView, final: dict[str, Any], best: Best, cmp: dict[str, Any]
) -> list[tuple[str, str]]:
    """The headline figures at the top of the page."""
    s = view.settings
    k = s.get("code_size")
    if final.get("pca_val_loss") is not None:
        pca = [
            (f"PCA val loss ({k} comp.)", _num(final.get("pca_val_loss"))),
            ("ratio to PCA", _num(final.get("pca_ratio"), 4)),
        ]
    elif cmp["available"]:  # a loss other than MSE: the report's own MSE comparison
        pca = [
            (f"PCA val MSE ({k} comp.)", _num(cmp["pca_mse"])),
            ("model's val MSE / PCA's", _num(cmp["ratio"], 4)),
        ]
    else:
        pca = [(f"PCA val loss ({k} comp.)", "n/a"), ("ratio to PCA", "n/a")]
    return [
        ("evaluations", str(len(view.rows))),
        ("trainings", str(len(view.trained))),
        ("best candidate", best.search_text()),
        ("retrained val loss", best.final_text()),
        *pca,
        ("retrained test loss", _num(final.get("test_loss"))),
        *((k, str(v)) for k, v in summary_rows(final.get("vae"))),  # a VAE: collapse, NLL
        ("parameters", _num(final.get("params"))),
        ("wall time", f"{view.summary['seconds']:.1f} s" if view.summary else "-"),
    ]


def _candidate_row(i: int, r: Any, returned: int | None) -> list[str]:
    """One row of the best-candidates table; the returned model's candidate is starred."""
    return [
        str(i + 1),
        f"{r.id} \u2605" if r.id == returned else str(r.id),
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


#: The sections of ``settings.json`` in the order the report shows them.
SETTING_SECTIONS = ("data", "space", "strategy", "training", "fidelity", "execution")


def default_settings(strategy: str) -> dict[str, dict[str, Any]]:
    """Every setting's default by section (the strategy's options under ``strategy``)."""
    out = SearchSettings().to_dict()
    options: dict[str, Any] = {}
    if strategy in STRATEGIES:
        options = dataclasses.asdict(make_options(strategy, {}))
    out["strategy"] = {"name": None, **options}  # the name itself is always shown
    return out


def settings_sections(stored: dict[str, Any]) -> list[dict[str, Any]]:
    """``settings.json`` by section: the values set (not their defaults) shown, the
    defaults listed apart (folded away on the page). Flat settings (evoae 0.1): one
    section."""
    if not isinstance(stored.get("data"), dict):
        return [_section("settings", stored, {})]
    strat = stored.get("strategy") if isinstance(stored.get("strategy"), dict) else {}
    name = str(strat.get("name", ""))
    try:
        defaults = default_settings(name)
    except EvoaeError:
        defaults = {}
    out = []
    for section in SETTING_SECTIONS:
        values = stored.get(section)
        if section == "strategy":
            opts = strat.get("options") if isinstance(strat.get("options"), dict) else {}
            values = {"name": name, **opts}
        if isinstance(values, dict):
            out.append(_section(section, values, defaults.get(section) or {}))
    out.append(_section("run", {"seed": stored.get("seed", 0)}, {"seed": 0}))
    return out


def _section(title: str, values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    changed, default = [], []
    for k, v in values.items():
        row = [k, json.dumps(v)]
        (default if k in defaults and defaults[k] == v else changed).append(row)
    return {"title": title, "changed": changed, "defaults": default}


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
