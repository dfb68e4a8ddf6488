"""`mnist-pipeline serve` speaks the Open Inference Protocol (KServe's V2) beside TF
Serving's API, checked with a client this project did not write: tritonclient's HTTP
InferenceServerClient. Its answers are TF Serving's answers, number for number."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # the trained project: a small pipeline run

COUNT = 100  # test images sent


@pytest.fixture(scope="module")
def client(model_server):
    import tritonclient.http as triton

    connection = triton.InferenceServerClient(urlsplit(model_server.url).netloc)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def test_images(trained_project) -> np.ndarray:
    return np.load(trained_project / "data/processed/test_images.npy")[:COUNT]


@pytest.fixture(scope="module")
def tf_serving_answer(model_server, test_images) -> np.ndarray:
    body = json.dumps({"instances": test_images.tolist()}).encode()
    status, answer = model_server.call("/v1/models/mnist:predict", body)
    assert status == 200
    return np.array(answer["predictions"], dtype=np.float32)


def test_health_and_metadata_as_tritonclient_reads_them(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mnist") and client.is_model_ready("mnist", "1")
    assert not client.is_model_ready("no-such-model")
    server = client.get_server_metadata()
    assert server["name"] == "mnist-pipeline" and "binary_tensor_data" in server["extensions"]
    assert client.get_model_metadata("mnist") == {
        "name": "mnist",
        "versions": ["1"],
        "platform": "tensorflow_savedmodel",
        "inputs": [{"name": "images", "datatype": "UINT8", "shape": [-1, 28, 28, 1]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}],
    }


@pytest.mark.parametrize("binary", [True, False], ids=["binary tensors", "JSON tensors"])
def test_infer_answers_what_tf_servings_api_answers(client, test_images, tf_serving_answer, binary):
    import tritonclient.http as triton

    images = triton.InferInput("images", list(test_images.shape), "UINT8")
    images.set_data_from_numpy(test_images, binary_data=binary)
    wanted = triton.InferRequestedOutput("probabilities", binary_data=binary)
    result = client.infer("mnist", [images], outputs=[wanted], request_id="request-7")
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32 and probabilities.shape == (COUNT, 10)
    assert np.array_equal(probabilities, tf_serving_answer)  # number for number
    assert result.get_response()["id"] == "request-7"
    assert result.get_response()["model_version"] == "1"


@pytest.mark.parametrize(
    ("shape", "datatype", "message"),
    [
        (
            [1, 28, 28],
            "UINT8",
            'input "images" has shape [N, 28, 28, 1], N 1 to 100,000; found [1, 28, 28]',
        ),
        ([1, 28, 28, 1], "FP32", 'input "images" is UINT8; found datatype "FP32"'),
    ],
)
def test_a_wrong_tensor_is_a_400_with_one_line_tritonclient_raises(
    client, shape, datatype, message
):
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException, triton_to_np_dtype

    tensor = triton.InferInput("images", shape, datatype)
    tensor.set_data_from_numpy(np.zeros(shape, triton_to_np_dtype(datatype)))
    with pytest.raises(InferenceServerException) as refused:
        client.infer("mnist", [tensor])
    assert refused.value.status() == "400"
    assert refused.value.message() == message


def infer_body(data: list, **request: object) -> bytes:
    """An infer request for one image whose pixels are `data`, with more of `request`."""
    tensor = {"name": "images", "datatype": "UINT8", "shape": [1, 28, 28, 1], "data": data}
    return json.dumps({"inputs": [tensor], **request}).encode()


DATA = 'input "images"\'s data must be 784 integers 0-255; found'
BAD_INFER_REQUESTS = [  # (body, the error's start)
    (b"{", "the inference request is not JSON"),
    (b'{"inputs": 7}', 'the inference request must be a JSON object with an "inputs" list'),
    (
        b'{"inputs": []}',
        'the model takes one input, "images" (UINT8, shape [N, 28, 28, 1]); found 0 inputs',
    ),
    (infer_body([True] * 784), f"{DATA} true or false"),
    (infer_body([0] * 783), f"{DATA} 783"),
    (infer_body([300] * 784), f"{DATA} 300"),
    (
        infer_body([0] * 784, outputs=[{"name": "digit"}]),
        'the model has one output, "probabilities"; found "digit"',
    ),
    (
        infer_body(
            [0] * 784, outputs=[{"name": "probabilities", "parameters": {"classification": 3}}]
        ),
        'output parameters: only "binary_data" is supported; found classification',
    ),
]


@pytest.mark.parametrize(("request_body", "message"), BAD_INFER_REQUESTS)
def test_a_bad_infer_request_is_one_line(model_server, request_body, message):
    status, answer = model_server.call("/v2/models/mnist/infer", request_body)
    assert status == 400 and list(answer) == ["error"]
    assert answer["error"].startswith(message) and "\n" not in answer["error"]


HUGE = "1" + "0" * 4299  # the most digits Python reads as an int


@pytest.mark.parametrize(
    ("request_body", "header_length", "message"),
    [
        (
            b"{}",
            "\u00b2",
            "Inference-Header-Content-Length \u00b2: must be the JSON header's length",
        ),
        (b"{}", "0" * 4400 + "1", "Inference-Header-Content-Length 000"),
        (b"{}", "3", "Inference-Header-Content-Length 3: must be the JSON header's length"),
        (
            f'{{"inputs": [{{"name": "images", "datatype": "UINT8", "shape": [{HUGE}, 28, 28, 1]}}]}}'.encode(),
            None,
            'input "images" has shape [N, 28, 28, 1], N 1 to 100,000; found [1000',
        ),
    ],
    ids=["a superscript digit", "4,401 digits", "past the body", "4,300-digit N"],
)
def test_hostile_lengths_and_shapes_are_one_line_not_a_crash(
    model_server, request_body, header_length, message
):
    headers = {} if header_length is None else {"Inference-Header-Content-Length": header_length}
    status, answer = model_server.call("/v2/models/mnist/infer", request_body, headers=headers)
    assert (status, list(answer)) == (400, ["error"])
    assert answer["error"].startswith(message)
