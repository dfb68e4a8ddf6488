"""digits.py on hostile and odd image files: a header claiming too many pixels (a
decompression bomb) is refused before decoding, a large image under the limit is shrunk
as it is read, a format that would run another program (EPS: Ghostscript) is refused
without running it, and degenerate, random and damaged files each give an MNIST-style
digit or a one-line ValueError, never a traceback or NaN."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mnist_pipeline.digits import MAX_PIXELS, WORKING_SIDE, read_image, to_mnist

from .helpers import assert_one_line
from .images import (
    bilevel_png,
    bomb_png,
    close_to,
    fake_ghostscript,
    png_claiming,
    saved,
    seven,
    two_dots,
)

REFERENCE = to_mnist(seven())  # the 7, black on white, read the plain way

# ---------------------------------------------------------------- too large, or not an image


def test_a_png_header_claiming_20000x20000_pixels_is_one_line_naming_size_and_limit(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png())
    with pytest.raises(ValueError) as error:
        read_image(path)
    assert_one_line(str(error.value))
    assert "image too large: 20000x20000" in str(error.value)
    assert f"{MAX_PIXELS:,}" in str(error.value)


def test_a_13000x13000_one_bit_png_is_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(bilevel_png(13000))
    assert path.stat().st_size < 100_000
    with pytest.raises(ValueError, match=r"^image too large: 13000x13000 .*limit of [\d,]+$"):
        read_image(path)


def test_a_large_image_under_the_limit_is_shrunk_when_read_and_still_read(tmp_path):
    path = tmp_path / "large.png"
    path.write_bytes(bilevel_png(7000))  # 49 megapixels
    image = read_image(path)
    assert max(image.size) == WORKING_SIDE and image.mode == "L"
    digit = to_mnist(image)
    assert digit.shape == (28, 28) and digit.max() == 255  # the bar, bright


def test_a_large_jpeg_is_read_shrunk(tmp_path):
    path = saved(seven((3000, 4000)), tmp_path / "large.jpg", quality=80)
    image = read_image(path)
    assert image.size == (768, WORKING_SIDE)
    assert close_to(to_mnist(image), REFERENCE, 20)


def test_an_eps_file_is_refused_without_running_ghostscript(tmp_path, monkeypatch):
    folder, marker = fake_ghostscript(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    path = saved(seven(), tmp_path / "digit.eps")
    with pytest.raises(ValueError) as error:
        read_image(path)
    assert str(error.value) == "not a readable image: not a PNG, JPEG, BMP, GIF or WebP file"
    assert not marker.exists()


# ---------------------------------------------------------------- no digit to find


def test_two_far_apart_dots_give_one_line_not_nan(tmp_path):
    path = saved(two_dots(), tmp_path / "dots.png")
    with pytest.raises(ValueError, match=r"^no digit found: the marks vanish") as error:
        to_mnist(read_image(path))
    assert_one_line(str(error.value))


def float_image(*values: float) -> Image.Image:
    image = np.ones((30, 30), dtype=np.float32)
    image[10:20, 12:18] = values
    return Image.fromarray(image)


DEGENERATE = {  # name: (image, what the message starts with)
    "blank": (Image.new("L", (50, 50), 255), "no digit found: the image is blank"),
    "uniform gray": (Image.new("RGB", (50, 50), (90, 90, 90)), "no digit found"),
    "1x1": (Image.new("L", (1, 1), 0), "no digit found"),
    "fully transparent": (Image.new("RGBA", (50, 50), (0, 0, 0, 0)), "no digit found"),
    "uniform 16-bit": (Image.new("I;16", (50, 50), 40000), "no digit found"),
    "two far-apart dots": (two_dots(), "no digit found: the marks vanish"),
    "NaN in a float image": (float_image(np.nan), "the image has NaN or infinite"),
    "inf in a float image": (float_image(np.inf), "the image has NaN or infinite"),
    "-inf in a float image": (float_image(-np.inf), "the image has NaN or infinite"),
}


@pytest.mark.parametrize("name", DEGENERATE)
def test_a_degenerate_image_is_one_line(name):
    image, start = DEGENERATE[name]
    with pytest.raises(ValueError) as error:
        to_mnist(image)
    assert str(error.value).startswith(start)
    assert_one_line(str(error.value))


# ---------------------------------------------------------------- fuzzing


WRITABLE = {  # format: modes Pillow writes in it (TIFF, PPM and EPS are refused formats)
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"],
    "JPEG": ["L", "RGB", "CMYK"],
    "BMP": ["1", "L", "P", "RGB", "RGBA"],
    "GIF": ["L", "P", "RGB"],
    "WEBP": ["RGB", "RGBA"],
    "TIFF": ["L", "F", "I;16"],
    "PPM": ["L", "RGB"],
    "EPS": ["L", "RGB"],
}


def random_image(mode: str, size: tuple[int, int], content: str, seed: int) -> Image.Image:
    """Noise, one flat colour, a rectangle, or a few dots, as 4 random 8-bit channels made
    into `mode`."""
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 4)
    if content == "noise":
        pixels = rng.integers(0, 256, shape)
    else:
        pixels = np.broadcast_to(rng.integers(0, 256, 4), shape).copy()
        ys, xs = sorted(rng.integers(0, size[1] + 1, 2)), sorted(rng.integers(0, size[0] + 1, 2))
        if content == "rectangle":
            pixels[ys[0] : ys[1], xs[0] : xs[1]] = rng.integers(0, 256, 4)
        elif content == "dots":
            pixels[rng.integers(0, size[1], 3), rng.integers(0, size[0], 3)] = rng.integers(
                0, 256, 4
            )
    pixels = pixels.astype(np.uint8)
    if mode == "I;16":
        return Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)
    if mode == "F":
        return Image.fromarray(pixels[..., 0].astype(np.float32) / 7)
    return Image.fromarray(pixels, "RGBA").convert(mode)


def somewhere(draw: st.DrawFn, data: bytes) -> int:
    return int(draw(st.floats(0, 1, exclude_max=True)) * len(data))


def truncated(draw: st.DrawFn, data: bytes, format: str) -> bytes:
    return data[: somewhere(draw, data)]


def flipped(draw: st.DrawFn, data: bytes, format: str) -> bytes:
    """A byte of the file with some of its bits flipped."""
    at = somewhere(draw, data)
    return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]


def resized(draw: st.DrawFn, data: bytes, format: str) -> bytes:
    """A PNG file's header claiming another size (up to 2**31 - 1 a side); other files
    as they are."""
    if format != "PNG":
        return data
    width, height = draw(st.integers(1, 2**31 - 1)), draw(st.integers(1, 2**31 - 1))
    return png_claiming(data, width, height)


DAMAGES = {  # name: the damage done to a file's bytes, drawing what it needs
    "none": lambda draw, data, format: data,
    "truncated": truncated,
    "flipped": flipped,
    "resized": resized,
}


@st.composite
def image_files(draw: st.DrawFn) -> bytes:
    format = draw(st.sampled_from(list(WRITABLE)))
    mode = draw(st.sampled_from(WRITABLE[format]))
    size = (draw(st.integers(1, 40)), draw(st.integers(1, 40)))
    content = draw(st.sampled_from(["noise", "flat", "rectangle", "dots"]))
    image = random_image(mode, size, content, draw(st.integers(0, 2**32 - 1)))
    options = {}
    if format in ("PNG", "GIF") and mode in ("L", "P") and draw(st.booleans()):
        options["transparency"] = draw(st.integers(0, 255))  # a gray level or palette index
    elif format == "PNG" and mode == "RGB" and draw(st.booleans()):
        options["transparency"] = image.getpixel((0, 0))
    elif format in ("GIF", "PNG", "WEBP") and draw(st.booleans()):  # animated
        options.update(save_all=True, append_images=[random_image(mode, size, "noise", 1)])
    file = io.BytesIO()
    image.save(file, format=format, **options)
    damage = draw(st.sampled_from(["none", "none", "truncated", "flipped", "resized"]))
    return DAMAGES[damage](draw, file.getvalue(), format)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=image_files(), suffix=st.sampled_from([".png", ".jpg", ".gif", ".eps", ""]))
def test_random_image_files_give_a_digit_or_one_line(data, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"image{suffix}"
        path.write_bytes(data)
        try:
            digit = to_mnist(read_image(path))
        except ValueError as error:
            assert_one_line(str(error))
        else:
            assert digit.shape == (28, 28) and digit.dtype == np.uint8
