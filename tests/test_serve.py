"""`mnist-pipeline serve`: TF Serving's REST API on 127.0.0.1 over the exported SavedModel,
answering as `mnist-pipeline predict` does; a bad request is one {"error"} with status
400, never a crash; concurrent requests, batched together, each get their own answer;
slow clients hold no worker; bodies are bounded."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import numpy as np
import pytest

from .helpers import run_command

pytestmark = pytest.mark.slow  # the trained project: a small pipeline run

FIRST = 5  # test images sent


@pytest.fixture(scope="module")
def test_images(trained_project) -> np.ndarray:
    return np.load(trained_project / "data/processed/test_images.npy")


@pytest.fixture(scope="module")
def predicted(trained_project) -> np.ndarray:
    """`mnist-pipeline predict --json` on the first test images: the Keras model's answer."""
    indices = [part for index in range(FIRST) for part in ("--index", str(index))]
    result = run_command(trained_project, "predict", "--json", *indices)
    assert result.returncode == 0, result.stderr
    return np.array([answer["probabilities"] for answer in json.loads(result.stdout)])


PNG = {"Content-Type": "image/png"}


def body(value: object) -> bytes:
    return json.dumps(value).encode()


def test_status_and_metadata_are_tf_servings(model_server):
    assert model_server.call("/v1/models/mnist") == (
        200,
        {
            "model_version_status": [
                {
                    "version": "1",
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        },
    )
    status, metadata = model_server.call("/v1/models/mnist/metadata")
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert status == 200 and metadata["model_spec"] == {
        "name": "mnist",
        "signature_name": "",
        "version": "1",
    }
    assert signature["inputs"]["images"]["dtype"] == "DT_UINT8"
    assert [d["size"] for d in signature["inputs"]["images"]["tensor_shape"]["dim"]] == [
        "-1",
        "28",
        "28",
        "1",
    ]
    assert [d["size"] for d in signature["outputs"]["probabilities"]["tensor_shape"]["dim"]] == [
        "-1",
        "10",
    ]


def test_curl_gets_the_probabilities_predict_prints(model_server, test_images, predicted, tmp_path):
    """The README's curl command, rows (instances) and columns (inputs), named or not."""
    images = test_images[:FIRST].tolist()
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"instances": images}))
    curl = shutil.which("curl")
    if curl:
        out = subprocess.run(
            [curl, "-s", "--json", f"@{request}", f"{model_server.url}/v1/models/mnist:predict"],
            capture_output=True,
            check=True,
        ).stdout
        rows = json.loads(out)["predictions"]
    else:  # the same request without curl
        rows = model_server.call("/v1/models/mnist:predict", request.read_bytes())[1]["predictions"]
    answers = {
        "rows": rows,
        "named rows": model_server.call(
            "/v1/models/mnist/versions/1:predict",
            body({"instances": [{"images": i} for i in images]}),
        )[1]["predictions"],
        "columns": model_server.call("/v1/models/mnist:predict", body({"inputs": images}))[1][
            "outputs"
        ],
        "named columns": model_server.call(
            "/v1/models/mnist:predict",
            body({"inputs": {"images": images}, "signature_name": "serving_default"}),
        )[1]["outputs"],
    }
    for form, answer in answers.items():
        assert np.abs(np.array(answer) - predicted).max() <= 1e-6, form  # SavedModel vs Keras


BAD_REQUESTS = [
    (b"{not json", "the body is not JSON"),
    (b"[" * 100_000, "the body is not JSON"),
    (b"[1, 2]", 'the body must be a JSON object with "instances" or "inputs"'),
    (b"{}", 'the body must hold one of "instances" (rows) or "inputs" (columns)'),
    (body({"instances": [], "inputs": []}), "must hold one of"),
    (body({"instances": []}), '"instances" holds no image'),
    (body({"instances": 7}), '"instances" must be a list of images'),
    (body({"instances": [[[0]] * 28] * 28}), "found an image shaped 28x1"),
    (body({"instances": [[[[0]] * 28] * 27]}), "found an image shaped 27x28x1"),
    (body({"instances": [1, 2, 3]}), "found numbers, not images"),
    (body({"instances": [[[[0.5]] * 28] * 28]}), "found numbers with fractions"),
    (body({"instances": [[[["7"]] * 28] * 28]}), "found strings"),
    (body({"instances": [[[[256]] * 28] * 28]}), "integers 0-255; found 256"),
    (body({"instances": [[[[-1]] * 28] * 28]}), "integers 0-255; found -1"),
    (body({"instances": [[[[10**30]] * 28] * 28]}), "found other values"),
    (body({"instances": [[]]}), "found an image shaped 0"),
    (body({"instances": [[[[0]] * 27 + [[True]]] * 28]}), "integers 0-255; found true or false"),
    (
        body({"instances": [[[[0]] * 28] * 28, [[[0]] * 27] * 28]}),
        "the lists are not all the same length",
    ),
    (body({"instances": [{"pixels": 1}]}), 'names the input "images" only; found "pixels"'),
    (body({"inputs": {"images": 1, "x": 2}}), 'names the input "images" only'),
    (body({"signature_name": "predict", "instances": [1]}), 'signature_name "predict" not found'),
]


@pytest.mark.parametrize(("request_body", "message"), BAD_REQUESTS)
def test_a_bad_request_is_one_line_in_tf_servings_error_shape(model_server, request_body, message):
    status, answer = model_server.call("/v1/models/mnist:predict", request_body)
    assert status == 400
    assert list(answer) == ["error"] and message in answer["error"]
    assert "\n" not in answer["error"] and len(answer["error"]) < 300


def test_wrong_paths_methods_and_sizes_get_their_status(model_server):
    status, answer = model_server.call("/v1/models/nope:predict", b"{}")
    assert status == 404 and "no such path: /v1/models/nope:predict" in answer["error"]
    assert model_server.call("/v1/models/mnist:predict") == (
        405,
        {"error": "GET /v1/models/mnist:predict: use POST"},
    )
    status, answer = model_server.call("/v1/models/mnist:predict", b" " * (4 * 1024 * 1024 + 1))
    assert status == 413
    assert answer["error"].startswith("the body is 4,194,305 bytes, over the limit of 4,194,304")
    status, answer = model_server.call("/api/digit", b"GIF89a broken", headers=PNG)
    assert status == 400 and answer["error"].startswith("not a readable image")


def test_concurrent_clients_each_get_their_own_answer(model_server, test_images):
    """16 clients at once, each sending its own images (1 to 4 a request): the server
    batches them together, and every answer is the one for the images sent."""
    alone = np.array(
        model_server.call(
            "/v1/models/mnist:predict", body({"instances": test_images[:64].tolist()})
        )[1]["predictions"]
    )

    def client(number: int) -> list[bool]:
        matches = []
        for round_ in range(8):
            start = (number * 4 + round_) % 60
            count = 1 + (number + round_) % 4
            status, answer = model_server.call(
                "/v1/models/mnist:predict",
                body({"instances": test_images[start : start + count].tolist()}),
            )
            got = np.array(answer["predictions"])
            matches.append(
                status == 200 and np.abs(got - alone[start : start + count]).max() <= 1e-6
            )
        return matches

    with ThreadPoolExecutor(16) as pool:
        results = [match for matches in pool.map(client, range(16)) for match in matches]
    assert len(results) == 128 and all(results)


def test_slow_clients_hold_no_worker(model_server, test_images):
    """More half-sent requests than worker threads are open; the server still answers."""
    address = urlsplit(model_server.url)
    stalled = []
    for _ in range(12):  # WORKER_THREADS is 8
        connection = socket.create_connection((address.hostname, address.port), timeout=10)
        connection.sendall(
            b"POST /v1/models/mnist:predict HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{"
        )
        stalled.append(connection)
    try:
        status, answer = model_server.call(
            "/v1/models/mnist:predict", body({"instances": test_images[:1].tolist()})
        )
        assert status == 200 and len(answer["predictions"]) == 1
    finally:
        for connection in stalled:
            connection.close()


def test_the_server_survives_every_bad_request_without_a_traceback(model_server):
    """Every bad request above, and a body over the limit, sent in turn: the server is
    still up afterwards and has printed no traceback or error."""
    for request_body, _ in BAD_REQUESTS:
        assert model_server.call("/v1/models/mnist:predict", request_body)[0] == 400
    assert model_server.call("/v1/models/mnist:predict", b" " * (4 * 1024 * 1024 + 1))[0] == 413
    assert model_server.call("/api/digit", b"GIF89a broken", headers=PNG)[0] == 400
    assert model_server.call("/v1/models/mnist")[0] == 200
    assert not [line for line in model_server.output if "Traceback" in line or "Error" in line]


def test_bad_command_lines_are_one_line_errors(trained_project, model_server, tmp_path):
    port = str(urlsplit(model_server.url).port)
    for args, message in [
        (
            ("--model-dir", str(tmp_path)),
            f"{tmp_path}: no SavedModel version folder; run the export stage (dvc repro)",
        ),
        (
            ("--port", port),
            f"cannot listen on 127.0.0.1:{port}: Address already in use; pick another --port",
        ),
    ]:
        result = run_command(trained_project, "serve", *args, timeout=120)
        assert result.returncode == 1
        assert result.stderr == f"mnist-pipeline serve: error: {message}\n"
