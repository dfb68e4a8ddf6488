"""The IDX reader: what it accepts, and the one-line error for each kind of bad file."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from mnist_pipeline.mnist import (
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    MnistFile,
    parse_idx,
    read_idx,
    sha256_hex,
)
from mnist_pipeline.stage import StageError

LABELS3 = MnistFile("labels", "unused", count=3, ndim=1)
IMAGES2 = MnistFile("images", "unused", count=2, ndim=3)


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    magic = (0x08 << 8 | array.ndim) if magic is None else magic
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_parses_labels_and_images_to_uint8_arrays():
    labels = parse_idx(idx_bytes(np.array([5, 0, 9])), LABELS3)
    images = parse_idx(idx_bytes(np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256), IMAGES2)
    assert labels.tolist() == [5, 0, 9]
    assert images.shape == (2, 28, 28) and images.dtype == np.uint8
    assert images[1, 0, 0] == (28 * 28) % 256


@pytest.mark.parametrize(
    ("data", "expected", "message"),
    [
        (b"\x00\x00", LABELS3, "too short to be an IDX file"),
        (idx_bytes(np.array([1, 2, 3]), magic=0x0803), LABELS3, "bad magic number 0x00000803"),
        (idx_bytes(np.array([1, 2, 3]), magic=0x0D01), LABELS3, "bad magic number"),
        (idx_bytes(np.zeros((2, 28, 28))), LABELS3, "bad magic number"),
        (idx_bytes(np.array([1, 2, 3, 4])), LABELS3, "dimensions (4,); expected (3,)"),
        (idx_bytes(np.zeros((2, 27, 28))), IMAGES2, "dimensions (2, 27, 28)"),
        (idx_bytes(np.array([1, 2, 3]))[:-1], LABELS3, "truncated: 2 data bytes"),
        (idx_bytes(np.array([1, 2, 3])) + b"\x00", LABELS3, "has trailing bytes"),
        (idx_bytes(np.zeros((2, 28, 28)))[:10], IMAGES2, "truncated header"),
        (idx_bytes(np.array([1, 12, 3])), LABELS3, "label 12 at item 1 is outside 0-9"),
    ],
)
def test_rejects_malformed_idx_data_saying_why(data, expected, message):
    with pytest.raises(ValueError) as error:
        parse_idx(data, expected)
    assert message in str(error.value)


def test_read_idx_names_a_missing_file(tmp_path: Path):
    with pytest.raises(StageError, match=r"labels: missing; run the fetch stage"):
        read_idx(tmp_path / "labels", TEST_LABELS)


def test_read_idx_rejects_well_formed_file_with_wrong_checksum(tmp_path: Path):
    path = tmp_path / TEST_LABELS.name
    path.write_bytes(idx_bytes(np.zeros(TEST_LABELS.count)))  # valid IDX, not MNIST's labels
    with pytest.raises(StageError) as error:
        read_idx(path, TEST_LABELS)
    assert str(path) in str(error.value)
    assert "sha256 mismatch" in str(error.value)


def test_read_idx_names_file_and_problem_of_a_truncated_file(tmp_path: Path):
    path = tmp_path / TEST_LABELS.name
    path.write_bytes(idx_bytes(np.zeros(TEST_LABELS.count))[:-100])
    with pytest.raises(StageError, match=r"t10k-labels-idx1-ubyte: truncated: 9900 data bytes"):
        read_idx(path, TEST_LABELS)


def test_reads_the_real_mnist_files_as_published(mnist_mirror: Path, tmp_path: Path):
    for file in (TRAIN_LABELS, TRAIN_IMAGES):
        data = gzip.decompress((mnist_mirror / file.download_name).read_bytes())
        assert sha256_hex(data) == file.sha256
        (tmp_path / file.name).write_bytes(data)
    labels = read_idx(tmp_path / TRAIN_LABELS.name, TRAIN_LABELS)
    images = read_idx(tmp_path / TRAIN_IMAGES.name, TRAIN_IMAGES)
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(labels).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert images.shape == (60_000, 28, 28)
    assert round(float(images.mean() / 255), 4) == 0.1307
