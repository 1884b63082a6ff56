"""The HTML report (checked in headless Chromium) and ``evoae runs list|show``.

Browser check: the test copies the report and injects, first thing in ``<head>``, a
script that records ``error`` events (script errors and failed resource loads, caught in
the capture phase) and ``console.error`` calls, and on ``load`` writes into the DOM a JSON
verdict: how many ``<img>`` there are and which have ``naturalWidth == 0``. Chromium runs
headless with ``--dump-dom`` (the DOM after load) and ``--enable-logging=stderr``, whose
console lines are also searched for "Uncaught". A second run takes the screenshot. No
Python dependency is needed; a negative control proves the harness catches a broken
image and a script error.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA

import evoae
from evoae.cli import main
from evoae.report.html import diagram_layers, pca_comparison, write_report
from evoae.runs.reader import read_run, top_candidates
from evoae.settings import SearchSettings

REPO = Path(__file__).resolve().parents[2]
#: The learning-curve figure: on every page of a run whose journal records curves.
CURVES = 1
ARTIFACTS = REPO / "artifacts"

_PROBE = """<script>
window.__errs = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  window.__errs.push(e.message || ('failed to load ' + (t && (t.alt || t.src || t.tagName))));
}, true);
var __ce = console.error;
console.error = function () {
  window.__errs.push(Array.prototype.join.call(arguments, ' '));
  __ce.apply(console, arguments);
};
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  var pre = document.createElement('pre');
  pre.id = 'evoae-check';
  pre.textContent = JSON.stringify({images: imgs.length,
    broken: broken.map(function (i) { return i.alt; }), errors: window.__errs});
  document.body.appendChild(pre);
});
</script>"""


@pytest.fixture(scope="session")
def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    reason = "Chromium not installed: apt-get install -y chromium chromium-driver"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required when CI=true)")
    pytest.skip(reason)


def browse(chromium: str, page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *extra,
        page.resolve().as_uri(),
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def check_in_browser(chromium: str, report: Path, tmp_path: Path) -> dict:
    """Load ``report`` (with the probe injected) and return the probe's verdict."""
    page = tmp_path / f"probe-{report.stem}.html"
    text = report.read_text()
    page.write_text(text.replace("<head>", "<head>" + _PROBE, 1))
    done = browse(
        chromium,
        page,
        tmp_path / "profile-dom",
        "--dump-dom",
        "--virtual-time-budget=10000",
        "--enable-logging=stderr",
        "--v=0",
    )
    found = re.search(r'<pre id="evoae-check">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the probe did not report (rc {done.returncode}): {done.stderr[-2000:]}"
    verdict = json.loads(html.unescape(found.group(1)))
    verdict["uncaught"] = [
        line for line in done.stderr.splitlines() if "CONSOLE" in line and "Uncaught" in line
    ]
    return verdict


def screenshot(chromium: str, report: Path, tmp_path: Path, name: str) -> Path:
    """A full-page-ish screenshot, kept in artifacts/ (git-ignored) and tmp_path."""
    shot = tmp_path / name
    browse(
        chromium,
        report,
        tmp_path / "profile-shot",
        f"--screenshot={shot}",
        "--window-size=1200,4000",
    )
    assert shot.is_file() and shot.stat().st_size > 10_000
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / name)
    return shot


def test_probe_catches_broken_images_and_errors(chromium, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><head><title>bad</title></head><body>"
        '<img alt="broken" src="data:image/png;base64,bm90IGEgcG5n">'
        "<script>undefinedFunction();</script></body></html>"
    )
    verdict = check_in_browser(chromium, bad, tmp_path)
    assert verdict["images"] == 1 and verdict["broken"] == ["broken"]
    assert any("undefinedFunction" in e for e in verdict["errors"])
    assert any("undefinedFunction" in line for line in verdict["uncaught"])  # stderr log too


def test_dense_report_in_chromium(chromium, dense_run, tmp_path):
    assert main(["report", str(dense_run)]) == 0
    report = dense_run / "report.html"
    verdict = check_in_browser(chromium, report, tmp_path)
    # fitness curve, reconstructions, architecture
    assert verdict == {"images": 3 + CURVES, "broken": [], "errors": [], "uncaught": []}
    shot = screenshot(chromium, report, tmp_path, "report-dense.png")
    pixels = __import__("matplotlib.image", fromlist=["imread"]).imread(shot)
    assert pixels.std() > 0.05  # a rendered page, not a blank one


def test_vae_report_in_chromium(chromium, vae_run, tmp_path):
    report = write_report(vae_run)
    text = report.read_text()
    for caption in ("Samples from the prior", "Latent map", "Latent interpolation"):
        assert caption in text
    verdict = check_in_browser(chromium, report, tmp_path)
    assert verdict == {"images": 6 + CURVES, "broken": [], "errors": [], "uncaught": []}
    screenshot(chromium, report, tmp_path, "report-vae.png")


def test_nsga2_report_in_chromium(chromium, nsga2_run, tmp_path):
    report = write_report(nsga2_run, tmp_path / "nsga2.html")
    verdict = check_in_browser(chromium, report, tmp_path)
    # fitness curve, Pareto front, reconstructions, architecture
    assert verdict == {"images": 4 + CURVES, "broken": [], "errors": [], "uncaught": []}
    screenshot(chromium, report, tmp_path, "report-nsga2.png")


def test_diagram_layers(dense_run, vae_run):
    dense = evoae.load_model(dense_run / "model")
    layers = diagram_layers(dense)
    roles = [layer.role for layer in layers]
    assert roles[0] == "input" and roles.count("code") == 1
    code = layers[roles.index("code")]
    assert code.shape == (dense.spec["code_size"],)
    assert layers[-1].shape == (dense.spec["input_dim"],) and layers[-1].role == "decoder"
    hidden = [w for w, _ in dense.spec["hidden"]]
    assert [layer.shape[0] for layer in layers[1 : roles.index("code")]] == hidden
    vae = evoae.load_model(vae_run / "model")
    layers = diagram_layers(vae)
    heads = [layer for layer in layers if layer.role == "code"]
    assert [h.kind for h in heads] == ["mean head", "log-var head"]
    assert layers[-1].shape == tuple(vae.spec["input_shape"])


def test_report_is_self_contained(dense_run):
    text = write_report(dense_run).read_text()
    assert "<script" not in text.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "url(" not in text and "@import" not in text
    assert text.count('src="data:image/png;base64,') == 3 + CURVES
    for heading in (
        "Best candidates",
        "Fitness over evaluations",
        "Originals and reconstructions",
        "Best architecture",
        "Against PCA",
        "Settings",
    ):
        assert f"<h2>{heading}</h2>" in text


def test_report_tables_match_the_run(dense_run):
    text = write_report(dense_run).read_text()
    view = read_run(dense_run)
    summary = json.loads((dense_run / "summary.json").read_text())
    best = top_candidates(view.rows, 1)[0]
    # The returned model's candidate: the best, or (when the PCA seed led the search) the
    # best trained from scratch, if it retrained better.
    assert summary["best_fitness"] in {r.fitness for r in view.rows}
    assert best.fitness <= summary["best_fitness"]
    assert f"{best.fitness:.5g}" in text
    assert f"{summary['final']['val_loss']:.5g}" in text
    # The PCA figures, recomputed independently: same data, same code size.
    settings = SearchSettings.from_dict(json.loads((dense_run / "settings.json").read_text()))
    splits = settings.load_splits()
    train = splits.train.x.reshape(len(splits.train), -1)
    val = splits.val.x.reshape(len(splits.val), -1)
    pca = PCA(n_components=settings.space.code_size).fit(train)
    pca_mse = np.mean((val - pca.inverse_transform(pca.transform(val))) ** 2)
    model = evoae.load_model(dense_run / "model")
    with torch.no_grad():
        model_mse = torch.mean(
            (model.reconstruct(torch.as_tensor(val)) - torch.as_tensor(val)) ** 2
        )
    cmp = pca_comparison(view, model)
    assert cmp["pca_mse"] == pytest.approx(pca_mse, rel=1e-5)
    assert cmp["model_mse"] == pytest.approx(float(model_mse), rel=1e-5)
    assert f"{cmp['pca_mse']:.5g}" in text and f"{cmp['model_mse']:.5g}" in text


def test_in_memory_run_says_data_unavailable(tmp_path):
    X = load_digits().data[:200]
    evoae.EvolvedAutoencoder(
        code_size=3,
        strategy="microbial",
        population=2,
        generations=0,
        epochs=1,
        final_epochs=1,
        random_state=0,
        run_dir=tmp_path / "mem",
    ).fit(X)
    text = write_report(tmp_path / "mem", tmp_path / "r.html").read_text()
    assert "PCA comparison unavailable: the run was made from in-memory data" in text


def test_unfinished_run_still_reports(dense_run, tmp_path):
    run = tmp_path / "unfinished"
    shutil.copytree(dense_run, run)
    for name in ("summary.json", "model", "plots", "report.html"):
        p = run / name
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    text = write_report(run).read_text()
    assert "unfinished: figures so far" in text
    assert "No saved model yet" in text and "PCA comparison unavailable" in text
    assert (
        text.count("data:image/png;base64,") == 1 + CURVES
    )  # the fitness curve from the checkpoint


def test_runs_list_and_show(dense_run, vae_run, capsys):
    folder = dense_run.parent
    assert main(["runs", "list", str(folder), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [Path(r["run"]).name for r in records] == ["dense"]
    summary = json.loads((dense_run / "summary.json").read_text())
    r = records[0]
    assert r["state"] == "finished" and r["evaluations"] == summary["n_evaluations"]
    assert r["best_fitness"] == pytest.approx(summary["best_fitness"])
    assert r["test_loss"] == pytest.approx(summary["final"]["test_loss"])
    assert main(["runs", "list", str(folder)]) == 0
    table = capsys.readouterr().out
    assert "dense" in table and "digits" in table and "finished" in table
    assert main(["runs", "show", str(vae_run), "--json", "--top", "1"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["model"] == "conv-vae" and len(shown["top"]) == 1
    # best_fitness is the returned model's candidate: one of the final stage's finalists,
    # not always the journal's top row.
    assert shown["top"][0]["fitness"] <= shown["best_fitness"] * (1 + 1e-9)
    assert main(["runs", "show", str(dense_run)]) == 0
    out = capsys.readouterr().out
    assert "best candidate" in out and f"{summary['best_fitness']:.5f}" in out


@pytest.mark.parametrize(
    "argv",
    [["report", "{tmp}"], ["runs", "show", "{tmp}"], ["runs", "list", "{tmp}/missing"]],
)
def test_cli_errors(argv, tmp_path, capsys):
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("evoae: error: ") and err.count("\n") == 1
