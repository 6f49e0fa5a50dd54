"""Downloading weights like a careful tool: cached, atomic, verified before use.

:func:`fetch` returns the local file of a registry entry. The cache is torch.hub's
(``$TORCH_HOME/hub/checkpoints``, i.e. ``~/.cache/torch/hub/checkpoints`` by default, so a file
torchvision already downloaded is reused) or the folder given as ``weights_dir``
(``--weights-dir`` on the tools). A download streams into a temp file beside its target while
its SHA-256 is computed, with a progress bar; a short transfer or a wrong hash deletes it and
raises, so a partial file never passes as whole, and the file is renamed into place only once
verified. A cached file is verified again before each use. Without a network the error is one
line naming the URL and where to place the file by hand.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO

from ssdlite.files import atomic_write
from ssdlite.weights.registry import WeightsEntry

__all__ = ["cache_dir", "fetch", "download", "sha256_of", "WeightsUnavailable", "WeightsHashError"]

_CHUNK = 1 << 20


class WeightsUnavailable(OSError):
    """The file cannot be downloaded (no network, HTTP error, cut transfer); the message says what to do.

    ``exit_code`` 1: the tools exit with it, without a traceback.
    """

    exit_code = 1


class WeightsHashError(ValueError):
    """A downloaded or cached file's SHA-256 is not the published one; the file was deleted."""


def cache_dir(weights_dir: str | os.PathLike | None = None) -> Path:
    """``weights_dir``, else torch.hub's checkpoint folder (``$TORCH_HOME/hub/checkpoints``)."""
    if weights_dir:
        return Path(weights_dir).expanduser()
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_hash(path: Path, got: str, expected: str) -> None:
    if not got.startswith(expected.lower()):
        try:
            path.unlink()
        except OSError:
            pass
        raise WeightsHashError(
            f"{path}: SHA-256 {got} does not match the published {expected}{'...' if len(expected) < 64 else ''}; "
            "the file was deleted (a corrupted or substituted download): try again, or check the source"
        )


def fetch(entry: WeightsEntry, weights_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """The verified local file of ``entry``: from the cache, else downloaded into it."""
    path = cache_dir(weights_dir) / entry.filename
    if path.is_file():
        _check_hash(path, sha256_of(path), entry.sha256)
        return path
    return download(entry.url, path, entry.sha256, progress=progress)


def download(url: str, path: str | os.PathLike, sha256: str, progress: bool = True, timeout: float = 30.0) -> Path:
    """Stream ``url`` to ``path`` atomically, verifying its length and SHA-256 (full digest or prefix) first."""
    path = Path(path)
    if len(sha256) < 8:
        raise ValueError(f"refusing to download {url} without a published SHA-256 (got {sha256!r})")
    hint = f"place the file by hand at {path} (or pass a local file path instead of the name)"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "ssdlite"}), timeout=timeout)
    except urllib.error.HTTPError as e:
        raise WeightsUnavailable(f"cannot download {url}: HTTP {e.code} {e.reason}; {hint}") from None
    except (urllib.error.URLError, socket.timeout, OSError) as e:
        reason = getattr(e, "reason", e)
        raise WeightsUnavailable(f"cannot download {url} ({reason}): no network? {hint}") from None
    digest = hashlib.sha256()
    with response:
        total = int(response.headers.get("Content-Length") or 0)
        try:
            atomic_write(path, lambda f: _stream(response, f, digest, total, url, progress, path, sha256))
        except (urllib.error.URLError, socket.timeout, ConnectionError, http.client.HTTPException) as e:
            raise WeightsUnavailable(f"download of {url} was interrupted ({e}); nothing was kept; {hint}") from None
        except WeightsUnavailable as e:  # a short transfer
            raise WeightsUnavailable(f"{e}; try again, or {hint}") from None
    return path


def _stream(response: Any, out: BinaryIO, digest: Any, total: int, url: str, progress: bool, path: Path, sha256: str) -> None:
    """Copy ``response`` to ``out`` (a temp file of ``atomic_write``); a short transfer or a wrong SHA-256
    raises, so the temp file is dropped and ``path`` never holds it."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total or None, unit="B", unit_scale=True, unit_divisor=1024, desc=url.rsplit("/", 1)[-1][:40])
    received = 0
    try:
        for chunk in iter(lambda: response.read(_CHUNK), b""):
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    if total and received != total:
        raise WeightsUnavailable(f"download of {url} stopped at {received} of {total} bytes; nothing was kept")
    _check_hash(path, digest.hexdigest(), sha256)
