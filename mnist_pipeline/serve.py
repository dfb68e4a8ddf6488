"""`mnist-pipeline serve`: the exported model behind the two protocols clients already
use, TF Serving's REST API (mnist_pipeline.tf_serving) and the Open Inference Protocol,
KServe's V2 (mnist_pipeline.open_inference), and a page at / where you draw a digit.

    mnist-pipeline serve                    # http://127.0.0.1:8501, like TF Serving
    mnist-pipeline serve --runtime onnx     # the ONNX copy in ONNX Runtime: no TensorFlow
    curl --json @digit.json localhost:8501/v1/models/mnist:predict

The page (mnist_pipeline/page/, served from this process alone: no CDN, works offline)
posts the drawing as a PNG to POST /api/digit, which makes it MNIST-style with the very
code `mnist-pipeline predict` uses on image files (mnist_pipeline.digits) and answers
{"digit", "probabilities", "image": the 28x28 the model saw}.

What arrives over the network is bounded (docs/serving.md, "Holding under abuse"):

- a body over MAX_BODY_BYTES is refused (413), and bodies being read at once may
  hold BODIES_BYTES in all (503 beyond); a request's headers must be in within
  HEADERS_DEADLINE_S of its first byte, its body within BODY_DEADLINE_S of its headers
  (408 and closed, however steadily the bytes trickle); a connection idle for
  IDLE_TIMEOUT_S is closed. One I/O thread (waitress's) reads every connection, up to
  MAX_CONNECTIONS at once, so a slow client holds none of the WORKER_THREADS;
- drawings are PNG only, of at most DRAWING_MAX_PIXELS, read in DRAWING_WORKERS
  processes of their own: one not read within DRAWING_DEADLINE_S is stopped (the
  process killed) and answered 503, as are drawings beyond DRAWING_WORKERS +
  DRAWING_WAITING at once;
- bound to this machine (the default), only loopback Host names are answered (421), so
  a web page on a rebound DNS name cannot read it; a cross-site request (its Origin or
  Sec-Fetch-Site) is refused (403); a POST's Content-Type must be its endpoint's (415):
  a browser can send no cross-site request that passes. Another interface needs
  --allow-remote, and prints a warning; there, IP addresses and --allow-host names are
  answered too, never a name an attacker's DNS could point here.

Requests that arrive together are predicted as one batch.
"""

from __future__ import annotations

import argparse
import io
import ipaddress
import json
import logging
import multiprocessing
import queue
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
import pebble
from PIL import Image
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer

from mnist_pipeline import open_inference, tf_serving
from mnist_pipeline.digits import check_drawing_size, drawing_to_mnist
from mnist_pipeline.paths import ONNX_FILE, SAVED_MODEL_DIR
from mnist_pipeline.serving_inputs import BadRequest
from mnist_pipeline.stage import StageError, printable

MODEL_NAME = "mnist"
SERVER_NAME = "mnist-pipeline"
DEFAULT_PORT = 8501  # TF Serving's REST port
MAX_BODY_BYTES = 4 * 1024 * 1024  # about 1,000 images as JSON; 413 {"error"} beyond
# Bodies of this size or more are cut off by waitress as they arrive (a plain 413, and
# the connection closed): the most a request can make the server read.
HARD_BODY_LIMIT = 2 * MAX_BODY_BYTES
BODIES_BYTES = 64 * 1024 * 1024  # bodies being read at once, all connections together
HEADERS_DEADLINE_S = 10  # from a request's first byte (or a connection's opening)
BODY_DEADLINE_S = 30  # from the end of its headers: 4 MiB at 140 KB/s
IDLE_TIMEOUT_S = 15  # between requests on a kept-alive connection
MAX_CONNECTIONS = 1000
WORKER_THREADS = 8
MAX_BATCH = 256  # images predicted together, at most (one larger request runs alone)
DRAWING_WORKERS = 2  # processes reading drawings: the cores of a small machine
DRAWING_WAITING = 2  # drawings that may wait for one; more at once are answered 503
DRAWING_DEADLINE_S = 2.0  # a 2048x2048 drawing takes about 0.2 s on the 2-core machine
PAGE_DIR = Path(__file__).parent / "page"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The page may load only what this server serves (and draw the model's view as a data: URL).
PAGE_HEADERS = [
    ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:"),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-cache"),
]
JSON = "application/json"
# Each runtime: the V2 platform name, and how its predictor loads (imported when chosen).
RUNTIMES = {"savedmodel": "tensorflow_savedmodel", "onnx": "onnxruntime_onnx"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runtime",
        choices=sorted(RUNTIMES),
        default="savedmodel",
        help="savedmodel (default): TensorFlow runs the SavedModel; onnx: ONNX Runtime runs "
        "the ONNX copy, without TensorFlow",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        help=f"--runtime savedmodel: a SavedModel's version folders (default: {SAVED_MODEL_DIR})",
    )
    parser.add_argument(
        "--onnx-file", type=Path, help=f"--runtime onnx: the ONNX model (default: {ONNX_FILE})"
    )
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine)")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host other than this machine's loopback: every machine that reaches it "
        "can use the model, without authentication",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests for this host name (repeatable), e.g. the name a proxy "
        "or other machines use",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"default: {DEFAULT_PORT}; 0 picks a free one",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=MAX_BATCH,
        help=f"most images predicted together from waiting requests (default: {MAX_BATCH}; "
        "1: one request at a time)",
    )


class Batcher:
    """Calls `predict` from one thread, on the images of the requests waiting together."""

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], max_batch: int) -> None:
        self._predict = predict
        self._max_batch = max_batch
        self._waiting: queue.SimpleQueue[tuple[np.ndarray, Future]] = queue.SimpleQueue()
        threading.Thread(target=self._work, name="batcher", daemon=True).start()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        answer: Future = Future()
        self._waiting.put((images, answer))
        return answer.result()

    def _work(self) -> None:
        while True:
            batch = [self._waiting.get()]
            size = len(batch[0][0])
            while size < self._max_batch and not self._waiting.empty():
                batch.append(self._waiting.get())
                size += len(batch[-1][0])
            try:
                probabilities = self._predict(np.concatenate([images for images, _ in batch]))
            except Exception as error:  # the model failed: every waiting request hears why
                for _, answer in batch:
                    answer.set_exception(error)
                continue
            start = 0
            for images, answer in batch:
                answer.set_result(probabilities[start : start + len(images)])
                start += len(images)


class DrawingReader:
    """Makes drawings (PNG bytes) MNIST-style in processes of their own, so that no
    drawing holds a worker thread, the server's memory or a core for longer than
    DRAWING_DEADLINE_S: one that takes longer has its process killed (and replaced)."""

    def __init__(self) -> None:
        # spawn: the processes start clean, not as copies of a server holding TensorFlow
        context = multiprocessing.get_context("spawn")
        self._pool = pebble.ProcessPool(max_workers=DRAWING_WORKERS, context=context)
        self._slots = threading.BoundedSemaphore(DRAWING_WORKERS + DRAWING_WAITING)

    def __call__(self, png: bytes) -> np.ndarray:
        try:
            check_drawing_size(png)  # a bomb is refused here, taking no process
        except ValueError as error:
            raise BadRequest(str(error)) from None
        if not self._slots.acquire(blocking=False):
            raise BadRequest(
                f"busy: {DRAWING_WORKERS + DRAWING_WAITING} drawings are being read; "
                "try again in a moment",
                "503 Service Unavailable",
            )
        try:
            future = self._pool.submit(drawing_to_mnist, DRAWING_DEADLINE_S, png)
            try:  # the deadline counts the wait for a process too
                return future.result(timeout=DRAWING_DEADLINE_S)
            except TimeoutError:
                future.cancel()  # kills the process if it is still reading
                raise BadRequest(
                    f"the drawing took over {DRAWING_DEADLINE_S:g} s to read; send a smaller PNG",
                    "503 Service Unavailable",
                ) from None
            except ValueError as error:
                raise BadRequest(str(error)) from None
            except (pebble.ProcessExpired, BrokenProcessPool) as error:
                raise BadRequest(
                    f"the drawing could not be read: {printable(str(error), 80)}",
                    "503 Service Unavailable",
                ) from None
        finally:
            self._slots.release()

    def close(self) -> None:
        self._pool.stop()


@dataclass
class Route:
    """An endpoint: what it answers with, and the Content-Types its POST body may have."""

    answer: Callable[[bytes, dict], Any]
    media_types: tuple[str, ...] = ()


@dataclass
class Raw:
    """An answer that is not plain JSON: its body and headers."""

    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


class App:
    """The WSGI application: who may ask, routes, JSON in and out, errors as {"error"}."""

    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        max_batch: int,
        platform: str,
        hosts: HostPolicy,
    ) -> None:
        self.predict = Batcher(predict, max_batch)
        self.hosts = hosts
        self.read_drawing = DrawingReader()
        self.drawn_digit(_bar_png(), {})  # starts the drawing processes before any request
        self.pages = {
            url: (path.read_bytes(), CONTENT_TYPES[path.suffix])
            for url, path in page_files().items()
        }
        v1, v2 = f"/v1/models/{MODEL_NAME}", f"/v2/models/{MODEL_NAME}"
        status, v1_metadata = tf_serving.model_status(), tf_serving.model_metadata(MODEL_NAME)
        server = open_inference.server_metadata(SERVER_NAME, package_version("mnist-dvc-pipeline"))
        v2_metadata = open_inference.model_metadata(MODEL_NAME, platform)
        ready = {"name": MODEL_NAME, "ready": True}
        tf_serving_model = {  # under /v1/models/mnist and /v1/models/mnist/versions/1
            ("GET", ""): Route(lambda *_: status),
            ("GET", "/metadata"): Route(lambda *_: v1_metadata),
            ("POST", ":predict"): Route(self.tf_serving_predict, (JSON,)),
        }
        open_inference_model = {  # under /v2/models/mnist and /v2/models/mnist/versions/1
            ("GET", ""): Route(lambda *_: v2_metadata),
            ("GET", "/ready"): Route(lambda *_: ready),
            ("POST", "/infer"): Route(
                self.open_inference_infer, (JSON, "application/octet-stream")
            ),
        }
        self.routes: dict[tuple[str, str], Route] = {
            (method, f"{model}{suffix}"): route
            for base, endpoints in ((v1, tf_serving_model), (v2, open_inference_model))
            for model in (base, f"{base}/versions/1")
            for (method, suffix), route in endpoints.items()
        }
        self.routes |= {
            ("GET", "/v2"): Route(lambda *_: server),
            ("GET", "/v2/health/live"): Route(lambda *_: {"live": True}),
            ("GET", "/v2/health/ready"): Route(lambda *_: {"ready": True}),
            ("POST", "/api/digit"): Route(self.drawn_digit, ("image/png",)),
        }

    def tf_serving_predict(self, body: bytes, environ: dict) -> dict:
        images, key = tf_serving.parse_predict(body)
        return {key: self.predict(images).tolist()}

    def open_inference_infer(self, body: bytes, environ: dict) -> Raw:
        header_length = environ.get("HTTP_INFERENCE_HEADER_CONTENT_LENGTH")
        request = open_inference.parse_infer(body, header_length)
        content, headers = open_inference.infer_answer(
            request, self.predict(request.images), MODEL_NAME
        )
        return Raw(content, headers)

    def drawn_digit(self, body: bytes, environ: dict) -> dict:
        digit = self.read_drawing(body)
        (probabilities,) = self.predict(digit[None, :, :, None])
        return {
            "digit": int(probabilities.argmax()),
            "probabilities": probabilities.tolist(),
            "image": digit.tolist(),
        }

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        headers = [("Content-Type", JSON), ("Cache-Control", "no-store")]
        try:
            check_caller(environ, self.hosts)
            if method == "GET" and path in self.pages:
                content, content_type = self.pages[path]
                start_response("200 OK", [("Content-Type", content_type), *PAGE_HEADERS])
                return [content]
            route = self.routes.get((method, path))
            if route is None:
                raise self.no_route(method, path)
            if method == "POST":
                check_content_type(environ, route.media_types)
                check_no_encoding(environ)
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if length > MAX_BODY_BYTES:
                raise BadRequest(
                    f"the body is {length:,} bytes, over the limit of {MAX_BODY_BYTES:,}; "
                    "send fewer images a request",
                    "413 Payload Too Large",
                )
            answer, status = route.answer(environ["wsgi.input"].read(length), environ), "200 OK"
        except BadRequest as error:
            answer, status = {"error": str(error)}, error.status
        except Exception as error:  # a bug: the client still gets JSON, the log the traceback
            logging.getLogger(SERVER_NAME).exception("%s %s failed", method, printable(path, 80))
            answer = {"error": f"the server failed on this request ({type(error).__name__})"}
            status = "500 Internal Server Error"
        if isinstance(answer, Raw):
            body, headers = answer.body, [*answer.headers, ("Cache-Control", "no-store")]
        else:
            body = json.dumps(answer).encode()
        start_response(status, headers)
        return [body]

    def no_route(self, method: str, path: str) -> BadRequest:
        allowed = sorted(m for m, p in self.routes if p == path) or (
            ["GET"] if path in self.pages else []
        )
        if allowed:
            return BadRequest(
                f"{method} {printable(path, 80)}: use {' or '.join(allowed)}",
                "405 Method Not Allowed",
            )
        return BadRequest(
            f"no such path: {printable(path, 80)}; the model is at /v1/models/{MODEL_NAME} "
            f"(TF Serving's API) and /v2/models/{MODEL_NAME} (Open Inference Protocol), "
            "the drawing page at /",
            "404 Not Found",
        )

    def close(self) -> None:
        self.read_drawing.close()


@dataclass(frozen=True)
class HostPolicy:
    """The Host names the server answers: loopback ones always; bound to another
    interface (--allow-remote), also IP addresses and the names given with --allow-host.
    A name an attacker's DNS can point here (DNS rebinding) is never among them."""

    remote: bool = False
    names: frozenset[str] = frozenset()

    def allows(self, name: str) -> bool:
        if is_loopback(name) or name in self.names:
            return True
        if not self.remote:
            return False
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    def allowed(self) -> str:
        """The names allowed, as a message says them."""
        names = ["localhost", "127.0.0.1", "[::1]", *sorted(self.names)]
        return ", ".join(names) + (", and IP addresses" if self.remote else "")


def check_caller(environ: dict, hosts: HostPolicy) -> None:
    """Refuse requests for another host name (a DNS-rebinding page's) and requests a
    browser sends from another site's page."""
    host = environ.get("HTTP_HOST")
    if host is not None and not hosts.allows(host_name(host)):
        raise BadRequest(
            f"Host {printable(host, 80)} is not this server: it answers {hosts.allowed()} "
            "(serve --allow-host NAME for another name)",
            "421 Misdirected Request",
        )
    origin = environ.get("HTTP_ORIGIN")
    own = {f"{scheme}://{host}".lower() for scheme in ("http", "https")} if host else set()
    if origin is not None and origin.lower() not in own:
        raise BadRequest(
            f"a request from the page of {printable(origin, 80)} is refused: only this "
            "server's own page may call it",
            "403 Forbidden",
        )
    site = environ.get("HTTP_SEC_FETCH_SITE")
    if site is not None and site not in ("same-origin", "none"):
        raise BadRequest(
            f"a {printable(site, 20)} request is refused: only this server's own page may call it",
            "403 Forbidden",
        )


def check_no_encoding(environ: dict) -> None:
    """A compressed body is refused: its size once decompressed is not bounded."""
    encoding = environ.get("HTTP_CONTENT_ENCODING", "identity").strip().lower()
    if encoding != "identity":
        raise BadRequest(
            f"Content-Encoding {printable(encoding, 40)} is not supported: send the body "
            "uncompressed",
            "415 Unsupported Media Type",
        )


def check_content_type(environ: dict, media_types: tuple[str, ...]) -> None:
    """A POST's body must say it is of one of `media_types`; a client that says nothing
    is taken at its word only when it is not a browser (which always says, and marks its
    requests with Origin or Sec-Fetch-* headers)."""
    given = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    browser = any(
        f"HTTP_{name}" in environ for name in ("ORIGIN", "SEC_FETCH_SITE", "SEC_FETCH_MODE")
    )
    if given in media_types or (not given and not browser):
        return
    curl = " (curl: --json)" if media_types[0] == JSON else ""
    raise BadRequest(
        f"Content-Type {printable(given, 60) or 'missing'}: this endpoint takes "
        f"{' or '.join(media_types)}{curl}",
        "415 Unsupported Media Type",
    )


def host_name(host: str) -> str:
    """The name in a Host header, without its port: '[::1]:8501' -> '::1'."""
    if host.startswith("["):
        return host[1:].split("]")[0]
    return (host.rsplit(":", 1)[0] if host.count(":") == 1 else host).lower().rstrip(".")


def is_loopback(name: str) -> bool:
    """Whether `name` (a host name or address) is this machine's loopback."""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def page_files() -> dict[str, Path]:
    """The drawing page's files by URL path: / is index.html."""
    files = {f"/{path.name}": path for path in PAGE_DIR.iterdir() if path.suffix in CONTENT_TYPES}
    files["/"] = PAGE_DIR / "index.html"
    return files


def _bar_png() -> bytes:
    """A PNG of a white bar on black: a digit 1 for warming up."""
    pixels = np.zeros((28, 28), np.uint8)
    pixels[6:22, 13:15] = 255
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, "PNG")
    return png.getvalue()


class DeadlineChannel(HTTPChannel):
    """waitress's connection, with deadlines for a request's headers and its body that no
    trickle of bytes restarts (waitress's own timeout restarts on every byte), and a
    bound on what bodies make the server hold: a body is read only while the declared
    sizes of those being read fit in BODIES_BYTES (waitress buffers them in memory or
    temporary files)."""

    server: Server

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timed: object = None  # the partly read request the times below are of
        self._started: float | None = time.monotonic()  # its first byte; at first, the opening
        self._headers_in: float | None = None
        self._reserved = 0  # bytes of BODIES_BYTES its body holds

    def received(self, data: bytes) -> bool:
        result = super().received(data)
        now = time.monotonic()
        if self.request is None:  # every request read is whole: no deadline runs
            self._timed, self._started, self._headers_in = None, None, None
            self._release()
        elif self.request is not self._timed:  # a new request has begun
            self._release()
            self._timed, self._started, self._headers_in = self.request, now, None
        request = self.request
        if request is not None and request.headers_finished and not self._headers_in:
            self._headers_in = now
            self._admit_body(request)
        return result

    def _admit_body(self, request: Any) -> None:
        """Read a body only while the server has room for it (503 otherwise). One over
        MAX_BODY_BYTES is still read, up to HARD_BODY_LIMIT, so that the client hears
        413 (closing on a client still sending would reset its connection unanswered)."""
        size = HARD_BODY_LIMIT if request.chunked else request.content_length
        if self.server.reserve(size):
            self._reserved = size
        else:
            self._answer_and_close(
                "503 Service Unavailable",
                "busy: other requests' bodies are being read; try again in a moment",
            )

    def _release(self) -> None:
        self.server.release(self._reserved)
        self._reserved = 0

    def handle_close(self) -> None:
        self._release()
        super().handle_close()

    def enforce_deadlines(self) -> None:
        """Answer 408 and close if the request being read is past a deadline."""
        late = self._late()
        if late:
            self._answer_and_close("408 Request Timeout", late)

    def _late(self) -> str | None:
        if self._started is None or self.will_close or self.close_when_flushed:
            return None
        now = time.monotonic()
        if self._headers_in is None and now - self._started > HEADERS_DEADLINE_S:
            return f"the request's headers took over {HEADERS_DEADLINE_S} s to arrive"
        if self._headers_in is not None and now - self._headers_in > BODY_DEADLINE_S:
            return f"the request's body took over {BODY_DEADLINE_S} s to arrive"
        return None

    def _answer_and_close(self, status: str, message: str) -> None:
        """Drop the request being read, answer it {"error": message}, and close."""
        self._started = None
        self._release()
        with self.requests_lock:  # as waitress's worker threads take it for self.request
            self.request = None
            if self.requests:  # an earlier request's answer is being written: just close
                self.will_close = True
                return
            body = json.dumps({"error": message}).encode()
            response = (
                b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (status.encode(), len(body), body)
            )
            with self.outbuf_lock:
                self.outbufs[-1].append(response)
                self.current_outbuf_count += len(response)
                self.total_outbufs_len += len(response)
            self.close_when_flushed = True


class Server(TcpWSGIServer):
    """waitress's server, its connections DeadlineChannels: it enforces their deadlines
    at each cleanup (every `cleanup_interval` seconds), beside waitress's idle timeout,
    and keeps the count of the body bytes they may hold. All of it runs in waitress's
    one I/O thread."""

    channel_class = DeadlineChannel
    bodies_reserved = 0

    def maintenance(self, now: float) -> None:
        super().maintenance(now)
        for channel in list(self.active_channels.values()):
            channel.enforce_deadlines()

    def reserve(self, size: int) -> bool:
        if self.bodies_reserved + size > BODIES_BYTES:
            return False
        self.bodies_reserved += size
        return True

    def release(self, size: int) -> None:
        self.bodies_reserved -= size


def latest_version(model_dir: Path) -> Path:
    """The highest-numbered version folder in `model_dir`, as TF Serving picks."""
    versions = [p for p in model_dir.iterdir() if p.name.isdigit()] if model_dir.is_dir() else []
    if not versions:
        raise StageError(
            f"{model_dir}: no SavedModel version folder; run the export stage (dvc repro)"
        )
    return max(versions, key=lambda path: int(path.name))


def load_predictor(args: argparse.Namespace) -> tuple[Callable[[np.ndarray], np.ndarray], Path]:
    """The chosen runtime's predictor, and the model file or folder it serves."""
    from mnist_pipeline.export import onnx_predictor, saved_model_predictor

    if args.runtime == "onnx":
        if args.model_dir is not None:
            raise StageError(
                "--model-dir is the SavedModel's: with --runtime onnx, give --onnx-file"
            )
        path = args.onnx_file or ONNX_FILE
        if not path.is_file():
            raise StageError(f"{path}: no ONNX model; run the export stage (dvc repro)")
        # One core: the others parse requests. Its idle threads would spin, taking them.
        return onnx_predictor(path, threads=1), path
    if args.onnx_file is not None:
        raise StageError(
            "--onnx-file is for --runtime onnx; the SavedModel's folder is --model-dir"
        )
    from mnist_pipeline.backend import native_stderr_silenced

    version = latest_version(args.model_dir or SAVED_MODEL_DIR)
    with native_stderr_silenced():  # TensorFlow's start-up notes
        return saved_model_predictor(version), version


def run(args: argparse.Namespace) -> None:
    # Waitress warns on every request that waits for a worker: normal under load.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    if args.max_batch < 1:
        raise StageError(f"--max-batch {args.max_batch}: must be 1 or more")
    loopback = is_loopback(args.host)
    if not loopback and not args.allow_remote:
        raise StageError(
            f"--host {printable(args.host, 60)} serves other machines too, with no "
            "authentication: add --allow-remote to mean it"
        )
    if not loopback:
        print(
            f"{SERVER_NAME} serve: warning: serving on {args.host}: every machine that reaches "
            "this one can use the model, without authentication",
            file=sys.stderr,
            flush=True,
        )
    predict, served = load_predictor(args)
    _allow_open_files(MAX_CONNECTIONS + 100)
    try:
        hosts = HostPolicy(not loopback, frozenset(name.lower() for name in args.allow_host))
        app = App(predict, args.max_batch, RUNTIMES[args.runtime], hosts)
    except BadRequest as error:  # the drawing processes did not start
        raise StageError(f"cannot start reading drawings: {error}") from None
    try:
        server = Server(
            app,
            host=args.host,
            port=args.port,
            threads=WORKER_THREADS,
            max_request_body_size=HARD_BODY_LIMIT,
            channel_timeout=IDLE_TIMEOUT_S,
            cleanup_interval=1,
            connection_limit=MAX_CONNECTIONS,
            asyncore_use_poll=True,  # select() stops at 1,024 connections
            ident=SERVER_NAME,
        )
    except OSError as error:
        app.close()
        raise StageError(
            f"cannot listen on {args.host}:{args.port}: {error.strerror or error}; pick another --port"
        ) from None
    shown = f"[{args.host}]" if ":" in args.host else args.host  # an IPv6 address
    url = f"http://{shown}:{server.effective_port}"
    print(
        f"serving {served} ({args.runtime}) as '{MODEL_NAME}' at {url}/v1/models/{MODEL_NAME} "
        f"and {url}/v2/models/{MODEL_NAME}; draw a digit at {url}/",
        flush=True,
    )
    try:
        server.run()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        app.close()


def _allow_open_files(count: int) -> None:
    """Raise this process's open-file limit to `count` where the hard limit allows: each
    connection is one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count if hard == resource.RLIM_INFINITY else min(count, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
