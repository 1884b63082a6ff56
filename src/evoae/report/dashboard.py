"""``evoae dashboard``: optuna-dashboard on one or several runs, on the loopback only.

The server reads a private copy: one in-memory Optuna storage holding one study per
run, built from the journals in a moment, so what the dashboard lets a user do (notes,
renaming, deleting a study) never touches a run. Meanwhile a thread builds or refreshes
each run's file mirror (:mod:`evoae.report.optuna_mirror`, slower: Optuna's SQLite
storage writes one trial at a time), so ``optuna-dashboard sqlite:///RUN/optuna.sqlite3``
works afterwards too.
Every API request checks, at most once per ``refresh`` seconds, whether a run's journal
changed (a search still running); a changed run's study gets its new trials, and the
dashboard's own polling shows them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from evoae.errors import EvoaeError
from evoae.report import optuna_mirror as om

_INSTALL = "pip install 'evoae[dashboard]'"


def check_host(host: str) -> str:
    """Only a loopback address: evoae opens no port to the network."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise EvoaeError(
            f"--host {host} is not a loopback address: evoae serves the dashboard on "
            "127.0.0.1 (or ::1) only; reach it from elsewhere through an SSH tunnel"
        )
    return host


def _dashboard_module() -> Any:
    om.optuna_module()
    try:
        import optuna_dashboard
    except ImportError:
        raise EvoaeError(f"the dashboard needs optuna-dashboard: {_INSTALL}") from None
    return optuna_dashboard


class Live:
    """The served storage and the runs it mirrors, kept up to date on request."""

    def __init__(self, runs: Sequence[str | Path], refresh: float = 2.0) -> None:
        self.runs = [Path(r) for r in runs]
        self.names = om.unique_names(self.runs)
        self.refresh = refresh
        self._seen: list[Any] = []
        self._checked = 0.0
        self.storage = om.optuna_module().storages.InMemoryStorage()
        for run, name in zip(self.runs, self.names, strict=True):
            snap = om.read_snapshot(run)
            om.sync_study(self.storage, snap, name)
            self._seen.append(snap.fingerprint["files"])

    def update(self, force: bool = False) -> list[str]:
        """Sync every run whose journal files changed; returns what each sync did."""
        now = time.monotonic()
        if not force and now - self._checked < self.refresh:
            return []
        self._checked = now
        done = []
        for i, (run, name) in enumerate(zip(self.runs, self.names, strict=True)):
            if om.journal_stats(run) == self._seen[i] and not force:
                continue
            try:
                snap = om.read_snapshot(run)
            except EvoaeError as e:  # a journal mid-rewrite: try again on the next request
                print(f"evoae: dashboard: {e}", file=sys.stderr)
                continue
            done.append(om.sync_study(self.storage, snap, name))
            self._seen[i] = snap.fingerprint["files"]
        return done

    def app(self) -> Callable[..., Iterable[bytes]]:
        """optuna-dashboard's WSGI app, refreshing the runs before API requests."""
        inner = _dashboard_module().wsgi(self.storage)
        # optuna-dashboard keeps each study's trials for up to 2 s (longer for large
        # studies); a study just synced must not be answered from that cache.
        cache = getattr(inner, "_inmemory_cache", None)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO", "").startswith("/api/studies"):
                if self.update() and cache is not None and hasattr(cache, "clear"):
                    cache.clear()
            return inner(environ, start_response)

        return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def _server_class(host: str) -> type[WSGIServer]:
    if ":" not in host:
        return WSGIServer

    class V6(WSGIServer):
        address_family = socket.AF_INET6

    return V6


def make(live: Live, host: str, port: int) -> WSGIServer:
    """A WSGI server for ``live`` bound to ``host:port`` (0: a free port)."""
    host = check_host(host)
    try:
        return make_server(
            host, port, live.app(), server_class=_server_class(host), handler_class=_QuietHandler
        )
    except OSError as e:
        raise EvoaeError(
            f"cannot listen on {host}:{port} ({e.strerror or e}): pass another --port "
            "(0 picks a free one)"
        ) from None


def url(server: WSGIServer) -> str:
    host, port = server.server_address[:2]
    host = f"[{host}]" if ":" in str(host) else host
    return f"http://{host}:{port}/dashboard/"


def serve(
    runs: Sequence[str | Path],
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    refresh: float = 2.0,
    announce: Callable[[str], None] = print,
) -> None:
    """Mirror ``runs`` and serve optuna-dashboard until interrupted."""
    check_host(host)
    _dashboard_module()
    server = make(Live(runs, refresh), host, port)
    with server, _stop_on_signals() as stop:
        announce(url(server))
        writer = threading.Thread(target=write_mirrors, args=(runs, stop), daemon=True)
        writer.start()
        server.timeout = 0.5
        while not stop.is_set():
            server.handle_request()
        writer.join()


def write_mirrors(runs: Sequence[str | Path], stop: threading.Event) -> None:
    """Build or refresh each run's file mirror (slow for long runs: Optuna's SQLite
    storage writes a trial at a time), while the in-memory copy is already served; a
    failure is one line on stderr, a shutdown abandons the build."""
    for run in runs:
        try:
            om.ensure_mirror(run, stop)
        except om.Stopped:
            return
        except EvoaeError as e:
            print(f"evoae: dashboard: {e}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """Ctrl-C and SIGTERM end the server between requests: raised inside one, they
    would be caught by wsgiref's error handler (a traceback, and the server goes on)."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, lambda signum, frame: stop.set())
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
