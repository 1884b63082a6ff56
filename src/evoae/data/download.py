"""Download MNIST and Fashion-MNIST from public mirrors, verified by MD5.

Downloads go to a temporary file in the destination folder and are moved into place
with :func:`os.replace` only after their MD5 matches, so an interrupted or corrupt
download never leaves a partial file under the real name. Only :mod:`urllib` is used,
so ``file://`` mirrors work too (the tests rely on that).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from evoae.errors import EvoaeError

__all__ = ["MIRRORS", "FILES", "md5sum", "verify_file", "fetch"]

log = logging.getLogger(__name__)

#: Dataset name -> base URLs, tried in order.
MIRRORS: dict[str, list[str]] = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
}

#: Dataset name -> {file name: published MD5 of the gzipped file}.
FILES: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}

_CHUNK = 1 << 20
_USER_AGENT = "evoae-data/0.1 (+python urllib)"


def _one_line(text: object, limit: int = 200) -> str:
    """Whitespace-collapsed, length-capped text for use inside a one-line message."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def md5sum(path: str | Path) -> str:
    """Return the hex MD5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise EvoaeError(
            f"cannot read {path} to check its MD5: {_one_line(exc.strerror or exc)}; "
            "check that it exists and is readable"
        ) from None
    return digest.hexdigest()


def verify_file(path: str | Path, md5: str) -> None:
    """Raise :class:`EvoaeError` unless the file at ``path`` has MD5 ``md5``."""
    path = Path(path)
    if not path.is_file():
        raise EvoaeError(
            f"{path} does not exist, so its MD5 cannot be checked; run with --download"
        )
    got = md5sum(path)
    if got != md5.lower():
        raise EvoaeError(
            f"{path} has MD5 {got} but {md5.lower()} was expected; the file is corrupt or "
            "incomplete: delete it and run with --download"
        )


def _files_for(name: str) -> dict[str, str]:
    try:
        return FILES[name]
    except KeyError:
        raise EvoaeError(
            f"cannot download unknown dataset {name!r}; downloadable: {', '.join(sorted(FILES))}"
        ) from None


def _url(base: str, filename: str) -> str:
    return base if base.endswith(filename) else base.rstrip("/") + "/" + filename


def _reason(exc: BaseException) -> str:
    # URLError's str() wraps the interesting part in "<urlopen error ...>"
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return _one_line(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return _one_line(exc.strerror)
    return _one_line(exc) or type(exc).__name__


def _download_one(
    filename: str, md5: str, bases: list[str], dest: Path, timeout: float, stale: bool
) -> None:
    """Fetch ``filename`` from the first mirror that yields the right MD5."""
    target = dest / filename
    failures: list[str] = []
    for base in bases:
        url = _url(base, filename)
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=dest)
        except OSError as exc:
            raise EvoaeError(
                f"cannot write to data folder {dest}: {_reason(exc)}; pass --data-dir DIR "
                "naming a writable folder"
            ) from None
        tmp = Path(tmp_name)
        try:
            log.info("downloading %s", url)
            digest = hashlib.md5(usedforsecurity=False)
            try:
                request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
                with (
                    os.fdopen(fd, "wb") as out,
                    urllib.request.urlopen(request, timeout=timeout) as resp,
                ):
                    while chunk := resp.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                # URLError/HTTPError/timeouts are OSErrors; ValueError: malformed URL.
                failures.append(f"{url}: {_reason(exc)}")
                continue
            got = digest.hexdigest()
            if got != md5:
                failures.append(f"{url}: MD5 {got}, expected {md5}")
                continue
            try:
                os.replace(tmp, target)
            except OSError as exc:
                raise EvoaeError(
                    f"cannot move the download into place as {target}: {_reason(exc)}; "
                    "check that the data folder is writable"
                ) from None
            log.info("verified %s (md5 %s)", target, md5)
            return
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    note = f"; {target} has the wrong MD5 and was left untouched" if stale else ""
    raise EvoaeError(
        f"could not download {filename} from any mirror ({'; '.join(failures) or 'no mirrors'})"
        f"{note}; check the network, or put the verified file into {dest} by hand"
    )


def fetch(
    name: str, dest: str | Path, *, mirrors: list[str] | None = None, timeout: float = 30.0
) -> Path:
    """Make sure all files of dataset ``name`` are in ``dest`` with the published MD5s.

    Parameters
    ----------
    name
        ``"mnist"`` or ``"fashion-mnist"`` (a key of :data:`FILES`).
    dest
        Folder for the files; created if missing.
    mirrors
        Base URLs to try in order; defaults to ``MIRRORS[name]``.
    timeout
        Socket timeout in seconds for each request.

    Returns
    -------
    Path
        ``dest``.

    Notes
    -----
    Files already present with the right MD5 are kept without any network access. A
    present file with a wrong MD5 is downloaded again into a temporary file, and is
    replaced only once the new copy verifies.
    """
    files = _files_for(name)
    bases = list(MIRRORS.get(name, []) if mirrors is None else mirrors)
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise EvoaeError(f"data folder {dest} is a file; pass --data-dir DIR naming a folder")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvoaeError(
            f"cannot create data folder {dest}: {_reason(exc)}; pass --data-dir DIR naming a "
            "writable folder"
        ) from None
    for filename, md5 in files.items():
        target = dest / filename
        stale = False
        if target.is_file():
            if md5sum(target) == md5:
                continue
            stale = True
            log.warning("%s has the wrong MD5; downloading it again", target)
        _download_one(filename, md5, bases, dest, timeout, stale)
    return dest
