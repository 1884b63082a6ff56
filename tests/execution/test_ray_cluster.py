"""Issue 24: Ray on a real multi-node cluster (head and two workers, 1 CPU each, all on
127.0.0.1): a worker lost mid-search changes nothing, a lost cluster (head and raylets
killed) ends the search in one line that says how to finish it, and a bad address fails
fast in one line.

The cluster is ``ray.cluster_utils.Cluster``: separate raylet processes, as on separate
machines, on loopback only. The searches run as ``evoae search --quiet`` subprocesses,
so what a user's script would capture on stdout and stderr is what is checked.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402

from evoae.cli import main  # noqa: E402
from evoae.errors import EvoaeError  # noqa: E402
from evoae.execution import raycluster  # noqa: E402
from evoae.loop import search  # noqa: E402
from evoae.runs.journal import Journal  # noqa: E402

SRC = str(Path(__file__).resolve().parents[2] / "src")
SEARCH: dict[str, Any] = dict(
    limit=300, strategy="aging", evaluations=20, population=4, sample=2, batch=3, epochs=3,
    final_epochs=1, seed=3,
)  # fmt: skip
# Enough batches that the kill lands mid-search on a fast machine too (it is checked).
ARGV = ["--limit", "300", "--strategy", "aging", "--evaluations", "20", "--population", "4"]
ARGV += ["--sample", "2", "--batch", "3", "--epochs", "3", "--final-epochs", "1", "--seed", "3"]
#: A hang fails the test instead of blocking the suite (not a speed claim).
HANG_S = 120


def _env() -> dict[str, str]:
    path = SRC + os.pathsep + os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": path, "RAY_AUTH_MODE": "disabled"}


def _descendants(root: int) -> set[int]:
    """Every live process below ``root`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


@contextlib.contextmanager
def _address_file_untouched() -> Iterator[None]:
    import ray._common.utils
    import ray._private.utils

    with pytest.MonkeyPatch.context() as mp:
        # A loopback-only test cluster without token auth: an earlier ray.init in this
        # process leaves RAY_AUTH_MODE=token behind, whose token the drivers lack.
        mp.setenv("RAY_AUTH_MODE", "disabled")
        mp.setattr(ray._private.utils, "write_ray_address", lambda *a, **k: None)
        mp.setattr(ray._common.utils, "reset_ray_address", lambda *a, **k: None)
        yield


class LocalCluster:
    """A head and two workers on 127.0.0.1; every process it started is remembered, so
    the ones a killed raylet orphans (its agents, idle workers) are ended too."""

    def __init__(self) -> None:
        # Not recorded as this machine's current cluster (/tmp/ray/ray_current_cluster):
        # a plain ray.init() elsewhere on a shared machine would join it.
        with _address_file_untouched():
            self.cluster = Cluster(
                initialize_head=True,
                head_node_args=dict(
                    num_cpus=1, node_ip_address="127.0.0.1", include_dashboard=False
                ),
            )
        self.workers = [self.cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")]
        self.workers.append(self.cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1"))
        self.started: set[int] = set()
        self.remember()

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def remember(self) -> None:
        self.started |= _descendants(os.getpid())

    def kill(self, node: Any, *names: str) -> None:
        self.remember()
        for name in names:
            for info in node.all_processes.get(name, []):
                if info.process.poll() is None:
                    info.process.kill()

    def shutdown(self) -> None:
        self.remember()
        try:
            with _address_file_untouched():
                self.cluster.shutdown()
        finally:
            for pid in self.started:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    if ray.is_initialized():
        ray.shutdown()
    c = LocalCluster()
    try:
        yield c
    finally:
        c.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The journal of the same search, uninterrupted, in this process (one thread)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    search("digits", out=out, executor="inline", **SEARCH)
    return _rows(out)


def _rows(run: Path) -> list[dict[str, Any]]:
    with Journal(run / "journal.sqlite") as j:
        return [r.comparable() for r in j.rows()]


def _finished(run: Path) -> int:
    """Rows in the journal of a running search (0 before it exists)."""
    try:
        with sqlite3.connect(f"file:{run / 'journal.sqlite'}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0])
    except sqlite3.Error:
        return 0


def _search_killing(
    run: Path, address: str, at_rows: int, kill: Any
) -> tuple[subprocess.CompletedProcess[str], bool]:
    """``evoae search --quiet`` on the cluster; ``kill()`` once ``at_rows`` rows are in.

    The driver stops itself (SIGSTOP) right after committing row ``at_rows``
    (``EVOAE_TEST_KILL_AT=appended:N``), the nodes die while it is stopped, then it
    continues: the kill always lands mid-search, however fast the machine."""
    cmd = [sys.executable, "-m", "evoae.cli", "search", "--quiet", *ARGV, "--executor", "ray"]
    cmd += ["--ray-address", address, "--out", str(run)]
    env = {**_env(), "EVOAE_TEST_KILL_AT": f"appended:{at_rows}"}
    env["EVOAE_TEST_KILL_SIGNAL"] = "SIGSTOP"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    killed = False
    try:
        deadline = time.monotonic() + HANG_S
        while proc.poll() is None and time.monotonic() < deadline:
            if not killed and _stopped(proc.pid):
                try:
                    kill()
                finally:
                    os.kill(proc.pid, signal.SIGCONT)
                killed = True
            time.sleep(0.1)
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        proc.kill()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), killed


def _stopped(pid: int) -> bool:
    """The process is stopped (state T in /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "T"


def test_a_worker_node_lost_mid_search_changes_nothing_and_prints_nothing(
    cluster: LocalCluster, reference: list[dict[str, Any]], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    done, killed = _search_killing(
        run, cluster.address, 2, lambda: cluster.kill(cluster.workers[0], "raylet")
    )
    assert killed, f"the search ended before the worker was killed: {done.stderr[-2000:]}"
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.strip() == str(run)  # --quiet: the run folder, nothing of Ray's
    assert _rows(run) == reference


def test_a_lost_cluster_ends_in_one_line_naming_resume_and_resume_finishes_the_run(
    cluster: LocalCluster, reference: list[dict[str, Any]], tmp_path: Path
) -> None:
    run = tmp_path / "run"

    def kill_all() -> None:  # the head (GCS and raylet), then every worker raylet
        cluster.kill(cluster.cluster.head_node, "gcs_server", "raylet")
        for node in cluster.workers:
            cluster.kill(node, "raylet")

    done, killed = _search_killing(run, cluster.address, 2, kill_all)
    assert killed, f"the search ended before the head was killed: {done.stderr[-2000:]}"
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("evoae: error: the Ray cluster at ")
    assert f"evoae search --resume {run}" in lines[0] and f"evoae finish {run}" in lines[0]
    kept = _rows(run)
    assert 2 <= len(kept) < len(reference) and kept == reference[: len(kept)]
    # What the line says works: the run finishes inline, as if never interrupted.
    assert main(["search", "--quiet", "--resume", str(run), "--executor", "inline"]) == 0
    assert _rows(run) == reference


# ------------------------------------------------------------------ bad addresses


def _one_line_exit_2(capsys: pytest.CaptureFixture[str], address: str) -> str:
    code = main(["search", "--quiet", *ARGV, "--executor", "ray", "--ray-address", address])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evoae: error: "), lines
    return lines[0]


class _Listener:
    """A loopback TCP port that is not Ray: it answers HTTP/1, or says nothing at all."""

    def __init__(self, reply: bytes | None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.reply is not None:
                conn.sendall(self.reply)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "the port answers, but not as a Ray cluster"),
        (None, "no Ray answer within"),
    ],
    ids=["http", "silent"],
)
@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_open_port_that_is_not_ray_fails_fast_in_one_line(
    capsys: pytest.CaptureFixture[str], reply: bytes | None, why: str, scheme: str
) -> None:
    listener = _Listener(reply)
    try:
        address = f"{scheme}127.0.0.1:{listener.port}"
        line = _one_line_exit_2(capsys, address)
    finally:
        listener.close()
    assert f"cannot reach the Ray cluster at {address} ({why}" in line, line
    assert not ray.is_initialized()


def test_a_closed_port_and_a_malformed_address_fail_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]  # closed again when the block ends
    assert "(connection refused)" in _one_line_exit_2(capsys, f"127.0.0.1:{port}")
    assert "is not auto, HOST:PORT" in _one_line_exit_2(capsys, "127.0.0.1")


def test_a_cluster_without_a_node_on_this_machine_is_refused_before_ray_init(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The GCS answers, but its only node is elsewhere: ray.init would wait for a local
    # raylet that never comes.
    monkeypatch.setattr(raycluster, "gcs_nodes", lambda *a, **k: [("10.9.9.9", True)])
    with pytest.raises(EvoaeError, match="no node on this machine at 127.0.0.1"):
        raycluster.check_cluster("localhost:6379")
    monkeypatch.setattr(raycluster, "gcs_nodes", lambda *a, **k: [("127.0.0.1", False)])
    with pytest.raises(EvoaeError, match=r"its nodes: none alive\)"):
        raycluster.check_cluster("127.0.0.1:6379")


def test_a_loopback_address_pins_the_driver_to_loopback() -> None:
    assert raycluster.parse_address("localhost:6379").target() == "127.0.0.1:6379"  # type: ignore[union-attr]
    assert raycluster.parse_address("127.0.0.2:1").node_ip == "127.0.0.2"  # type: ignore[union-attr]
    assert raycluster.parse_address("ray://10.0.0.1:10001").node_ip is None  # type: ignore[union-attr]
    assert raycluster.parse_address("auto") is None
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    with raycluster.loopback_pinned(True):
        from ray._private import services

        assert services.resolve_ip_for_localhost("127.0.0.1") == "127.0.0.1"
    assert ray_constants.ENABLE_RAY_CLUSTER == before


_BLOCKED = """
import signal, sys, time
from evoae.execution.raycluster import signals_end_process
signal.signal(signal.SIGTERM, lambda *a: None)  # a main thread that never gets to act
with signals_end_process():
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
"""


def test_sigterm_ends_a_driver_whose_main_thread_cannot_act() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _BLOCKED],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=HANG_S)
    finally:
        proc.kill()
    assert proc.returncode == 143
    assert err.strip().splitlines() == ["evoae: terminated while joining the Ray cluster"]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_mid_search_shuts_down_the_local_ray_evoae_started(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "evoae.cli", "search", "--quiet", *ARGV, "--executor", "ray"]
    cmd += ["--workers", "1", "--out", str(run)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    started: set[int] = set()
    try:
        deadline = time.monotonic() + HANG_S
        while _finished(run) < 1 and proc.poll() is None and time.monotonic() < deadline:
            started |= _descendants(proc.pid)
            time.sleep(0.2)
        started |= _descendants(proc.pid)
        assert proc.poll() is None and started, "the search ended before it was signalled"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=HANG_S)
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in started) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [p for p in started if _alive(p)]
    finally:
        proc.kill()
        for pid in started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("evoae: terminated;"), err
    assert not left, f"processes of the local Ray outlived evoae: {left}"
