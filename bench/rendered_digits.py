"""Accuracy of the trained model on digits that are not MNIST: 0-9 rendered with the
TrueType fonts that Debian's font packages ship (DejaVu, Liberation), dark on light, at
several sizes and positions, each read through `mnist-pipeline predict`'s own path; then the
same digits made harder, as real pens, scans and hands make them: thin and bold strokes,
blur, low resolution, and rotation up to 15 degrees either way.

    python bench/rendered_digits.py [--model models/model.keras] [--out DIR]
                                    [--variants "as rendered" "blurred" ...]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

FONT_DIRS = [Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation")]
SIZES = (24, 60, 140)  # font sizes in points
CANVASES = ((64, 64), (200, 120), (300, 300))  # width, height
PLACES = ((0.5, 0.5), (0.25, 0.3), (0.7, 0.65))  # where the digit's centre goes


LOW_RESOLUTION_HEIGHT = 10  # pixels


# Each variant: a rendered digit (black on white, grayscale) in, a harder one out. The
# stroke filters scale with the canvas so that a thin stroke stays visible on a small one.
def _stroke(image: Image.Image, kind: type[ImageFilter.RankFilter]) -> Image.Image:
    side = 3 if min(image.size) < 150 else 5
    return image.filter(kind(side))


def _low_resolution(image: Image.Image) -> Image.Image:
    """Scanned so coarsely that the digit is 10 pixels tall (MNIST's are 20), then
    blown back up to the canvas's size, blocky."""
    width, height = image.size
    _, top, _, bottom = ImageOps.invert(image).getbbox()
    scale = min(1.0, LOW_RESOLUTION_HEIGHT / (bottom - top))
    small = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BOX)
    return small.resize((width, height), Image.NEAREST)


VARIANTS = {
    "as rendered": lambda image: image,
    "thin strokes": lambda image: _stroke(image, ImageFilter.MaxFilter),  # white eats ink
    "bold strokes": lambda image: _stroke(image, ImageFilter.MinFilter),  # ink spreads
    "blurred": lambda image: image.filter(ImageFilter.GaussianBlur(min(image.size) / 40)),
    "low resolution": _low_resolution,
    "rotated 8 degrees": lambda image: image.rotate(8, Image.BILINEAR, fillcolor=255),
    "rotated -8 degrees": lambda image: image.rotate(-8, Image.BILINEAR, fillcolor=255),
    "rotated 15 degrees": lambda image: image.rotate(15, Image.BILINEAR, fillcolor=255),
    "rotated -15 degrees": lambda image: image.rotate(-15, Image.BILINEAR, fillcolor=255),
}


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
