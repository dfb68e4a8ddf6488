"""Accuracy of the trained model on digits that are not MNIST: 0-9 rendered with the
TrueType fonts that Debian's font packages ship (DejaVu, Liberation), dark on light, at
several sizes and positions, each read through `mnist-pipeline predict`'s own path; then the
same digits made harder, as real pens, scans and hands make them: thin and bold strokes,
blur, low resolution, and rotation up to 15 degrees either way. The rendering and the
harder variants are the robustness suite's own (mnist_pipeline/renderings.py); the fonts
are the system's, as the figures docs/serving.md quotes were measured (the suite renders
with the fonts matplotlib ships instead).

    python bench/rendered_digits.py [--model models/model.keras] [--out DIR]
                                    [--variants "as rendered" "blurred" ...]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this project's package

from mnist_pipeline.renderings import (
    blurred,
    bold,
    low_resolution,
    render,
    rotated,
    thin,
)

FONT_DIRS = [Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation")]
SIZES = (24, 60, 140)  # font sizes in points
CANVASES = ((64, 64), (200, 120), (300, 300))  # width, height
PLACES = ((0.5, 0.5), (0.25, 0.3), (0.7, 0.65))  # where the digit's centre goes


# Each variant: a rendered digit (black on white, grayscale) in, a harder one out; made
# as the robustness suite's rendered sets are (mnist_pipeline/renderings.py).
VARIANTS = {
    "as rendered": lambda image: image,
    "thin strokes": thin,
    "bold strokes": bold,
    "blurred": blurred,
    "low resolution": low_resolution,
    "rotated 8 degrees": lambda image: rotated(image, 8),
    "rotated -8 degrees": lambda image: rotated(image, -8),
    "rotated 15 degrees": lambda image: rotated(image, 15),
    "rotated -15 degrees": lambda image: rotated(image, -15),
}


def fonts() -> list[Path]:
    found = sorted(
        p for d in FONT_DIRS if d.is_dir() for p in d.glob("*.ttf") if "Math" not in p.name
    )
    return found


def render_all(folder: Path, variants: list[str]) -> list[tuple[str, Path, int]]:
    """Write every rendered digit that fits its canvas as a PNG, in each of `variants`;
    return (variant, path, digit)."""
    made = []
    for font, size, canvas, place in itertools.product(fonts(), SIZES, CANVASES, PLACES):
        if size > 0.8 * min(canvas):
            continue  # would not fit
        for digit in range(10):
            image = render(digit, font, size, canvas, place)
            stem = f"{font.stem}-{size}-{canvas[0]}x{canvas[1]}-{place[0]}-{digit}"
            for number, variant in enumerate(variants):
                changed = VARIANTS[variant](image)
                if ImageOps.invert(changed).getbbox() is None:
                    continue  # thinned away: a 24-point hairline font loses every stroke
                path = folder / f"{stem}-v{number}.png"
                changed.save(path)
                made.append((variant, path, digit))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/model.keras"))
    parser.add_argument("--out", type=Path, help="keep the rendered PNGs here")
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), metavar="NAME"
    )
    args = parser.parse_args()
    from mnist_pipeline.digits import read_image, to_mnist
    from mnist_pipeline.model import load_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.out or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        made = render_all(folder, args.variants)
        images = np.stack([to_mnist(read_image(path)) for _, path, _ in made])[..., None]
        truth = np.array([digit for _, _, digit in made])
        variants = np.array([variant for variant, _, _ in made])
        predicted = load_model(args.model).predict(images, verbose=0).argmax(axis=1)
    right = predicted == truth
    print(f"{args.model}: {len(fonts())} fonts")
    for variant in args.variants:
        chosen = variants == variant
        print(f"  {variant:24} {chosen.sum():5} digits, accuracy {np.mean(right[chosen]):.4f}")
    hard = variants != "as rendered"
    if hard.any():
        print(f"  {'all harder variants':24} accuracy {np.mean(right[hard]):.4f}")
    as_rendered = variants == "as rendered"
    for digit in range(10) if as_rendered.any() else ():
        shown = as_rendered & (truth == digit)
        print(f"  as rendered, digit {digit}: {np.mean(right[shown]):.3f}")


if __name__ == "__main__":
    main()
