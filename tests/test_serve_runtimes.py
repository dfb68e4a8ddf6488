"""`mnist-pipeline serve --runtime onnx`: the ONNX copy in ONNX Runtime, without
TensorFlow, answers as the SavedModel does on the whole test set, in a fraction of the
memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from .helpers import project_env, run_command
from .project import Served, rss_mib, serving

pytestmark = pytest.mark.slow  # the trained project: a small pipeline run

BATCH = 1000


@pytest.fixture(scope="module")
def onnx_server(trained_project) -> Iterator[Served]:
    with serving(trained_project, "--runtime", "onnx", env=project_env(trained_project)) as served:
        yield served


def answers(url: str, images: np.ndarray) -> np.ndarray:
    """The probabilities the server at `url` answers for `images`, over V2 binary tensors."""
    import tritonclient.http as triton

    client = triton.InferenceServerClient(urlsplit(url).netloc, network_timeout=120)
    found = []
    for start in range(0, len(images), BATCH):
        batch = images[start : start + BATCH]
        tensor = triton.InferInput("images", list(batch.shape), "UINT8")
        tensor.set_data_from_numpy(batch)
        found.append(client.infer("mnist", [tensor]).as_numpy("probabilities"))
    client.close()
    return np.concatenate(found)


def test_onnx_runtime_loads_no_tensorflow_and_takes_a_fraction_of_the_memory(
    model_server, onnx_server
):
    """First in the file: the ONNX server as it starts, before the whole test set has
    grown its buffers; the TensorFlow server has at least its own start-up memory."""
    maps = Path(f"/proc/{onnx_server.process.pid}/maps").read_text()
    assert "tensorflow" not in maps and "onnxruntime" in maps
    assert rss_mib(onnx_server.process.pid) < rss_mib(model_server.pid) / 2


def test_onnx_runtime_answers_as_the_saved_model_on_the_whole_test_set(
    trained_project, model_server, onnx_server
):
    images = np.load(trained_project / "data/processed/test_images.npy")
    saved_model, onnx = answers(model_server.url, images), answers(onnx_server.url, images)
    assert len(images) == 10_000
    assert np.array_equal(saved_model.argmax(axis=1), onnx.argmax(axis=1))
    assert np.abs(saved_model - onnx).max() <= 1e-5  # export's own tolerance


def test_a_missing_model_or_mixed_options_are_one_line_errors(trained_project, tmp_path):
    for args, message in [
        (
            ("--runtime", "onnx", "--onnx-file", str(tmp_path / "nope.onnx")),
            f"{tmp_path / 'nope.onnx'}: no ONNX model; run the export stage (dvc repro)",
        ),
        (
            ("--runtime", "onnx", "--model-dir", str(tmp_path)),
            "--model-dir is the SavedModel's: with --runtime onnx, give --onnx-file",
        ),
        (
            ("--onnx-file", str(tmp_path)),
            "--onnx-file is for --runtime onnx; the SavedModel's folder is --model-dir",
        ),
        (("--runtime", "tflite"), None),
    ]:
        result = run_command(trained_project, "serve", *args, timeout=120)
        assert result.returncode != 0
        if message:
            assert result.stderr == f"mnist-pipeline serve: error: {message}\n"
        else:  # argparse's own one line, after its usage
            assert "argument --runtime: invalid choice: 'tflite'" in result.stderr.splitlines()[-1]
