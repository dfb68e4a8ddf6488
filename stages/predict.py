"""Predict digits with the trained model (not a pipeline stage: a command for people).

Reads:  models/model.keras; data/processed/test_*.npy for --index; image files.
Writes: nothing; prints one line per input (or JSON with --json).

    python stages/predict.py --index 0                 # the first test digit: 7
    python stages/predict.py photo.png scan.jpg --json

Image files are made MNIST-style first: grayscale, inverted if dark on light, the
digit's bounding box scaled into 20x20 and centred by its centre of mass in 28x28.

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

import sys
from pathlib import Path

# Import this project's own mnist_pipeline (the folder above this script), never an
# installed copy: an experiment in a temporary copy runs the copy's code, as DVC records.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json

import numpy as np

from mnist_pipeline.arrays import load_split
from mnist_pipeline.digits import read_image, to_mnist
from mnist_pipeline.paths import MODEL_FILE
from mnist_pipeline.stage import run_stage


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Predict MNIST digits with the trained model.")
    parser.add_argument(
        "images", nargs="*", type=Path, help="image files (PNG, JPEG, BMP, GIF or WebP)"
    )
    parser.add_argument(
        "--index", type=int, action="append", default=[], help="a test-set index (repeatable)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--model", type=Path, default=MODEL_FILE, help=f"default: {MODEL_FILE}")
    args = parser.parse_args()
    if not args.images and not args.index:
        parser.error("give at least one image file or --index N")
    return args


def gather_inputs(args: argparse.Namespace) -> list[tuple[str, np.ndarray | str]]:
    """(name, 28x28 uint8 image) per input, or (name, error message) where it failed."""
    inputs: list[tuple[str, np.ndarray | str]] = []
    if args.index:
        test_images, _ = load_split("test")
        for index in args.index:
            if not -len(test_images) <= index < len(test_images):
                inputs.append((f"test[{index}]", f"index out of range 0-{len(test_images) - 1}"))
            else:
                inputs.append((f"test[{index}]", test_images[index, :, :, 0]))
    for path in args.images:
        try:
            inputs.append((str(path), to_mnist(read_image(path))))
        except ValueError as error:
            inputs.append((str(path), str(error)))
    return inputs


def main() -> None:
    args = parse_args()
    inputs = gather_inputs(args)
    from mnist_pipeline.model import load_model

    model = load_model(args.model)
    images = [image for _, image in inputs if not isinstance(image, str)]
    probabilities = iter(model.predict(np.stack(images)[..., None], verbose=0) if images else [])
    results = []
    for name, image in inputs:
        if isinstance(image, str):
            results.append({"input": name, "error": image})
            continue
        these = next(probabilities)
        results.append(
            {
                "input": name,
                "digit": int(these.argmax()),
                "probability": float(these.max()),
                "probabilities": [float(x) for x in these],
            }
        )
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            if "error" in result:
                print(f"{result['input']}: error: {result['error']}", file=sys.stderr)
            else:
                print(f"{result['input']}: {result['digit']} ({result['probability']:.1%})")
    if any("error" in result for result in results):
        raise SystemExit(1)


if __name__ == "__main__":
    run_stage(main)
