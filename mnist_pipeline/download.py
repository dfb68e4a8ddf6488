"""Getting one MNIST file from one source (a local folder or an http(s) URL prefix),
decompressed and checked against its pinned sha256."""

from __future__ import annotations

import gzip
import http.client
import os
import sys
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from tqdm import tqdm

from mnist_pipeline.mnist import MnistFile, sha256_hex
from mnist_pipeline.stage import StageError

PUBLIC_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MIRROR_ENV = "MNIST_MIRROR"
TIMEOUT_ENV = "MNIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 30.0
ATTEMPTS_PER_SOURCE = 2  # one try and one retry, for failures that may be transient
_CHUNK = 1 << 16


class FetchFailed(Exception):
    """One source could not deliver one file; the message says why."""

    def __init__(self, reason: str, transient: bool = False) -> None:
        super().__init__(reason)
        self.transient = transient


def sources() -> list[str]:
    """MNIST_MIRROR first, when set, then the public mirrors."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    return [mirror, *PUBLIC_MIRRORS] if mirror else list(PUBLIC_MIRRORS)


def timeout_s() -> float:
    """Seconds a connection may stay silent before the source counts as failed."""
    value = os.environ.get(TIMEOUT_ENV, "").strip()
    if not value:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise StageError(
            f"{TIMEOUT_ENV}={value!r} is invalid: expected a positive number of seconds"
        )
    return seconds


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _read_url(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "mnist-dvc-pipeline"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            name = url.rsplit("/", 1)[-1]
            chunks = []
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=name, disable=not sys.stderr.isatty()
            ) as bar:
                while chunk := response.read(_CHUNK):
                    chunks.append(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as error:
        raise FetchFailed(
            f"HTTP {error.code} {error.reason}", transient=error.code >= 500
        ) from None
    except urllib.error.URLError as error:
        raise FetchFailed(f"cannot connect: {error.reason}", transient=True) from None
    except TimeoutError:
        raise FetchFailed(f"no data for {timeout:g} s (timed out)", transient=True) from None
    except http.client.IncompleteRead as error:
        raise FetchFailed(
            f"connection closed after {len(error.partial)} bytes, before the end", transient=True
        ) from None
    except (ConnectionError, http.client.HTTPException) as error:
        raise FetchFailed(f"connection failed: {error}", transient=True) from None
    data = b"".join(chunks)
    if total is not None and len(data) != total:
        raise FetchFailed(f"connection closed after {len(data)} of {total} bytes", transient=True)
    return data


def _read_local(folder: str, name: str) -> bytes:
    path = Path(folder).expanduser() / name
    if not path.parent.is_dir():
        raise FetchFailed(f"{path.parent} is not a directory")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FetchFailed(f"{path} not found") from None
    except OSError as error:
        raise FetchFailed(f"{path}: {error.strerror}") from None


def _decompress_and_verify(compressed: bytes, file: MnistFile) -> bytes:
    try:
        data = gzip.decompress(compressed)
    except (OSError, EOFError, zlib.error) as error:
        raise FetchFailed(f"not a valid gzip file ({error})", transient=True) from None
    digest = sha256_hex(data)
    if digest != file.sha256:
        raise FetchFailed(
            f"checksum mismatch: sha256 {digest[:12]}..., expected {file.sha256[:12]}..."
        )
    return data


def _fetch_once(source: str, file: MnistFile, timeout: float) -> bytes:
    if is_url(source):
        compressed = _read_url(source.rstrip("/") + "/" + file.download_name, timeout)
    else:
        compressed = _read_local(source, file.download_name)
    return _decompress_and_verify(compressed, file)


def fetch_file(source: str, file: MnistFile, timeout: float) -> bytes:
    """Return the verified, decompressed bytes of `file` from `source`, or raise FetchFailed.

    Failures that may be transient (timeouts, dropped connections, HTTP 5xx, a damaged
    transfer) are retried once; a 404 or a checksum mismatch is not.
    """
    for _ in range(ATTEMPTS_PER_SOURCE - 1):
        try:
            return _fetch_once(source, file, timeout)
        except FetchFailed as failure:
            if not failure.transient:
                raise
    return _fetch_once(source, file, timeout)
