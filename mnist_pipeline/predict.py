"""`mnist-pipeline predict`: digits from image files or the test set, by the trained model.

Reads:  models/model.keras; data/processed/test_*.npy for --index; image files.
Writes: nothing; prints one line per input (or JSON with --json).

    mnist-pipeline predict --index 0                 # the first test digit: 7
    mnist-pipeline predict photo.png scan.jpg --json

Image files are made MNIST-style first (mnist_pipeline.digits, the same code the server's
drawing page goes through): grayscale, inverted if dark on light, the digit's bounding box
scaled into 20x20 and centred by its centre of mass in 28x28.

- Formats: PNG, JPEG, BMP, GIF and WebP only, which Pillow decodes itself (EPS and the
  like are refused: they would run other programs). Animated images: the first frame.
- Size: at most 50 megapixels (mnist_pipeline.digits.MAX_PIXELS), checked from the header
  before decoding. Images over 1024 pixels a side are shrunk to that first (JPEGs while
  they are decoded).
- Transparency shows the paper: dark or light ink on a transparent background are both
  found. 16-bit images are stretched from their darkest pixel to their lightest.

A file that cannot be read, or holds no digit (blank, uniform, marks too small or too far
apart), is reported on its own line; the others still get their answer, and the exit
code is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from mnist_pipeline.arrays import load_split
from mnist_pipeline.digits import read_image, to_mnist
from mnist_pipeline.paths import MODEL_FILE
from mnist_pipeline.stage import StageError, require_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "images", nargs="*", type=Path, help="image files (PNG, JPEG, BMP, GIF or WebP)"
    )
    parser.add_argument(
        "--index", type=int, action="append", default=[], help="a test-set index (repeatable)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--model", type=Path, default=MODEL_FILE, help=f"default: {MODEL_FILE}")


def sources(args: argparse.Namespace) -> Iterator[tuple[str, Callable[[], np.ndarray]]]:
    """(name, read) per input, in order: read() gives its 28x28 uint8 digit or raises
    ValueError saying why it has none."""
    if args.index:
        test_images, _ = load_split("test")

        def test_image(index: int) -> np.ndarray:
            if not -len(test_images) <= index < len(test_images):
                raise ValueError(f"index out of range 0-{len(test_images) - 1}")
            return test_images[index, :, :, 0]

        for index in args.index:
            yield f"test[{index}]", lambda index=index: test_image(index)
    for path in args.images:
        yield str(path), lambda path=path: to_mnist(read_image(path))


def run(args: argparse.Namespace) -> None:
    if not args.images and not args.index:
        raise StageError("give at least one image file or --index N")
    results: list[dict] = []  # one per input, in order
    digits: list[np.ndarray] = []  # the inputs that have one, and the results they answer
    answered: list[dict] = []
    for name, read in sources(args):
        result = {"input": name}
        try:
            digits.append(read())
            answered.append(result)
        except ValueError as error:
            result["error"] = str(error)
        results.append(result)

    require_file(args.model, made_by="train")
    from mnist_pipeline.model import load_model  # imports Keras: after the arguments are read

    model = load_model(args.model)
    probabilities = model.predict(np.stack(digits)[..., None], verbose=0) if digits else []
    for result, these in zip(answered, probabilities, strict=True):
        result.update(
            digit=int(these.argmax()),
            probability=float(these.max()),
            probabilities=[float(x) for x in these],
        )

    if args.json:
        print(json.dumps(results, indent=2))
    for result in results if not args.json else []:
        if "error" in result:
            print(f"{result['input']}: error: {result['error']}", file=sys.stderr)
        else:
            print(f"{result['input']}: {result['digit']} ({result['probability']:.1%})")
    if any("error" in result for result in results):
        raise SystemExit(1)
