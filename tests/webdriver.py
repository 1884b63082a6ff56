"""Just enough of the W3C WebDriver protocol to drive headless Chromium from a test.

``chromedriver`` (Debian's ``chromium-driver``) listens on a loopback port; each call
is one JSON request over ``urllib``, so no Python package (selenium) is needed.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ELEMENT = "element-6066-11e4-a6ae-4a52a2f5b8c8"


def find_tools() -> tuple[str, str] | None:
    """(chromium, chromedriver) when both are installed."""
    browser = next(
        (
            shutil.which(n)
            for n in ("chromium", "chromium-browser", "google-chrome")
            if shutil.which(n)
        ),
        None,
    )
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """A headless Chromium session: ``get``, ``wait_text``, ``script``, ``screenshot``."""

    def __init__(self, chromium: str, chromedriver: str, profile: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [chromedriver, f"--port={self.port}", "--allowed-ips=127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                self._call("GET", "/status")
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.proc.kill()
                    raise RuntimeError("chromedriver did not start") from None
                time.sleep(0.2)
        args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1000",
            f"--user-data-dir={profile}",
        ]
        caps = {"browserName": "chrome", "goog:chromeOptions": {"binary": chromium, "args": args}}
        try:
            value = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})
        except BaseException:
            self.proc.kill()
            raise
        self.session = value["sessionId"]

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return json.loads(r.read())["value"]
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"webdriver {method} {path}: {e.read()[:500]!r}") from None

    def _s(self, method: str, path: str, body: Any = None) -> Any:
        return self._call(method, f"/session/{self.session}{path}", body)

    def get(self, url: str) -> None:
        self._s("POST", "/url", {"url": url})

    def script(self, js: str, *args: Any) -> Any:
        return self._s("POST", "/execute/sync", {"script": js, "args": list(args)})

    def text(self) -> str:
        return self.script("return document.body ? document.body.innerText : '';")

    def wait(self, js: str, timeout: float = 60) -> Any:
        """Poll ``js`` (an expression) until it is truthy; its value, or TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.script(f"return ({js});")
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout}s for {js}; page text: {self.text()[:800]!r}")
            time.sleep(0.3)

    def wait_text(self, *fragments: str, timeout: float = 60) -> str:
        """Wait until the page's visible text holds every fragment; returns the text."""
        cond = " && ".join(f"document.body.innerText.includes({json.dumps(f)})" for f in fragments)
        self.wait(f"document.body && {cond}", timeout)
        return self.text()

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self._s("GET", "/screenshot")))
        return path

    def close(self) -> None:
        try:
            self._s("DELETE", "")
        except (OSError, RuntimeError):
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def artifacts_dir() -> Path:
    """``artifacts/screenshots`` in the repository (git-ignored)."""
    return Path(os.path.dirname(os.path.abspath(__file__))).parent / "artifacts" / "screenshots"
