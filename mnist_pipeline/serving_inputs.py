"""What the server's two protocols share: a request the client must fix, and the check
that the pixels sent are images the model takes (uint8, 28x28x1)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mnist_pipeline.arrays import IMAGE_SHAPE

PIXELS = "integers 0-255"


class BadRequest(Exception):
    """A request the client must fix: answered {"error": message} with `status`."""

    def __init__(self, message: str, status: str = "400 Bad Request") -> None:
        super().__init__(message)
        self.status = status


def integers(value: Any, what: str, body: bytes) -> np.ndarray:
    """`value` (JSON's nested lists, parsed from `body`) as an integer array of any shape;
    BadRequest naming what it holds instead (fractions, strings, true or false, ragged
    lists)."""
    try:
        array = np.array(value)
    except (ValueError, TypeError, OverflowError):  # ragged lists
        raise BadRequest(f"{what}; the lists are not all the same length") from None
    if array.size == 0:
        return array.astype(np.int64)
    kinds = {"f": "numbers with fractions", "b": "true or false", "U": "strings"}
    if array.dtype.kind not in "iu":
        raise BadRequest(f"{what}; found {kinds.get(array.dtype.kind, 'other values')}")
    # NumPy takes true and false among integers as 1 and 0: where the body holds either
    # word, JSON's types are checked here.
    has_words = b"true" in body or b"false" in body
    if has_words and set(map(type, np.array(value, dtype=object).ravel().tolist())) != {int}:
        raise BadRequest(f"{what}; found true or false")
    return array


def images(array: np.ndarray, what: str) -> np.ndarray:
    """`array` (integers) as uint8 images (N, 28, 28, 1); BadRequest saying how it is not."""
    if array.shape[1:] != IMAGE_SHAPE or len(array) == 0:
        if array.ndim == 0 or len(array) == 0:
            raise BadRequest(f"{what}; found no image")
        shape = "x".join(map(str, array.shape[1:]))
        raise BadRequest(
            f"{what}; found {f'an image shaped {shape}' if shape else 'numbers, not images'}"
        )
    if array.min() < 0 or array.max() > 255:
        raise BadRequest(f"{what}; found {array.min() if array.min() < 0 else array.max()}")
    return array.astype(np.uint8)
