"""Accuracy of the trained model on digits that are not MNIST: 0-9 rendered with the
TrueType fonts that Debian's font packages ship (DejaVu, Liberation), dark on light, at
several sizes and positions, each read through `stages/predict.py`'s own path.

    python bench/rendered_digits.py [--model models/model.keras] [--out DIR]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_DIRS = [Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation")]
SIZES = (24, 60, 140)  # font sizes in points
CANVASES = ((64, 64), (200, 120), (300, 300))  # width, height
PLACES = ((0.5, 0.5), (0.25, 0.3), (0.7, 0.65))  # where the digit's centre goes


def fonts() -> list[Path]:
    found = sorted(
        p for d in FONT_DIRS if d.is_dir() for p in d.glob("*.ttf") if "Math" not in p.name
    )
    return found


def render(
    digit: int, font: Path, size: int, canvas: tuple[int, int], place: tuple[float, float]
) -> Image.Image:
    """One digit, black on white, its centre at `place` (fractions of the canvas)."""
    image = Image.new("L", canvas, 255)
    draw = ImageDraw.Draw(image)
    typeface = ImageFont.truetype(str(font), size)
    left, top, right, bottom = draw.textbbox((0, 0), str(digit), font=typeface)
    x = place[0] * canvas[0] - (left + right) / 2
    y = place[1] * canvas[1] - (top + bottom) / 2
    draw.text((x, y), str(digit), fill=0, font=typeface)
    return image


def render_all(folder: Path) -> list[tuple[Path, int]]:
    """Write every rendered digit that fits its canvas as a PNG; return (path, digit)."""
    made = []
    for font, size, canvas, place in itertools.product(fonts(), SIZES, CANVASES, PLACES):
        if size > 0.8 * min(canvas):
            continue  # would not fit
        for digit in range(10):
            path = folder / f"{font.stem}-{size}-{canvas[0]}x{canvas[1]}-{place[0]}-{digit}.png"
            render(digit, font, size, canvas, place).save(path)
            made.append((path, digit))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/model.keras"))
    parser.add_argument("--out", type=Path, help="keep the rendered PNGs here")
    args = parser.parse_args()
    from mnist_pipeline.digits import read_image, to_mnist
    from mnist_pipeline.model import load_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.out or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        made = render_all(folder)
        images = np.stack([to_mnist(read_image(path)) for path, _ in made])[..., None]
        truth = np.array([digit for _, digit in made])
        predicted = load_model(args.model).predict(images, verbose=0).argmax(axis=1)
    print(
        f"{len(made)} rendered digits from {len(fonts())} fonts: accuracy {np.mean(predicted == truth):.4f}"
    )
    for digit in range(10):
        print(f"  digit {digit}: {np.mean(predicted[truth == digit] == digit):.3f}")


if __name__ == "__main__":
    main()
