"""The Open Inference Protocol (KServe's V2 REST protocol, which Triton, KServe, Seldon
MLServer and their clients speak), as `mnist-pipeline serve` speaks it beside TF
Serving's API:

- GET  /v2                          the server: name, version, extensions
- GET  /v2/health/live, /v2/health/ready
- GET  /v2/models/mnist             the model: its input `images` UINT8 [-1, 28, 28, 1],
                                    its output `probabilities` FP32 [-1, 10]
- GET  /v2/models/mnist/ready
- POST /v2/models/mnist/infer       {"inputs": [{"name": "images", "datatype": "UINT8",
                                    "shape": [N, 28, 28, 1], "data": [...]}]} ->
                                    {"outputs": [{"name": "probabilities", ...}]}
  (also under /versions/1; errors are {"error": "..."} with status 400, as the protocol's)

The binary tensor extension is spoken too (tritonclient uses it by default): the JSON
header is followed by the tensors' raw bytes, its length in the
Inference-Header-Content-Length header, each tensor's in "binary_data_size".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from mnist_pipeline.arrays import IMAGE_SHAPE
from mnist_pipeline.export import INPUT_NAME, OUTPUT_NAME
from mnist_pipeline.mnist import NUM_CLASSES
from mnist_pipeline.serving_inputs import PIXELS, BadRequest, images, integers
from mnist_pipeline.stage import printable

VERSION = "1"
HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSIONS = ["binary_tensor_data"]
INPUT = {"name": INPUT_NAME, "datatype": "UINT8", "shape": [-1, *IMAGE_SHAPE]}
OUTPUT = {"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, NUM_CLASSES]}
IMAGE_PIXELS = int(np.prod(IMAGE_SHAPE))
MAX_IMAGES = 100_000  # more than any body the server reads can hold


@dataclass
class InferRequest:
    images: np.ndarray  # uint8 (N, 28, 28, 1)
    id: str | None  # echoed in the answer
    binary_output: bool  # answer the probabilities as raw bytes after the JSON


def server_metadata(server_name: str, version: str) -> dict:
    return {"name": server_name, "version": version, "extensions": EXTENSIONS}


def model_metadata(model_name: str, platform: str) -> dict:
    return {
        "name": model_name,
        "versions": [VERSION],
        "platform": platform,
        "inputs": [INPUT],
        "outputs": [OUTPUT],
    }


def parse_infer(body: bytes, header_length: str | None) -> InferRequest:
    """The images of an infer request (JSON, or JSON then binary tensors when
    `header_length`, the Inference-Header-Content-Length header, is given)."""
    header, tail = body, b""
    if header_length is not None:
        digits = header_length.isascii() and header_length.isdigit() and len(header_length) < 12
        if not digits or not 0 < int(header_length) <= len(body):
            raise BadRequest(
                f"{HEADER_LENGTH} {printable(header_length, 30)}: must be the JSON header's "
                f"length in bytes, 1 to the body's {len(body):,}"
            )
        header, tail = body[: int(header_length)], body[int(header_length) :]
    try:
        request = json.loads(header)
    except (ValueError, RecursionError) as error:
        raise BadRequest(f"the inference request is not JSON: {error}") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise BadRequest('the inference request must be a JSON object with an "inputs" list')
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest('"id" must be a string')
    wanted = _binary_output(request)
    return InferRequest(_input_images(request["inputs"], header, tail), request_id, wanted)


def infer_answer(
    request: InferRequest, probabilities: np.ndarray, model_name: str
) -> tuple[bytes, list[tuple[str, str]]]:
    """The answer's body and headers: JSON, or JSON then the raw float32 probabilities."""
    output: dict[str, Any] = {**OUTPUT, "shape": list(probabilities.shape)}
    raw = b""  # the binary tensors after the JSON, when asked for
    if request.binary_output:
        raw = probabilities.astype("<f4").tobytes()
        output["parameters"] = {"binary_data_size": len(raw)}
    else:
        output["data"] = probabilities.ravel().tolist()
    answer: dict[str, Any] = {"model_name": model_name, "model_version": VERSION}
    if request.id is not None:
        answer["id"] = request.id
    answer["outputs"] = [output]
    header = json.dumps(answer).encode()
    if not request.binary_output:
        return header, [("Content-Type", "application/json")]
    headers = [("Content-Type", "application/octet-stream"), (HEADER_LENGTH, str(len(header)))]
    return header + raw, headers


def _input_images(inputs: list, header: bytes, tail: bytes) -> np.ndarray:
    """The images of the request's `inputs` (parsed from `header`; `tail`: its binary part)."""
    expected = f'the model takes one input, "{INPUT_NAME}" (UINT8, shape [N, 28, 28, 1])'
    if len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise BadRequest(f"{expected}; found {len(inputs)} inputs")
    tensor = inputs[0]
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    if name != INPUT_NAME:
        raise BadRequest(f'{expected}; found "{printable(str(name), 40)}"')
    if datatype != "UINT8":
        raise BadRequest(
            f'input "{INPUT_NAME}" is UINT8; found datatype "{printable(str(datatype), 20)}"'
        )
    if (
        not isinstance(shape, list)
        or len(shape) != 1 + len(IMAGE_SHAPE)
        or not all(isinstance(size, int) and not isinstance(size, bool) for size in shape)
        or tuple(shape[1:]) != IMAGE_SHAPE
        or not 1 <= shape[0] <= MAX_IMAGES
    ):
        raise BadRequest(
            f'input "{INPUT_NAME}" has shape [N, 28, 28, 1], N 1 to {MAX_IMAGES:,}; found {printable(json.dumps(shape), 60)}'
        )
    count = shape[0] * IMAGE_PIXELS
    parameters = tensor.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest(f'input "{INPUT_NAME}": "parameters" must be an object')
    if "binary_data_size" in parameters:
        size = parameters["binary_data_size"]
        if size != count or size != len(tail) or "data" in tensor:
            raise BadRequest(
                f'input "{INPUT_NAME}": binary_data_size must be the {count:,} bytes its shape '
                f"holds, all the body after the JSON header ({len(tail):,} bytes), and no "
                '"data" beside it'
            )
        return np.frombuffer(tail, np.uint8).reshape(shape)
    if tail:
        raise BadRequest(f"{len(tail):,} bytes after the JSON header that no input claims")
    if "data" not in tensor:
        raise BadRequest(f'input "{INPUT_NAME}" has no "data"')
    what = f'input "{INPUT_NAME}"\'s data must be {count:,} {PIXELS}'
    pixels = integers(tensor["data"], what, header)
    if pixels.size != count:
        raise BadRequest(f"{what}; found {pixels.size:,}")
    return images(pixels.reshape(shape), what)


def _binary_output(request: dict) -> bool:
    """Whether the request asks for the probabilities as raw bytes (tritonclient's way)."""
    parameters = request.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest('"parameters" must be an object')
    binary = parameters.get("binary_data_output", False)
    outputs = request.get("outputs")
    if outputs is None:
        return binary is True
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise BadRequest('"outputs" must be a list of {"name": ...} objects')
    for output in outputs:
        if output.get("name") != OUTPUT_NAME:
            shown = printable(str(output.get("name")), 40)
            raise BadRequest(f'the model has one output, "{OUTPUT_NAME}"; found "{shown}"')
        asked = output.get("parameters") or {}
        if not isinstance(asked, dict) or set(asked) - {"binary_data"}:
            unknown = (
                ", ".join(sorted(map(str, set(asked) - {"binary_data"})))
                if isinstance(asked, dict)
                else "not an object"
            )
            raise BadRequest(
                f'output parameters: only "binary_data" is supported; found {printable(unknown, 60)}'
            )
        binary = asked.get("binary_data", binary)
    return binary is True
