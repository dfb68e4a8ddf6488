"""TF Serving's REST API, as `mnist-pipeline serve` speaks it (its status, metadata and
predict requests), so a client written against this server works unchanged against
`tensorflow/serving` loading the same models/saved_model:

- GET  /v1/models/mnist            the model's status (version 1, AVAILABLE)
- GET  /v1/models/mnist/metadata   its signature: uint8 `images` (-1, 28, 28, 1) in,
                                   float32 `probabilities` (-1, 10) out
- POST /v1/models/mnist:predict    {"instances": [image, ...]} -> {"predictions": [...]};
                                   {"inputs": images} -> {"outputs": [...]}, as TF Serving
  (also under /versions/1; an image is 28 rows of 28 [pixel] lists, integers 0-255, or
  {"images": image}; a bad request is {"error": "..."} with status 400, as TF Serving's)
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from mnist_pipeline.arrays import IMAGE_SHAPE
from mnist_pipeline.export import INPUT_NAME, OUTPUT_NAME, SIGNATURE_NAME
from mnist_pipeline.mnist import NUM_CLASSES
from mnist_pipeline.serving_inputs import PIXELS, BadRequest, images, integers
from mnist_pipeline.stage import printable


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
        return images_from_json(instances, '"instances"', body), "predictions"
    inputs = request["inputs"]
    if isinstance(inputs, dict):
        inputs = named(inputs, '"inputs"')
    return images_from_json(inputs, '"inputs"', body), "outputs"


def images_from_json(value: Any, what: str, body: bytes) -> np.ndarray:
    """`value` (nested lists, parsed from `body`) as uint8 images (N, 28, 28, 1);
    BadRequest if it is not."""
    if value == []:
        raise BadRequest(f"{what} holds no image")
    expected = f"{what} must be images of 28 rows of 28 [pixel] lists, {PIXELS}"
    return images(integers(value, expected, body), expected)


def named(value: dict, what: str) -> Any:
    """The one input of a named-input dict: {"images": ...}."""
    if set(value) != {INPUT_NAME}:
        keys = ", ".join(f'"{printable(str(key), 40)}"' for key in list(value)[:5])
        raise BadRequest(f'{what} names the input "{INPUT_NAME}" only; found {keys or "none"}')
    return value[INPUT_NAME]


def model_status() -> dict:
    ok = {"error_code": "OK", "error_message": ""}
    return {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": ok}]}


def model_metadata(model_name: str) -> dict:
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
        "model_spec": {"name": model_name, "signature_name": "", "version": "1"},
        "metadata": {"signature_def": {"signature_def": {SIGNATURE_NAME: signature}}},
    }
