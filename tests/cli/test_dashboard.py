"""``evoae dashboard``: the Optuna mirror of a run's journal and optuna-dashboard on it.

The mirror is checked against the journal row by row (parameters, values, states, user
attributes, intermediate values), rebuilt when stale, kept out of runs evoae may not
write; the server is loaded in headless Chromium (driven through chromedriver's
WebDriver protocol, :mod:`webdriver`) on a finished run and on a search that is still
running (stopped with SIGSTOP after its third journal row, then let go), and the study,
its trials and a learning curve are found on the page. Screenshots go to
``artifacts/screenshots/`` (git-ignored).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import socket
import sqlite3
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import TINY_SEARCH, start_cli

import evoae
from evoae.cli import main
from evoae.errors import EvoaeError
from evoae.runs import folder as rf
from evoae.runs.journal import Journal, Row
from evoae.runs.killpoints import SIGNAL_ENV

optuna = pytest.importorskip("optuna")
pytest.importorskip("optuna_dashboard")

from evoae.report import dashboard as dash  # noqa: E402
from evoae.report import optuna_mirror as om  # noqa: E402


@pytest.fixture(autouse=True)
def cache_in_tmp(monkeypatch, tmp_path):
    """The cache folder inside the test's tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dash") / "finished"
    evoae.search("digits", out=out, **{**TINY_SEARCH, "epochs": 3})  # curves of 3 points
    return out


@pytest.fixture
def run(finished, tmp_path) -> Path:
    """A private copy of the finished run (tests change it)."""
    dst = tmp_path / "runs" / "tiny"
    shutil.copytree(finished, dst)
    return dst


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by relative path -> SHA-256 of its bytes."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def journal(run: Path) -> tuple[list[Row], dict]:
    with Journal(run / rf.JOURNAL, readonly=True) as j:
        return list(j.rows()), j.curves("search")


def flat(genome: dict) -> dict:
    out = {}
    for k, v in genome.items():
        if isinstance(v, list):
            out.update({f"{k}.{i}": x for i, x in enumerate(v)})
        else:
            out[k] = v
    return out


def check_study(study, rows: list[Row], curves: dict) -> None:
    """One trial per evaluation, in order, with its genes, fitness and learning curve."""
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == len(rows) > 0
    for t, r in zip(trials, rows, strict=True):
        assert t.number == r.id and t.user_attrs["eval_id"] == r.id
        assert t.params == flat(r.genome)
        for name, value in t.params.items():
            assert t.distributions[name]._contains(t.distributions[name].to_internal_repr(value))
        assert t.user_attrs["status"] == r.status and t.user_attrs["spec"] == r.spec
        assert t.user_attrs["params"] == r.params and t.user_attrs["terms"] == r.terms
        assert t.user_attrs["seconds"] == pytest.approx(r.seconds)
        assert t.duration.total_seconds() == pytest.approx(r.seconds, abs=1e-3)
        if r.status == "failed":
            assert t.state == optuna.trial.TrialState.FAIL and t.values is None
        else:
            assert t.state == optuna.trial.TrialState.COMPLETE
            assert t.values[0] == pytest.approx(r.fitness)
        expected = {e: v for e, _, v in curves.get(r.id, []) if v is not None}
        assert t.intermediate_values == pytest.approx(expected)


def load(path: Path, name: str):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{path}")


# ---------------------------------------------------------------- the mirror


def test_mirror_has_one_trial_per_evaluation(run, capsys):
    assert main(["dashboard", str(run), "--mirror-only"]) == 0
    out = capsys.readouterr().out
    mirror = run / om.MIRROR
    assert out.strip() == f"{mirror}  (rebuilt)"
    rows, curves = journal(run)
    assert curves, "no learning curve to mirror"
    study = load(mirror, "tiny")
    check_study(study, rows, curves)
    assert study.directions == [optuna.study.StudyDirection.MINIMIZE]
    assert study.metric_names == ["fitness"]
    # The dense space's hidden-layer genes keep their domains: a ratio and a name.
    t = study.trials[0]
    assert isinstance(t.distributions["hidden_1.0"], optuna.distributions.FloatDistribution)
    assert isinstance(t.distributions["optimizer"], optuna.distributions.CategoricalDistribution)
    # evoae's file: recorded in the manifest, so --overwrite removes it with the run.
    from evoae.runs.guard import is_recorded

    assert is_recorded(run, mirror) and mirror in rf.plan_overwrite(run)
    before = tree(run)
    assert main(["dashboard", str(run), "--mirror-only"]) == 0
    assert capsys.readouterr().out.strip() == f"{mirror}  (up to date)"
    # The mirror changes nothing for the read-only commands, which still write nothing.
    assert main(["runs", "show", str(run)]) == 0 and main(["runs", "list", str(run.parent)]) == 0
    assert "tiny" in capsys.readouterr().out
    assert tree(run) == before


def test_stale_mirror_is_rebuilt_with_the_new_and_failed_evaluations(run):
    mirror, _, built = om.ensure_mirror(run)
    assert built and mirror == run / om.MIRROR
    rows, _ = journal(run)
    # The journal grows by a failed evaluation: the mirror is stale.
    failed = Row(**{**rows[-1].__dict__, "id": len(rows), "status": "failed"})
    failed.fitness, failed.error = math.inf, "RuntimeError: diverged"
    with Journal(run / rf.JOURNAL) as j:
        j.append(failed)
    assert om.stored_fingerprint(mirror) != om.read_snapshot(run).fingerprint
    _, _, built = om.ensure_mirror(run)
    assert built
    rows, curves = journal(run)
    study = load(mirror, "tiny")
    check_study(study, rows, curves)
    assert study.trials[-1].user_attrs["error"] == "RuntimeError: diverged"
    assert om.ensure_mirror(run)[2] is False  # fresh now


def test_a_served_study_grows_with_the_journal_and_is_rebuilt_when_it_changed(finished):
    import dataclasses

    storage = optuna.storages.InMemoryStorage()
    snap = om.read_snapshot(finished)
    rows, curves = journal(finished)
    early = dataclasses.replace(snap, rows=snap.rows[:3], fingerprint={"rows": 3})
    assert om.sync_study(storage, early, "s") == "rebuilt"  # created
    assert om.sync_study(storage, snap, "s") == "extended"
    assert om.sync_study(storage, snap, "s") == "fresh"
    check_study(optuna.load_study(study_name="s", storage=storage), rows, curves)
    # A mirrored row that differs (a journal replaced by --overwrite): built afresh.
    changed = [dataclasses.replace(rows[0], fitness=rows[0].fitness * 2), *rows[1:]]
    other = dataclasses.replace(snap, rows=changed, fingerprint={"rows": "changed"})
    assert om.sync_study(storage, other, "s") == "rebuilt"
    check_study(optuna.load_study(study_name="s", storage=storage), changed, curves)


def test_a_mirror_that_is_not_evoaes_is_never_replaced(run, tmp_path):
    # The user's own file of that name (or one edited since evoae wrote it) stays as it
    # is; the mirror goes to the cache instead of refusing (the dashboard has no --out).
    cache = tmp_path / "cache" / "evoae" / "dashboard"
    mirror = run / om.MIRROR
    mirror.write_bytes(b"my own notes")
    path, _, built = om.ensure_mirror(run)
    assert built and path.is_relative_to(cache) and mirror.read_bytes() == b"my own notes"
    assert main(["dashboard", str(run), "--mirror-only", "--quiet"]) == 0
    assert mirror.read_bytes() == b"my own notes"
    # A link in its place: never written through, the file it points to untouched.
    mirror.unlink()
    target = tmp_path / "elsewhere.sqlite3"
    target.write_bytes(b"not yours")
    mirror.symlink_to(target)
    path, _, _ = om.ensure_mirror(run)
    assert path.is_relative_to(cache)
    assert target.read_bytes() == b"not yours" and mirror.is_symlink()
    # evoae's own mirror, edited by hand afterwards: left alone too.
    mirror.unlink()
    assert om.ensure_mirror(run)[0] == mirror
    with mirror.open("ab") as f:
        f.write(b"edited")
    edited = mirror.read_bytes()
    assert om.ensure_mirror(run)[0].is_relative_to(cache) and mirror.read_bytes() == edited


def test_damaged_curves_are_one_line_and_no_mirror(run, tmp_path):
    # The journal checks every curve point; the mirror never shows a damaged one.
    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    con = sqlite3.connect(bad / rf.JOURNAL)
    con.execute("UPDATE curves SET val_loss = 'x' WHERE epoch = 1")
    con.commit()
    con.close()
    with pytest.raises(EvoaeError, match="learning curves .* damaged"):
        om.ensure_mirror(bad)
    assert not (bad / om.MIRROR).exists()


def test_runs_evoae_may_not_write_get_their_mirror_in_the_cache(run, tmp_path, monkeypatch):
    cache = tmp_path / "cache" / "evoae" / "dashboard"
    # A read-only run folder (as root chmod does not stop a write, so the check is faked).
    ro = tmp_path / "ro" / "tiny"
    shutil.copytree(run, ro)
    before = tree(ro)
    os.chmod(ro, 0o555)
    try:
        if os.geteuid() == 0:
            real = os.access
            monkeypatch.setattr(om.os, "access", lambda p, m: Path(p) != ro and real(p, m))
        mirror, _, built = om.ensure_mirror(ro)
    finally:
        os.chmod(ro, 0o755)
    assert built and mirror.is_relative_to(cache) and tree(ro) == before
    # A run without a manifest (made before evoae recorded its files): not evoae's to write.
    (run / "evoae-run.json").unlink()
    before = tree(run)
    mirror, _, built = om.ensure_mirror(run)
    assert built and mirror.is_relative_to(cache) and tree(run) == before
    rows, curves = journal(run)
    check_study(load(mirror, "tiny"), rows, curves)
    assert om.ensure_mirror(run)[2] is False  # the cached mirror is fresh on the next call


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--host", "0.0.0.0"], ("not a loopback address", "127.0.0.1")),
        (["--host", "example.com"], ("not a loopback address",)),
        (["--refresh", "0"], ("--refresh must be",)),
    ],
)
def test_cli_refuses_bad_options(finished, args, fragments, capsys):
    assert main(["dashboard", str(finished), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and all(f in err for f in fragments), err


def test_a_port_past_65535_is_a_usage_error(finished, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["dashboard", str(finished), "--port", "70000"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err and "at most 65535" in err, err


def test_cli_errors_are_one_line(tmp_path, finished, monkeypatch, capsys):
    assert main(["dashboard", str(tmp_path), "--mirror-only"]) == 2
    assert "not an evoae run folder" in capsys.readouterr().err
    with socket.socket() as s:  # a port already taken
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["dashboard", str(finished), "--port", str(port)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and f"cannot listen on 127.0.0.1:{port}" in err, err
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)
    assert main(["dashboard", str(finished)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "pip install 'evoae[dashboard]'" in err, err


def test_the_command_serves_until_terminated(run):
    proc = start_cli("dashboard", str(run), "--port", "0")
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/dashboard/"), (
            url,
            proc.stderr.read() if proc.poll() is not None else "",
        )
        api = url.replace("/dashboard/", "/api/studies")
        with urllib.request.urlopen(api, timeout=60) as r:
            studies = json.loads(r.read())["study_summaries"]
        assert [s["study_name"] for s in studies] == ["tiny"]
        deadline = time.monotonic() + 300  # the file mirror is written while serving
        while not (run / om.MIRROR).is_file():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and err == "", err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


# ---------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from webdriver import Browser, find_tools

    tools = find_tools()
    if tools is None:
        reason = (
            "Chromium or chromedriver not installed: apt-get install -y chromium chromium-driver"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (required when CI=true)")
        pytest.skip(reason)
    b = Browser(*tools, tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


class Served:
    """``evoae dashboard``'s server for ``runs`` on a free loopback port, in a thread."""

    def __init__(self, *runs: Path, refresh: float = 0.0) -> None:
        self.live = dash.Live(runs, refresh)
        self.server = dash.make(self.live, "127.0.0.1", 0)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = dash.url(self.server)
        self.api = self.url.replace("/dashboard/", "/api/")

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.api + path, timeout=60) as r:
            return json.loads(r.read())

    def study(self, name: str) -> dict:
        ids = {s["study_name"]: s["study_id"] for s in self.get("studies")["study_summaries"]}
        return {"study_id": ids[name], **self.get(f"studies/{ids[name]}")}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def shoot(browser, name: str, scroll_to: str | None = None) -> Path:
    from webdriver import artifacts_dir

    if scroll_to is not None:
        browser.script(
            "var n = Array.from(document.querySelectorAll('h1,h2,h3,h4,h5,h6,.gtitle,p,span'))"
            ".find(e => e.textContent.trim() === arguments[0]);"
            "if (n) n.scrollIntoView({block: 'start'});",
            scroll_to,
        )
        time.sleep(0.5)
    path = browser.screenshot(artifacts_dir() / name)
    assert path.stat().st_size > 10_000
    return path


def test_dashboard_on_a_finished_run_in_chromium(run, browser):
    rows, curves = journal(run)
    served = Served(run)
    try:
        study = served.study("tiny")
        assert len(study["trials"]) == len(rows) and study["has_intermediate_values"]
        assert max(len(t["intermediate_values"]) for t in study["trials"]) >= 2
        assert [t["number"] for t in study["trials"]] == [r.id for r in rows]
        browser.get(served.url)
        browser.wait_text("tiny", "MINIMIZE")
        shoot(browser, "dashboard-studies.png")
        browser.get(f"{served.url}studies/{study['study_id']}")
        browser.wait_text("History", "Intermediate values", "Hyperparameter Importance")
        # The learning-curve plot draws one line per trial that has a curve.
        n = browser.wait("document.querySelectorAll('.scatterlayer .trace').length")
        assert n >= 2
        shoot(browser, "dashboard-history.png")
        shoot(browser, "dashboard-learning-curves.png", scroll_to="Intermediate values")
        browser.get(f"{served.url}studies/{study['study_id']}/trials")
        last = rows[-1].id
        text = browser.wait_text(f"{len(rows)} Trials", f"Trial {last}", "Intermediate Values")
        assert "eval_id" in text and "spec" in text and "hidden_1.0" in text
        shoot(browser, "dashboard-trials.png")
    finally:
        served.close()


def _stopped(proc) -> bool:
    try:
        with open(f"/proc/{proc.pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


def test_dashboard_follows_a_running_nsga2_search_in_chromium(tmp_path, browser, monkeypatch):
    out = tmp_path / "runs" / "live"
    monkeypatch.setenv(SIGNAL_ENV, "SIGSTOP")  # the search stops itself after row 3
    proc = start_cli(
        "search", "--dataset", "digits", "--out", str(out), "--strategy", "nsga2",
        "--population", "4", "--evaluations", "8", "--epochs", "1", "--final-epochs", "1",
        "--min-steps", "0", "--final-min-steps", "0", kill="appended:3",
    )  # fmt: skip
    served = None
    try:
        deadline = time.monotonic() + 300
        while not _stopped(proc):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the search never reached its third row"
            time.sleep(0.2)
        before = tree(out)
        served = Served(out)
        # The run is held by the live search: its mirror goes to the cache, not into it.
        mirror, _, built = om.ensure_mirror(out)
        assert built and not mirror.is_relative_to(out) and tree(out) == before
        study = served.study("live")
        assert study["directions"] == ["minimize", "minimize"]
        assert study["objective_names"] == ["fitness", "params"]
        assert len(study["trials"]) == 3
        browser.get(f"{served.url}studies/{study['study_id']}")
        browser.wait_text("History", "Pareto Front")
        shoot(browser, "dashboard-running-nsga2.png")
        os.kill(proc.pid, signal.SIGCONT)
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        rows, curves = journal(out)
        first = study["study_id"]
        study = served.study("live")  # this request brings the new rows in
        assert len(study["trials"]) == len(rows) == 8
        assert study["study_id"] == first  # extended in place: an open page stays valid
        trials = {t["number"]: t for t in study["trials"]}
        for r in rows:
            assert trials[r.id]["values"] == pytest.approx([r.fitness, r.params])
        browser.get(f"{served.url}studies/{study['study_id']}/trials")
        browser.wait_text("8 Trials", "Trial 7")
        shoot(browser, "dashboard-running-finished.png")
        study_obj = optuna.load_study(study_name="live", storage=served.live.storage)
        check_study(study_obj, rows, curves)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.communicate()
        if served is not None:
            served.close()


def test_several_runs_are_several_studies(run, finished):
    served = Served(run, finished)
    try:
        names = [s["study_name"] for s in served.get("studies")["study_summaries"]]
        assert names == ["tiny", "finished"]
    finally:
        served.close()
