"""The report says what was trained: one best everywhere, captions from the run, a log
fitness axis, posterior collapse flagged, settings folded, the Pareto front drawn."""

from __future__ import annotations

import dataclasses
import html
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

import evoae
from evoae.cli import main
from evoae.cli.search import print_summary
from evoae.models.vae import KL_DIM_MIN, final_figures, kl_per_dim, kl_verdict
from evoae.report.html import fitness_axes, render, settings_sections, write_report
from evoae.runs.best import best_of
from evoae.runs.reader import RunView, read_run
from evoae.settings import SearchSettings
from evoae.training import train_candidate


def _report(run: Path, tmp_path: Path) -> str:
    return write_report(run, tmp_path / f"{run.name}.html").read_text()


def _visible(text: str) -> str:
    """The page without its folded ``<details>`` blocks."""
    return re.sub(r"<details.*?</details>", "", text, flags=re.S)


def test_one_best_in_summary_runs_show_and_report(dense_result, tmp_path, capsys):
    run = dense_result.run_dir
    summary = json.loads((run / "summary.json").read_text())
    best = best_of(read_run(run))
    assert best.evaluation == summary["best_evaluation"] == dense_result.best_evaluation
    assert best.fitness == summary["best_fitness"]
    assert best.row.spec == summary["best_spec"]
    line = best.search_text()
    assert line.startswith(f"evaluation {best.evaluation}: {summary['best_fitness']:.5f}")
    assert "(search, 1 epoch)" in line  # the fidelity: the search's epochs
    assert best.final_text() == f"{summary['final']['val_loss']:.5f} (final training, 2 epochs)"
    print_summary(dense_result)
    cli = capsys.readouterr().out
    assert main(["runs", "show", str(run)]) == 0
    shown = capsys.readouterr().out
    assert main(["runs", "show", str(run), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    page = html.unescape(_report(run, tmp_path))
    for text in (cli, shown, page):
        assert line in " ".join(text.split()), text[:2000]
        assert best.final_text() in " ".join(text.split())
    assert record["best_evaluation"] == best.evaluation
    assert record["best_fitness"] == pytest.approx(summary["best_fitness"])
    assert f'<td class="num">{best.evaluation} \u2605</td>' in page  # starred in the table
    header = re.search(r"<p id='best'>(.*?)</p>", page, re.S).group(1)
    assert line in header and "final training, 2 epochs" in header


def test_pca_seed_leader_is_shown_apart(dense_run):
    """The issue's run: the PCA seed leads the journal, a from-scratch candidate is
    returned. The best is the returned one everywhere; the seed is named apart and
    has a best-so-far line of its own."""
    view = read_run(dense_run)
    rows = list(view.rows)
    seed = next(r for r in rows if r.spec.get("init") == "pca")
    other = next(r for r in rows if r.spec.get("init") != "pca")
    low = min(r.fitness for r in rows)
    rows = [dataclasses.replace(seed, fitness=low / 2) if r.id == seed.id else r for r in rows]
    summary = dict(view.summary, best_evaluation=other.id, best_fitness=other.fitness)
    fake = dataclasses.replace(view, rows=rows, summary=summary)
    best = best_of(fake)
    assert best.evaluation == other.id and best.fitness == other.fitness
    assert best.leader.id == seed.id and "PCA seed" in best.leader_note
    fig, ax = fitness_axes(fake, best)
    labels = ax.get_legend_handles_labels()[1]
    assert "best so far (PCA seed)" in labels
    assert "best so far (from scratch / nonlinear)" in labels
    assert f"returned model's candidate (eval {other.id})" in labels
    text = html.unescape(render(fake))
    assert best.search_text() in text and best.leader_note in text


def test_fitness_axis_is_log_and_failures_do_not_squash_it(dense_run):
    view = read_run(dense_run)
    _, ax = fitness_axes(view)
    assert ax.get_yscale() == "log"
    top = ax.get_ylim()[1]
    worst = max(r.fitness for r in view.rows)
    assert top < 2 * worst
    # A failed candidate (its fitness stored far above the others, or infinite).
    failed = [
        dataclasses.replace(view.rows[-1], id=len(view.rows) + i, status="failed", fitness=f)
        for i, f in enumerate((1e6, float("inf")))
    ]
    _, ax2 = fitness_axes(dataclasses.replace(view, rows=view.rows + failed))
    assert ax2.get_yscale() == "log"
    assert ax2.get_ylim()[1] == pytest.approx(top, rel=0.05)  # not stretched to 1e6
    assert any(label.startswith("failed (2") for label in ax2.get_legend_handles_labels()[1])


def test_reconstruction_caption_uses_trained_epochs(dense_run, tmp_path):
    summary = json.loads((dense_run / "summary.json").read_text())
    trained = summary["final"]["epochs"]
    text = html.unescape(_report(dense_run, tmp_path))
    assert f"{trained} epochs of final training" in text
    # A final training that stopped early (a plateau, a time budget) trained fewer
    # epochs than final_epochs: the caption follows summary.json, not the settings.
    run = tmp_path / "early"
    shutil.copytree(dense_run, run)
    summary["final"]["epochs"] = 1
    (run / "summary.json").write_text(json.dumps(summary))
    text = html.unescape(write_report(run, tmp_path / "early.html").read_text())
    assert "1 epoch of final training" in text
    assert f"{trained} epochs of final training" not in text
    assert "PCA, 4 components" in text  # PCA's reconstructions beside the model's


def test_kl_measure_flags_a_vae_trained_with_a_huge_kl_weight(vae_run):
    """A real tiny conv-VAE trained with beta = 1e4 (no free bits, no warm-up): every
    latent's KL is pushed onto the prior, and the final figures say so. The same VAE
    with beta = 0 (nothing pulls it to the prior) is the control."""
    base = evoae.load_model(vae_run / "model").spec
    tiny = {"blocks": [[8, 3, 2, "relu", False]], "dense": 32, "lr": 0.01, "batch_size": 32}
    s = SearchSettings.from_dict(json.loads((vae_run / "settings.json").read_text()))
    data = s.load_splits()
    train, val = torch.as_tensor(data.train.x), torch.as_tensor(data.val.x)
    kls = {}
    for beta in (1e4, 0.0):
        spec = dict(base, **tiny, beta=beta, free_bits=0.0, kl_warmup=0)
        result, model = train_candidate(spec, train, val, epochs=5, seed=0)
        assert result.status == "ok"
        kls[beta] = kl = kl_per_dim(model, val)
        assert kl.shape == (spec["code_size"],)
        figures = final_figures(model, val, None, nll_samples=0)
        assert figures["kl_per_dim"] == pytest.approx(kl.tolist())
        assert figures["kl_threshold"] == KL_DIM_MIN
        if beta:
            assert figures["collapsed"]
            assert (
                "KL from the prior below 0.01 nats in 4 of 4 latent dimensions"
                in (figures["collapse_reason"])
            )
        else:
            assert "KL from the prior" not in (figures["collapse_reason"] or "")
    assert float(kls[1e4].max()) < KL_DIM_MIN < float(kls[0.0].min())


def test_kl_verdict_threshold():
    assert kl_verdict([0.5, 0.4, 0.001, 0.002]) is None  # half the dimensions carry KL
    assert "in 3 of 4" in kl_verdict([0.5, 0.001, 0.002, 0.0])
    assert kl_verdict([]) is None


def test_collapse_is_one_sentence_in_summary_runs_show_and_report(vae_result, tmp_path, capsys):
    run = vae_result.run_dir
    final = json.loads((run / "summary.json").read_text())["final"]
    assert final["vae"]["collapsed"]  # a 1-epoch VAE on 300 images: nothing learned
    assert len(final["vae"]["kl_per_dim"]) == final["vae"]["code_size"]
    print_summary(vae_result)
    cli = " ".join(capsys.readouterr().out.split())
    assert main(["runs", "show", str(run)]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert main(["runs", "show", str(run), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    text = html.unescape(_report(run, tmp_path))
    sentence = re.search(r"<p class='note' id='collapse'>(.*?)</p>", text, re.S).group(1)
    assert sentence.startswith("Posterior collapse: ") and sentence.count(". ") == 0
    assert sentence == record["collapse"]
    assert sentence in cli and sentence in shown
    # The VAE's PCA section: the report's own MSE comparison, no "n/a" beside it.
    assert "PCA comparison: n/a" not in text
    assert "ratio to PCA" in text and "PCA, 4 components" in text
    # Its table shows it worse than the mean image (0.14 against 0.07 MSE): said in words.
    assert "The model reconstructs worse than the mean training image" in text


def test_settings_grouped_and_defaults_folded(dense_run, tmp_path):
    stored = json.loads((dense_run / "settings.json").read_text())
    sections = settings_sections(stored)
    titles = [s["title"] for s in sections]
    assert titles == ["data", "space", "strategy", "training", "fidelity", "execution", "run"]
    by = {s["title"]: s for s in sections}
    assert ["generations", "3"] in by["strategy"]["changed"]
    assert ["final_epochs", "2"] in by["training"]["changed"]
    assert ["device", json.dumps(stored["execution"]["device"])] in by["execution"]["defaults"]
    for name in ("data", "space", "training", "fidelity", "execution"):  # every one shown
        shown = [k for k, _ in by[name]["changed"] + by[name]["defaults"]]
        assert sorted(shown) == sorted(stored[name])
    text = _report(dense_run, tmp_path)
    visible = _visible(text)
    assert "microbial" in visible  # the strategy's name is always shown
    assert "<td>generations</td>" in visible and "<td>device</td>" not in visible
    assert "<td>device</td>" in text  # folded, not dropped
    assert text.count("<details") >= 5 and "at their default</summary>" in text


def test_nsga2_report_draws_the_front(nsga2_run, dense_run, tmp_path):
    text = _report(nsga2_run, tmp_path)
    assert "<h2>Pareto front</h2>" in text
    # fitness, front, curves, reconstructions, layers
    assert text.count('src="data:image/png;base64,') == 5
    assert "<h2>Pareto front</h2>" not in _report(dense_run, tmp_path)


def test_no_view_is_written_into_the_run(dense_run, tmp_path):
    """Rendering reads the run: nothing in the run folder changes."""
    before = {p: p.stat().st_mtime_ns for p in dense_run.rglob("*") if p.is_file()}
    render(read_run(dense_run))
    after = {p: p.stat().st_mtime_ns for p in dense_run.rglob("*") if p.is_file()}
    assert before == after


def test_unfinished_view_names_the_journal_best(dense_run):
    view = read_run(dense_run)
    unfinished = RunView(view.path, view.settings, view.rows, None, view.history)
    best = best_of(unfinished)
    assert best.row.fitness == min(r.fitness for r in view.rows if r.status != "failed")
    assert best.final_text() == "-" and best.leader is None


def test_learning_curves_in_the_report(dense_run, tmp_path):
    """The journal's learning curves: the final training's and the best candidates'."""
    view = read_run(dense_run)
    assert view.final_curve is not None, "a finished run records its final training's curve"
    ev, curve = view.final_curve
    summary = json.loads((dense_run / "summary.json").read_text())
    assert ev == summary["best_evaluation"]
    assert max(p[0] for p in curve) == summary["final"]["epochs"]  # the epochs trained
    text = _report(dense_run, tmp_path)
    assert "<h2>Learning curves</h2>" in text
    assert text.count('src="data:image/png;base64,') == 4  # fitness, curves, recon, layers


@pytest.mark.parametrize("bad", ["7", True, -1, 1.5])
def test_a_damaged_best_evaluation_is_refused_in_one_line(dense_run, tmp_path, bad):
    run = tmp_path / "damaged"
    shutil.copytree(dense_run, run)
    summary = json.loads((run / "summary.json").read_text())
    summary["best_evaluation"] = bad
    (run / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(evoae.EvoaeError, match="best_evaluation") as e:
        read_run(run)
    assert "\n" not in str(e.value)


def test_an_unknown_best_evaluation_falls_back_to_best_genome(dense_run, tmp_path):
    run = tmp_path / "unknown"
    shutil.copytree(dense_run, run)
    summary = json.loads((run / "summary.json").read_text())
    expected = summary.pop("best_evaluation")
    summary["best_evaluation"] = 10**6  # no such row: best_genome.json decides
    (run / "summary.json").write_text(json.dumps(summary))
    assert best_of(read_run(run)).evaluation == expected


def test_learning_curves_figure_only_with_points(dense_run):
    """No curve with a point (a run made before curves were recorded): no section."""
    view = read_run(dense_run)
    bare = dataclasses.replace(view, curves={}, final_curve=None)
    assert "<h2>Learning curves</h2>" not in render(bare)
    gaps = dataclasses.replace(view, curves={}, final_curve=(-1, [(1, None, None)]))
    assert "<h2>Learning curves</h2>" not in render(gaps)
    only = dataclasses.replace(view, curves={}, final_curve=(-1, [(0, None, 0.1), (1, 0.08, 0.07)]))
    assert "<h2>Learning curves</h2>" in render(only)
