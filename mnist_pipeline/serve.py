"""`mnist-pipeline serve`: the exported SavedModel behind TF Serving's REST API, and a
page at / where you draw a digit.

    mnist-pipeline serve                      # http://127.0.0.1:8501, like TF Serving
    curl -d '{"instances": [...]}' localhost:8501/v1/models/mnist:predict

The API is TF Serving's, so a client written against this server works unchanged
against `tensorflow/serving` loading the same models/saved_model (docs/serving.md):

- GET  /v1/models/mnist            the model's status (version 1, AVAILABLE)
- GET  /v1/models/mnist/metadata   its signature: uint8 `images` (-1, 28, 28, 1) in,
                                   float32 `probabilities` (-1, 10) out
- POST /v1/models/mnist:predict    {"instances": [image, ...]} -> {"predictions": [...]};
                                   {"inputs": images} -> {"outputs": [...]}, as TF Serving
  (also under /versions/1; an image is 28 rows of 28 [pixel] lists, integers 0-255, or
  {"images": image}; a bad request is {"error": "..."} with status 400, as TF Serving's)

The page (mnist_pipeline/page/, served from this process alone: no CDN, works offline)
posts the drawing as a PNG to POST /api/digit, which makes it MNIST-style with the very
code `mnist-pipeline predict` uses on image files (mnist_pipeline.digits) and answers
{"digit", "probabilities", "image": the 28x28 the model saw}.

Requests are bounded: bodies up to MAX_BODY_BYTES (413 beyond), a
connection idle for IDLE_TIMEOUT_S is closed, at most MAX_CONNECTIONS at once, and
WORKER_THREADS handle them; slow clients are read by one I/O thread (waitress's) and
hold no worker. Requests that arrive together are predicted as one batch.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import queue
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mnist_pipeline.arrays import IMAGE_SHAPE
from mnist_pipeline.backend import native_stderr_silenced
from mnist_pipeline.digits import read_image, to_mnist
from mnist_pipeline.export import INPUT_NAME, OUTPUT_NAME, SIGNATURE_NAME, saved_model_predictor
from mnist_pipeline.mnist import NUM_CLASSES
from mnist_pipeline.paths import SAVED_MODEL_DIR
from mnist_pipeline.stage import StageError, printable

MODEL_NAME = "mnist"
DEFAULT_PORT = 8501  # TF Serving's REST port
MAX_BODY_BYTES = 4 * 1024 * 1024  # about 1,000 images as JSON; 413 {"error"} beyond
# Bodies over twice that are cut off by waitress as they arrive (a plain 413, and the
# connection closed): the most a request can make the server read.
HARD_BODY_LIMIT = 2 * MAX_BODY_BYTES
IDLE_TIMEOUT_S = 15
MAX_CONNECTIONS = 100
WORKER_THREADS = 8
MAX_BATCH = 256  # images predicted together, at most (one larger request runs alone)
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine)")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"default: {DEFAULT_PORT}; 0 picks a free one",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=SAVED_MODEL_DIR,
        help=f"a SavedModel's version folders (default: {SAVED_MODEL_DIR}, the export stage's)",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=MAX_BATCH,
        help=f"most images predicted together from waiting requests (default: {MAX_BATCH}; "
        "1: one request at a time)",
    )


class BadRequest(Exception):
    """A request the client must fix: answered {"error": message} with `status`."""

    def __init__(self, message: str, status: str = "400 Bad Request") -> None:
        super().__init__(message)
        self.status = status


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


def images_from_json(value: Any, what: str) -> np.ndarray:
    """`value` (nested lists) as uint8 images (N, 28, 28, 1); BadRequest if it is not."""
    expected = f"{what} must be images of 28 rows of 28 [pixel] lists, integers 0-255"
    if value == []:
        raise BadRequest(f"{what} holds no image")
    try:
        array = np.array(value)
    except (ValueError, TypeError, OverflowError):  # ragged lists
        raise BadRequest(f"{expected}; the lists are not all the same length") from None
    if array.dtype.kind not in "iu":
        kinds = {"f": "numbers with fractions", "b": "true or false", "U": "strings"}
        raise BadRequest(f"{expected}; found {kinds.get(array.dtype.kind, 'other values')}")
    if array.shape[1:] != IMAGE_SHAPE:
        shape = "x".join(map(str, array.shape[1:]))
        found = f"an image shaped {shape}" if shape else "numbers, not images"
        raise BadRequest(f"{expected}; found {found}")
    if array.min() < 0 or array.max() > 255:
        raise BadRequest(f"{expected}; found {array.min() if array.min() < 0 else array.max()}")
    return array.astype(np.uint8)


def parse_predict(body: bytes) -> tuple[np.ndarray, str]:
    """The images of a TF Serving predict request and the key its answer goes under:
    'predictions' for the row format (instances), 'outputs' for the columnar (inputs)."""
    try:
        request = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise BadRequest(f"the body is not JSON: {error}") from None
    if not isinstance(request, dict):
        raise BadRequest('the body must be a JSON object with "instances" or "inputs"')
    signature = request.get("signature_name", SIGNATURE_NAME)
    if signature != SIGNATURE_NAME:
        shown = printable(str(signature), 60)
        raise BadRequest(f'signature_name "{shown}" not found; the model has "{SIGNATURE_NAME}"')
    if ("instances" in request) == ("inputs" in request):
        raise BadRequest('the body must hold one of "instances" (rows) or "inputs" (columns)')
    if "instances" in request:
        instances = request["instances"]
        if not isinstance(instances, list):
            raise BadRequest('"instances" must be a list of images')
        if instances and all(isinstance(row, dict) for row in instances):
            instances = [named(row, "an instance") for row in instances]
        return images_from_json(instances, '"instances"'), "predictions"
    inputs = request["inputs"]
    if isinstance(inputs, dict):
        inputs = named(inputs, '"inputs"')
    return images_from_json(inputs, '"inputs"'), "outputs"


def named(value: dict, what: str) -> Any:
    """The one input of a named-input dict: {"images": ...}."""
    if set(value) != {INPUT_NAME}:
        keys = ", ".join(f'"{printable(str(key), 40)}"' for key in list(value)[:5])
        raise BadRequest(f'{what} names the input "{INPUT_NAME}" only; found {keys or "none"}')
    return value[INPUT_NAME]


def model_status() -> dict:
    ok = {"error_code": "OK", "error_message": ""}
    return {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": ok}]}


def model_metadata() -> dict:
    def tensor(name: str, dtype: str, shape: tuple[int, ...]) -> dict:
        dims = [{"size": str(size), "name": ""} for size in shape]
        return {"dtype": dtype, "tensor_shape": {"dim": dims, "unknown_rank": False}, "name": name}

    signature = {
        "inputs": {
            INPUT_NAME: tensor(f"{SIGNATURE_NAME}_{INPUT_NAME}:0", "DT_UINT8", (-1, *IMAGE_SHAPE))
        },
        "outputs": {
            OUTPUT_NAME: tensor("StatefulPartitionedCall:0", "DT_FLOAT", (-1, NUM_CLASSES))
        },
        "method_name": "tensorflow/serving/predict",
    }
    return {
        "model_spec": {"name": MODEL_NAME, "signature_name": "", "version": "1"},
        "metadata": {"signature_def": {"signature_def": {SIGNATURE_NAME: signature}}},
    }


def page_files() -> dict[str, Path]:
    """The drawing page's files by URL path: / is index.html."""
    files = {f"/{path.name}": path for path in PAGE_DIR.iterdir() if path.suffix in CONTENT_TYPES}
    files["/"] = PAGE_DIR / "index.html"
    return files


class App:
    """The WSGI application: routes, JSON in and out, errors as {"error": ...}."""

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], max_batch: int) -> None:
        self.predict = Batcher(predict, max_batch)
        self.drawn_digit(_bar_png())  # so the first request pays for no first-call setup
        self.pages = {
            url: (path.read_bytes(), CONTENT_TYPES[path.suffix])
            for url, path in page_files().items()
        }
        model = f"/v1/models/{MODEL_NAME}"
        self.routes: dict[tuple[str, str], Callable[[bytes], Any]] = {
            ("GET", model): lambda _: model_status(),
            ("GET", f"{model}/versions/1"): lambda _: model_status(),
            ("GET", f"{model}/metadata"): lambda _: model_metadata(),
            ("GET", f"{model}/versions/1/metadata"): lambda _: model_metadata(),
            ("POST", f"{model}:predict"): self.tf_serving_predict,
            ("POST", f"{model}/versions/1:predict"): self.tf_serving_predict,
            ("POST", "/api/digit"): self.drawn_digit,
        }

    def tf_serving_predict(self, body: bytes) -> dict:
        images, key = parse_predict(body)
        return {key: self.predict(images).tolist()}

    def drawn_digit(self, body: bytes) -> dict:
        try:
            digit = to_mnist(read_image(io.BytesIO(body)))
        except ValueError as error:
            raise BadRequest(str(error)) from None
        (probabilities,) = self.predict(digit[None, :, :, None])
        return {
            "digit": int(probabilities.argmax()),
            "probabilities": probabilities.tolist(),
            "image": digit.tolist(),
        }

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        if method == "GET" and path in self.pages:
            content, content_type = self.pages[path]
            start_response("200 OK", [("Content-Type", content_type), *PAGE_HEADERS])
            return [content]
        try:
            route = self.routes.get((method, path))
            if route is None:
                raise self.no_route(method, path)
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if length > MAX_BODY_BYTES:
                raise BadRequest(
                    f"the body is {length:,} bytes, over the limit of {MAX_BODY_BYTES:,}; "
                    "send fewer images a request",
                    "413 Payload Too Large",
                )
            answer, status = route(environ["wsgi.input"].read(length)), "200 OK"
        except BadRequest as error:
            answer, status = {"error": str(error)}, error.status
        body = json.dumps(answer).encode()
        start_response(
            status, [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        )
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
            "(:predict, /metadata), the drawing page at /",
            "404 Not Found",
        )


def _bar_png() -> bytes:
    """A PNG of a white bar on black: a digit 1 for warming up."""
    pixels = np.zeros((28, 28), np.uint8)
    pixels[6:22, 13:15] = 255
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, "PNG")
    return png.getvalue()


def latest_version(model_dir: Path) -> Path:
    """The highest-numbered version folder in `model_dir`, as TF Serving picks."""
    versions = [p for p in model_dir.iterdir() if p.name.isdigit()] if model_dir.is_dir() else []
    if not versions:
        raise StageError(
            f"{model_dir}: no SavedModel version folder; run the export stage (dvc repro)"
        )
    return max(versions, key=lambda path: int(path.name))


def run(args: argparse.Namespace) -> None:
    import waitress

    # Waitress warns on every request that waits for a worker: normal under load.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    if args.max_batch < 1:
        raise StageError(f"--max-batch {args.max_batch}: must be 1 or more")
    version = latest_version(args.model_dir)
    with native_stderr_silenced():  # TensorFlow's start-up notes
        predict = saved_model_predictor(version)
    app = App(predict, args.max_batch)
    try:
        server = waitress.create_server(
            app,
            host=args.host,
            port=args.port,
            threads=WORKER_THREADS,
            max_request_body_size=HARD_BODY_LIMIT,
            channel_timeout=IDLE_TIMEOUT_S,
            connection_limit=MAX_CONNECTIONS,
            ident="mnist-pipeline",
        )
    except OSError as error:
        raise StageError(
            f"cannot listen on {args.host}:{args.port}: {error.strerror or error}; pick another --port"
        ) from None
    url = f"http://{args.host}:{server.effective_port}"
    print(
        f"serving {version} as '{MODEL_NAME}' at {url}/v1/models/{MODEL_NAME}; draw a digit at {url}/",
        flush=True,
    )
    try:
        server.run()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
