"""digits.py on ordinary images: to_mnist makes any digit MNIST's way (inverted, scaled
into 20x20 pixels, centred by mass in 28x28), and read_image reads every kind of image
file (1-bit to 32-bit, palettes, transparency, CMYK, animations) so that the same 7
gives the same digit. (Hostile and degenerate images: test_digits_hostile.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_pipeline.digits import read_image, to_mnist

from .images import close_to, drawn_digit, high_depth, needs_font, saved, seven

REFERENCE = to_mnist(seven())  # the 7, black on white, read the plain way


@needs_font
def test_to_mnist_inverts_scales_into_20_pixels_and_centres_by_mass():
    small = to_mnist(drawn_digit(7, (60, 40), (5, 2), 30))
    large_elsewhere = to_mnist(drawn_digit(7, (400, 300), (250, 150), 120))
    for image in (small, large_elsewhere):
        assert image.shape == (28, 28) and image.dtype == np.uint8
        rows, cols = np.nonzero(image > 50)
        assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 <= 21  # the 20x20 box
        mass = image.astype(float) / image.sum()
        centre = (mass.sum(axis=1) @ np.arange(28), mass.sum(axis=0) @ np.arange(28))
        assert np.allclose(centre, 13.5, atol=1.0)
        assert image[0].max() == 0 and image[:, 0].max() == 0  # white digit on a black border
    # Same digit, another size and place: nearly the same MNIST-style image.
    assert np.abs(small.astype(int) - large_elsewhere.astype(int)).mean() < 25


def test_to_mnist_rejects_a_blank_image():
    with pytest.raises(ValueError, match="no digit found"):
        to_mnist(Image.new("L", (50, 50), 255))


@pytest.mark.parametrize(
    ("ink", "hidden_paper"), [((0, 0, 0, 255), (0, 0, 0, 0)), ((255,) * 4, (255, 255, 255, 0))]
)
def test_ink_on_a_transparent_background_is_found_dark_or_light(tmp_path, ink, hidden_paper):
    """The transparent pixels' own colour is the ink's: dropping alpha leaves a blank."""
    path = saved(seven(ink=ink, paper=hidden_paper, mode="RGBA"), tmp_path / "seven.png")
    assert np.array_equal(to_mnist(read_image(path)), REFERENCE)


def test_a_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    levels = np.asarray(seven(), dtype=np.uint16)
    pixels = np.where(levels > 127, 50000, 10000) - (255 - levels) // 64  # all above 255
    path = saved(Image.fromarray(pixels.astype(np.uint16)), tmp_path / "seven16.png")
    assert Image.open(path).mode == "I;16"
    assert close_to(to_mnist(read_image(path)), REFERENCE, 4)


# ---------------------------------------------------------------- every kind of image


def animated(first: Image.Image, path: Path, format: str) -> Path:
    """`first`, then a blank frame: the first frame is the one read."""
    blank = Image.new(first.mode, first.size, 255)
    first.save(path, format=format, save_all=True, append_images=[blank], duration=100)
    return path


def palette_with_transparent_paper(path: Path) -> Path:
    """Palette image: index 0 the paper, transparent but black like the ink (index 1)."""
    image = seven(ink=1, paper=0, mode="P")
    image.putpalette([0, 0, 0, 0, 0, 0])
    return saved(image, path, transparency=0)


KINDS = {  # name: (make the file in a folder, tolerance of the mean difference)
    "1-bit PNG": (lambda d: saved(seven().convert("1"), d / "a.png"), 2),
    "palette PNG": (lambda d: saved(seven().convert("P"), d / "a.png"), 2),
    "palette PNG, transparent paper": (lambda d: palette_with_transparent_paper(d / "a.png"), 2),
    "palette GIF, transparent paper": (lambda d: palette_with_transparent_paper(d / "a.gif"), 2),
    "LA PNG": (lambda d: saved(seven(ink=(0, 255), paper=(0, 0), mode="LA"), d / "a.png"), 2),
    "RGB JPEG": (lambda d: saved(seven().convert("RGB"), d / "a.jpg", quality=90), 12),
    "CMYK JPEG": (
        lambda d: saved(seven(ink=(0, 0, 0, 255), paper=0, mode="CMYK"), d / "a.jpg"),
        12,
    ),
    "16-bit PNG, a transparent level": (
        lambda d: saved(high_depth("I;16"), d / "a.png", transparency=3000),
        2,
    ),
    "BMP": (lambda d: saved(seven().convert("RGB"), d / "a.bmp"), 2),
    "RGBA WebP": (
        lambda d: saved(seven((60, 80), (9, 9, 9, 255), 0, "RGBA"), d / "a.webp", lossless=True),
        2,
    ),
    "animated GIF": (lambda d: animated(seven(), d / "a.gif", "GIF"), 2),
    "animated PNG": (lambda d: animated(seven(), d / "a.png", "PNG"), 2),
    "animated WebP": (lambda d: animated(seven().convert("RGB"), d / "a.webp", "WEBP"), 20),
}


def close_but_for_a_pixel(image: np.ndarray, reference: np.ndarray, tolerance: float) -> bool:
    """close_to, moved by up to a pixel each way: to_mnist centres by whole pixels (as
    MNIST's were), so a centre of mass a hair either side of a half pixel (a JPEG's
    ringing is enough) puts the same digit one pixel apart."""
    shifts = [(row, col) for row in (-1, 0, 1) for col in (-1, 0, 1)]
    return any(close_to(np.roll(image, s, axis=(0, 1)), reference, tolerance) for s in shifts)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_of_image_file_gives_the_same_digit(tmp_path, kind):
    make, tolerance = KINDS[kind]
    assert close_but_for_a_pixel(to_mnist(read_image(make(tmp_path))), REFERENCE, tolerance)


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I", "F"])
def test_high_depth_images_are_stretched_to_0_255(mode):
    image = high_depth(mode)
    assert image.mode == mode
    assert close_to(to_mnist(image), REFERENCE, 2)


def test_a_palette_image_with_alpha_gives_the_same_digit():
    image = seven(ink=(1, 255), paper=(0, 0), mode="PA")
    image.putpalette([255, 255, 255, 0, 0, 0])
    assert close_to(to_mnist(image), REFERENCE, 2)
