"""Getting one MNIST file from one source (a local folder or an http(s) URL prefix),
decompressed and checked against its pinned sha256.

A source may be broken or hostile; whatever it sends, fetching one file takes bounded
memory (the gzip stream is inflated a step at a time, hashed and written as it goes, and
stopped the moment it passes the file's known size) and bounded time (a deadline per
file, on top of the timeout per read). Every way a source can fail is that source's
failure, reported in one line, and the next source is tried.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import os
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from mnist_pipeline.mnist import MnistFile
from mnist_pipeline.stage import StageError, printable

PUBLIC_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MIRROR_ENV = "MNIST_MIRROR"
TIMEOUT_ENV = "MNIST_TIMEOUT"
DEADLINE_ENV = "MNIST_DEADLINE"
DEFAULT_TIMEOUT_S = 30.0  # a connection silent this long has failed
DEFAULT_DEADLINE_S = 300.0  # one file from one source, all told: 10 MB at 33 kB/s
ATTEMPTS_PER_SOURCE = 2  # one try and one retry, for failures that may be transient
_CHUNK = 1 << 16  # bytes read from a source at a time
_INFLATE_STEP = 1 << 20  # bytes of decompressed output at a time
_GZIP = 16 + zlib.MAX_WBITS  # zlib's window-bits value for a gzip header and trailer


class FetchFailed(Exception):
    """One source could not deliver one file; the message says why."""

    def __init__(self, reason: str, transient: bool = False) -> None:
        super().__init__(reason)
        self.transient = transient


@dataclass(frozen=True)
class Limits:
    timeout: float  # seconds a connection may stay silent
    deadline: float  # seconds one file may take from one source


def sources() -> list[str]:
    """MNIST_MIRROR first, when set, then the public mirrors."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    return [mirror, *PUBLIC_MIRRORS] if mirror else list(PUBLIC_MIRRORS)


def _seconds(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise StageError(
            f"{name}={printable(value)!r} is invalid: expected a positive number of seconds"
        )
    return seconds


def timeout_s() -> float:
    """Seconds a connection may stay silent before the source counts as failed."""
    return _seconds(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)


def limits() -> Limits:
    """The timeout per read (MNIST_TIMEOUT) and the deadline per file (MNIST_DEADLINE)."""
    return Limits(timeout_s(), _seconds(DEADLINE_ENV, DEFAULT_DEADLINE_S))


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def redact(text: str, source: str = "") -> str:
    """`text` with the user:password part of every URL in it, and of `source` wherever
    it appears (even where a password's `/` or `@` defeats URL parsing), replaced by ***."""
    if "://" in source and "@" in source:
        userinfo = source.split("://", 1)[1].rpartition("@")[0]
        secrets = {userinfo, urllib.parse.unquote(userinfo)}
        secrets |= {part for part in userinfo.split(":") if len(part) >= 4}
        secrets |= {urllib.parse.unquote(part) for part in set(secrets)}
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
    return re.sub(r"(?<=://)[^/?#\s]*@", "***@", text)


def describe(source: str) -> str:
    """How a source is named in messages, without its credentials."""
    shown = source if source in PUBLIC_MIRRORS else f"{MIRROR_ENV}={source}"
    return printable(redact(shown, source))


def _max_compressed(file: MnistFile) -> int:
    """The most bytes a gzip of `file` can take: its size stored uncompressed, plus room
    for block headers and a long gzip header."""
    return file.size + file.size // 100 + (1 << 20)


def _too_slow(deadline: float) -> FetchFailed:
    return FetchFailed(f"took longer than the {deadline:g} s allowed per file ({DEADLINE_ENV})")


class _Deadline:
    """Shuts down the sockets of a download when its time is up, so that a read blocked
    on a server that sends nothing, or a byte now and then, returns at once. Sockets are
    watched by file descriptor, which stays the same when TLS wraps a socket."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.expired = seconds, False
        self._descriptors: list[int] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self.ends_at = time.monotonic() + seconds
        self._timer.start()

    def watch(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._descriptors.append(sock.fileno())
            if self.expired:
                _shut(self._descriptors[-1])
        return sock

    def check(self) -> None:
        if self.expired or time.monotonic() > self.ends_at:
            self.expired = True
            raise _too_slow(self.seconds)

    def cancel(self) -> None:
        """Stop the timer; called while the download's sockets are still open, so no
        descriptor it watches can belong to anything else yet."""
        with self._lock:
            self._timer.cancel()
            self._descriptors.clear()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for descriptor in self._descriptors:
                _shut(descriptor)


@contextlib.contextmanager
def _cancelling(deadline: _Deadline) -> Iterator[None]:
    """Cancel `deadline` at the end of the block, before the response's socket closes."""
    try:
        yield
    finally:
        deadline.cancel()


def _shut(descriptor: int) -> None:
    """Shut a socket down by its descriptor: blocked reads on it return at once."""
    with contextlib.suppress(OSError):  # closed already, or not a socket any more
        sock = socket.socket(fileno=descriptor)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.detach()


def _watched(connection: type[http.client.HTTPConnection], deadline: _Deadline) -> type:
    """`connection` with its socket handed to `deadline` as soon as it exists."""

    class Watched(connection):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self._create_connection = lambda *a, **k: deadline.watch(
                socket.create_connection(*a, **k)
            )

    return Watched


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_watched(http.client.HTTPConnection, self.deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = _watched(http.client.HTTPSConnection, self.deadline)
        return self.do_open(connection, req, context=self._context)


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) URLs only (urllib would follow one to ftp://)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = urllib.parse.urlsplit(newurl).scheme
        if scheme not in ("http", "https"):
            fp.close()
            raise FetchFailed(
                f"redirected to a {printable(scheme, 20)!r} URL; only http(s) redirects are followed"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _request(url: str) -> urllib.request.Request:
    """A GET for `url`; a user:password in it becomes a Basic authorization header that
    is not passed on to another host if the server redirects."""
    try:
        parts = urllib.parse.urlsplit(url)
        valid = bool(parts.hostname) and (parts.port or 0) >= 0
    except ValueError:  # its message may quote a part of the URL: a password, even
        valid = False
    if not valid:
        raise FetchFailed(
            "not a valid URL: it needs a host name, a port (if any) that is a number, and "
            "reserved characters in a password %-encoded"
        )
    host = parts.netloc.rpartition("@")[2]
    request = urllib.request.Request(
        urllib.parse.urlunsplit(parts._replace(netloc=host)),
        headers={"User-Agent": "mnist-dvc-pipeline"},
    )
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_unredirected_header("Authorization", f"Basic {token}")
    return request


def _content_length(response: http.client.HTTPResponse, most: int) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]{1,20}", value.strip()):
        raise FetchFailed(f"malformed Content-Length header {printable(value, 40)!r}")
    length = int(value)
    if length > most:
        raise FetchFailed(f"announces {length:,} bytes, more than a gzip of this file can be")
    return length


def _url_chunks(url: str, file: MnistFile, limits: Limits) -> Iterator[bytes]:
    """The bytes the server sends for `url`, a chunk at a time."""
    request = _request(url)
    deadline = _Deadline(limits.deadline)
    opener = urllib.request.build_opener(
        _HTTPHandler(deadline), _HTTPSHandler(deadline), _RedirectHandler()
    )
    most = _max_compressed(file)
    try:
        with opener.open(request, timeout=limits.timeout) as response, _cancelling(deadline):
            total = _content_length(response, most)
            received = 0
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=file.download_name,
                disable=not sys.stderr.isatty(),
            ) as bar:
                while chunk := response.read1(_CHUNK):
                    deadline.check()
                    received += len(chunk)
                    if received > most:
                        raise FetchFailed(
                            f"sent more than {most:,} bytes, more than a gzip of this file can be"
                        )
                    bar.update(len(chunk))
                    yield chunk
            deadline.check()
            if total is not None and received != total:
                raise FetchFailed(
                    f"connection closed after {received} of {total} bytes", transient=True
                )
    except FetchFailed:
        raise
    except urllib.error.HTTPError as error:
        deadline.check()
        raise FetchFailed(
            f"HTTP {error.code} {error.reason}", transient=error.code >= 500
        ) from None
    except urllib.error.URLError as error:
        deadline.check()
        raise FetchFailed(f"cannot connect: {error.reason}", transient=True) from None
    except TimeoutError:
        deadline.check()
        raise FetchFailed(
            f"no data for {limits.timeout:g} s (timed out, {TIMEOUT_ENV})", transient=True
        ) from None
    except http.client.IncompleteRead as error:
        deadline.check()
        raise FetchFailed(
            f"connection closed after {len(error.partial)} bytes, before the end", transient=True
        ) from None
    except (OSError, http.client.HTTPException) as error:  # reset, TLS failure, ...
        deadline.check()
        raise FetchFailed(f"connection failed: {error}", transient=True) from None
    finally:
        deadline.cancel()


def _local_chunks(folder: str, file: MnistFile, limits: Limits) -> Iterator[bytes]:
    path = Path(folder).expanduser() / file.download_name
    ends_at = time.monotonic() + limits.deadline
    try:
        if not path.parent.is_dir():
            raise FetchFailed(f"{path.parent} is not a directory")
        if not path.exists():
            raise FetchFailed(f"{path} not found")
        if not path.is_file():  # a FIFO or a device could block or never end
            raise FetchFailed(f"{path} is not a regular file")
        if path.stat().st_size > _max_compressed(file):
            raise FetchFailed(f"{path} is larger than a gzip of this file can be")
        with path.open("rb") as source:
            while chunk := source.read(_CHUNK):
                if time.monotonic() > ends_at:
                    raise _too_slow(limits.deadline)
                yield chunk
    except OSError as error:
        raise FetchFailed(f"{path}: {error.strerror or error}") from None


def _inflate(chunks: Iterable[bytes], file: MnistFile, out: BinaryIO) -> None:
    """Decompress the gzip stream `chunks` into `out` a step at a time, checking its size
    and sha256 as it goes; raise FetchFailed the moment it is not `file`."""
    digest, written = hashlib.sha256(), 0
    inflater = zlib.decompressobj(_GZIP)
    try:
        for chunk in chunks:
            data = chunk
            while data:
                if inflater.eof:  # a gzip file may hold several members, back to back,
                    if not data.strip(b"\0"):  # and end in zero padding
                        break
                    inflater = zlib.decompressobj(_GZIP)
                block = inflater.decompress(data, _INFLATE_STEP)
                data = inflater.unconsumed_tail or inflater.unused_data
                written += len(block)
                if written > file.size:
                    raise FetchFailed(
                        f"decompresses to more than the {file.size:,} bytes of {file.name}: "
                        "not this file (stopped there)"
                    )
                digest.update(block)
                out.write(block)
    except zlib.error as error:
        raise FetchFailed(f"not a valid gzip file ({error})", transient=True) from None
    if not inflater.eof:
        raise FetchFailed("the gzip data ends early (truncated)", transient=True)
    if digest.hexdigest() != file.sha256:
        raise FetchFailed(
            f"checksum mismatch: sha256 {digest.hexdigest()[:12]}..., "
            f"expected {file.sha256[:12]}..."
        )


def _fetch_once(source: str, file: MnistFile, destination: Path, limits: Limits) -> None:
    if is_url(source):
        chunks = _url_chunks(source.rstrip("/") + "/" + file.download_name, file, limits)
    elif "://" in source:
        scheme = source.split("://", 1)[0]
        raise FetchFailed(
            f"unsupported URL scheme {printable(scheme, 20)!r}: use a folder or an http(s) URL"
        )
    else:
        chunks = _local_chunks(source, file, limits)
    try:
        with destination.open("wb") as out:
            _inflate(chunks, file, out)
    except (FetchFailed, OSError):  # OSError: writing our own output failed (disk full)
        raise
    except Exception as error:  # whatever else a source manages to provoke is its failure
        raise FetchFailed(f"{type(error).__name__}: {error}") from None
    finally:
        chunks.close()


def fetch_file(source: str, file: MnistFile, destination: Path, limits: Limits) -> None:
    """Write the verified, decompressed bytes of `file` from `source` to `destination`,
    or raise FetchFailed (leaving no `destination`), its message fit for one line.

    Failures that may be transient (timeouts, dropped connections, HTTP 5xx, a damaged
    transfer) are retried once; a 404, a checksum mismatch or a deadline is not.
    """
    for attempt in range(1, ATTEMPTS_PER_SOURCE + 1):
        try:
            _fetch_once(source, file, destination, limits)
            return
        except FetchFailed as failure:
            destination.unlink(missing_ok=True)
            if not failure.transient or attempt == ATTEMPTS_PER_SOURCE:
                message = printable(redact(str(failure), source))
                raise FetchFailed(message, failure.transient) from None
        except BaseException:
            destination.unlink(missing_ok=True)
            raise
