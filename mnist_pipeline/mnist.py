"""The four canonical MNIST files: names, pinned checksums, and an IDX reader that
checks everything it reads."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_pipeline.stage import StageError

IMAGE_SIZE = 28
NUM_CLASSES = 10
TRAIN_COUNT = 60_000
TEST_COUNT = 10_000

_IDX_UBYTE = 0x08


@dataclass(frozen=True)
class MnistFile:
    name: str  # as stored in data/raw: the decompressed IDX file
    sha256: str  # of the decompressed bytes: the gzip wrapper differs between mirrors
    count: int
    ndim: int  # 3 for images (count, 28, 28), 1 for labels

    @property
    def download_name(self) -> str:
        return f"{self.name}.gz"

    @property
    def size(self) -> int:
        """Bytes of the decompressed IDX file: the header, then one byte per value."""
        values = self.count * (IMAGE_SIZE * IMAGE_SIZE if self.ndim == 3 else 1)
        return 4 + 4 * self.ndim + values


TRAIN_IMAGES = MnistFile(
    "train-images-idx3-ubyte",
    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    TRAIN_COUNT,
    3,
)
TRAIN_LABELS = MnistFile(
    "train-labels-idx1-ubyte",
    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    TRAIN_COUNT,
    1,
)
TEST_IMAGES = MnistFile(
    "t10k-images-idx3-ubyte",
    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    TEST_COUNT,
    3,
)
TEST_LABELS = MnistFile(
    "t10k-labels-idx1-ubyte",
    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    TEST_COUNT,
    1,
)
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_idx(data: bytes, expected: MnistFile) -> np.ndarray:
    """Parse the bytes of one IDX file and check them against what `expected` describes.

    Returns a uint8 array: (count, 28, 28) for images, (count,) for labels. Raises
    ValueError saying what is wrong; callers add the file name.
    """
    if len(data) < 4:
        raise ValueError(f"too short to be an IDX file ({len(data)} bytes)")
    want_magic = (_IDX_UBYTE << 8) | expected.ndim
    magic = int.from_bytes(data[:4], "big")
    if magic != want_magic:
        raise ValueError(
            f"bad magic number 0x{magic:08x}; expected 0x{want_magic:08x} "
            f"(IDX of unsigned bytes, {expected.ndim} dimension{'s' * (expected.ndim > 1)})"
        )
    header_size = 4 + 4 * expected.ndim
    if len(data) < header_size:
        raise ValueError(f"truncated header ({len(data)} of {header_size} bytes)")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(expected.ndim))
    want_dims = (expected.count,) + (IMAGE_SIZE, IMAGE_SIZE) * (expected.ndim == 3)
    if dims != want_dims:
        raise ValueError(f"dimensions {dims}; expected {want_dims}")
    body = len(data) - header_size
    want_body = int(np.prod(dims))
    if body != want_body:
        problem = "truncated" if body < want_body else "has trailing bytes"
        raise ValueError(f"{problem}: {body} data bytes, the header says {want_body}")
    array = np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims)
    if expected.ndim == 1 and array.max() >= NUM_CLASSES:
        index = int(np.argmax(array >= NUM_CLASSES))
        raise ValueError(f"label {array[index]} at item {index} is outside 0-{NUM_CLASSES - 1}")
    return array


def read_idx(path: Path, expected: MnistFile) -> np.ndarray:
    """Read and check one decompressed IDX file from disk, including its pinned sha256.

    Raises StageError naming the file and what is wrong with it.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StageError(f"{path}: missing; run the fetch stage (dvc repro fetch)") from None
    try:
        array = parse_idx(data, expected)
    except ValueError as error:
        raise StageError(f"{path}: {error}") from None
    if sha256_hex(data) != expected.sha256:
        raise StageError(
            f"{path}: contents differ from the published MNIST file (sha256 mismatch); "
            "re-run the fetch stage (dvc repro -f fetch)"
        )
    return array
