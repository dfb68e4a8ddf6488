"""Each step of to_mnist on real image files (written with Pillow, read by read_image):
deskewing stands a slanted digit up, the stroke step brings a 1-pixel line and a bold
marker into MNIST's range of stroke widths, anti-aliasing gives a large bilevel scan
and a tiny one gray edges, the contrast step makes a faint pencil digit full white, and
centring puts the centre of mass where MNIST's is. Each test also runs to_mnist without
its step, which fails the same check. (How much each step gains: bench/to_mnist_steps.py.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_pipeline.digits import MNIST_CENTRE, STEPS, read_image, stroke_width_of, to_mnist

from .images import saved

# MNIST's training digits' stroke widths, 10th and 90th percentiles, as stroke_width_of
# measures them (bench/results/to_mnist_steps.txt)
MNIST_WIDTHS = (1.80, 3.38)


def without(step: str) -> tuple[str, ...]:
    return tuple(s for s in STEPS if s != step)


def drawn(
    points: list[tuple[float, float]],
    size: tuple[int, int] = (200, 200),
    width: int = 12,
    ink: int = 0,
    paper: int = 255,
    mode: str = "L",
) -> Image.Image:
    """A line through `points` (fractions of the image's width and height)."""
    image = Image.new(mode, size, paper)
    corners = [(x * size[0], y * size[1]) for x, y in points]
    ImageDraw.Draw(image).line(corners, fill=ink, width=width, joint="curve")
    return image


SEVEN = [(0.2, 0.15), (0.8, 0.15), (0.4, 0.9)]
FOUR = [(0.6, 0.9), (0.6, 0.1), (0.15, 0.65), (0.85, 0.65)]


def skew(digit: np.ndarray) -> float:
    """mu11 / mu02 of the digit's gray levels: how far its ink moves right per row down."""
    mass = digit / digit.sum()
    rows, cols = np.arange(digit.shape[0]), np.arange(digit.shape[1])
    row = mass.sum(axis=1) @ rows
    col = mass.sum(axis=0) @ cols
    return float((rows - row) @ mass @ (cols - col) / (mass.sum(axis=1) @ (rows - row) ** 2))


def centre_of_mass(digit: np.ndarray) -> tuple[float, float]:
    mass = digit / digit.sum()
    return float(mass.sum(axis=1) @ np.arange(28)), float(mass.sum(axis=0) @ np.arange(28))


def read(path: Path, steps: tuple[str, ...] = STEPS) -> np.ndarray:
    return to_mnist(read_image(path), steps)


def test_a_slanted_digit_comes_out_upright(tmp_path):
    """A 1 leaning 30 degrees (top to the right), and a 4 leaning the other way."""
    one = saved(drawn([(0.3, 0.9), (0.7, 0.2)], (150, 200)), tmp_path / "one.png")
    four = drawn(FOUR).transform(
        (200, 200), Image.Transform.AFFINE, (1, -0.4, 40, 0, 1, 0), fillcolor=255
    )
    four = saved(four.convert("RGB"), tmp_path / "four.jpg", quality=90)
    for path in (one, four):
        assert abs(skew(read(path))) < 0.05, path.name
        assert abs(skew(read(path, without("deskew")))) > 0.3, path.name


@pytest.mark.parametrize(
    ("name", "width", "size"),
    [
        ("1-pixel line", 1, (300, 300)),
        ("pen on a small scan", 2, (60, 60)),
        ("marker", 40, (200, 200)),
    ],
)
def test_thin_and_bold_strokes_come_out_in_mnists_range_of_widths(tmp_path, name, width, size):
    for points, file in ((SEVEN, "seven.png"), (FOUR, "four.jpg")):
        path = saved(drawn(points, size, width).convert("RGB"), tmp_path / file)
        low, high = MNIST_WIDTHS
        assert low <= stroke_width_of(Image.fromarray(read(path))) <= high, (name, file)
        unchanged = stroke_width_of(Image.fromarray(read(path, without("stroke"))))
        assert not low <= unchanged <= high, (name, file)


def test_a_blurred_digit_is_not_eroded(tmp_path):
    """Blur makes strokes look wide at half their height: not a reason to thin them."""
    from PIL import ImageFilter

    image = drawn(SEVEN, width=16).filter(ImageFilter.GaussianBlur(8))
    path = saved(image, tmp_path / "blurred.png")
    assert np.array_equal(read(path), read(path, without("stroke")))


def gray_edge_share(digit: np.ndarray) -> float:
    """The share of the digit's pixels that are neither black nor full white."""
    ink = digit > 0
    return float(((digit > 0) & (digit < 255)).sum() / ink.sum())


@pytest.mark.parametrize(
    ("name", "size", "width"), [("large", (1000, 1000), 60), ("tiny", (14, 14), 2)]
)
def test_a_bilevel_scan_large_or_tiny_comes_out_with_gray_edges(tmp_path, name, size, width):
    path = saved(drawn(SEVEN, size, width, ink=0, paper=1, mode="1"), tmp_path / "scan.png")
    assert Image.open(path).mode == "1"
    digit = read(path)
    assert gray_edge_share(digit) > 0.3, name  # an anti-aliased rim
    assert len(np.unique(digit)) > 20, name
    assert gray_edge_share(read(path, without("antialias"))) < 0.2, name


def test_a_faint_pencil_digit_comes_out_full_white(tmp_path):
    path = saved(drawn(SEVEN, ink=200, paper=230).convert("RGB"), tmp_path / "pencil.jpg")
    assert read(path).max() == 255
    assert read(path, without("contrast")).max() < 64


def test_the_centre_of_mass_is_where_mnists_is(tmp_path):
    """MNIST's digits have their centre of mass at row and column 14.0 (+-0.3: moved by
    whole pixels); each digit here within half a pixel of it."""
    centres = []
    for number, (points, size, width) in enumerate(
        [
            (SEVEN, (200, 200), 12),
            (FOUR, (300, 120), 9),
            (SEVEN, (90, 400), 5),
            (FOUR, (64, 64), 6),
            ([(0.5, 0.1), (0.5, 0.9)], (200, 200), 20),  # a 1
            ([(0.1, 0.2), (0.9, 0.2), (0.9, 0.8), (0.1, 0.8), (0.1, 0.2)], (120, 200), 10),  # 0
        ]
    ):
        path = saved(drawn(points, size, width), tmp_path / f"{number}.png")
        centres.append((centre_of_mass(read(path)), centre_of_mass(read(path, without("centre")))))
    assert np.abs(np.array([on for on, _ in centres]) - MNIST_CENTRE).max() <= 0.5
    assert np.abs(np.array([off for _, off in centres]) - MNIST_CENTRE).max() > 0.5


def test_unknown_steps_are_one_line():
    with pytest.raises(ValueError, match=r"^unknown steps: sharpen$"):
        to_mnist(drawn(SEVEN), ("deskew", "sharpen"))
