"""Hostile and odd image files given to predict: decompression bombs, formats that would
run other programs, transparency, 16-bit and degenerate images. Each gets an MNIST-style
digit or a one-line ValueError, never a traceback or NaN, in bounded memory."""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from mnist_pipeline.digits import MAX_PIXELS, WORKING_SIDE, read_image, to_mnist

from .helpers import COMMAND, project_env, run_measured

# ---------------------------------------------------------------- image-making helpers


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
    """A PNG file written by hand: the header says what we like, whatever the data."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def png_claiming(png: bytes, width: int, height: int) -> bytes:
    """The PNG file with its header saying width x height pixels, whatever its data."""
    header = struct.pack(">II", width, height) + png[24:29]
    return png[:8] + png_chunk(b"IHDR", header) + png[33:]


def bomb_png() -> bytes:
    """69 bytes claiming 20000x20000 8-bit grayscale pixels (400 megapixels)."""
    return png_bytes(20000, 20000, 8, 0, zlib.compress(b"\0" * 64))


def bilevel_png(side: int) -> bytes:
    """A side x side 1-bit PNG, white with a black bar (a "1") in the middle: under 64 KB
    for 13000 a side, 169 megapixels when decoded."""
    row_bytes = (side + 7) // 8
    white = b"\0" + b"\xff" * row_bytes
    bar_at, bar_width = row_bytes // 2 - row_bytes // 40, row_bytes // 20
    bar = b"\0" + b"\xff" * bar_at + b"\0" * bar_width + b"\xff" * (row_bytes - bar_at - bar_width)
    top, bar_height = side // 5, 3 * side // 5
    rows = white * top + bar * bar_height + white * (side - top - bar_height)
    return png_bytes(side, side, 1, 0, zlib.compress(rows, 6))


def seven(size: tuple[int, int] = (60, 80), ink=0, paper=255, mode: str = "L") -> Image.Image:
    """A 7 drawn with lines: `ink` strokes on `paper`, in `mode`."""
    image = Image.new(mode, size, paper)
    width, height = size
    corners = [
        (0.2 * width, 0.2 * height),
        (0.8 * width, 0.2 * height),
        (0.4 * width, 0.85 * height),
    ]
    ImageDraw.Draw(image).line(corners, fill=ink, width=max(1, width // 10))
    return image


def two_dots(side: int = 1000) -> Image.Image:
    """White, with one black pixel near each of two opposite corners."""
    image = Image.new("L", (side, side), 255)
    image.putpixel((5, 5), 0)
    image.putpixel((side - 6, side - 6), 0)
    return image


def saved(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


def fake_ghostscript(folder: Path) -> tuple[Path, Path]:
    """A `gs` on PATH that leaves a marker file when run: (its folder, the marker)."""
    folder.mkdir()
    marker = folder / "gs-was-run"
    gs = folder / "gs"
    gs.write_text(f"#!/bin/sh\ntouch '{marker}'\nexit 1\n")
    gs.chmod(0o755)
    return folder, marker


def assert_one_line(message: str) -> None:
    assert message and "\n" not in message and "\r" not in message, repr(message)


def close_to(image: np.ndarray, reference: np.ndarray, tolerance: float) -> bool:
    return np.abs(image.astype(int) - reference.astype(int)).mean() < tolerance


REFERENCE = to_mnist(seven())  # the 7, black on white, read the plain way

# ---------------------------------------------------------------- the findings


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


def test_two_far_apart_dots_give_one_line_not_nan(tmp_path):
    path = saved(two_dots(), tmp_path / "dots.png")
    with pytest.raises(ValueError, match=r"^no digit found: the marks vanish") as error:
        to_mnist(read_image(path))
    assert_one_line(str(error.value))


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


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_of_image_file_gives_the_same_digit(tmp_path, kind):
    make, tolerance = KINDS[kind]
    assert close_to(to_mnist(read_image(make(tmp_path))), REFERENCE, tolerance)


def high_depth(mode: str) -> Image.Image:
    """The 7 with dark ink 1000 and paper 3000 (or their floats), in a 16/32-bit mode."""
    values = 1000 + np.asarray(seven(), dtype=np.float64) * (2000 / 255)
    if mode == "F":
        return Image.fromarray(values.astype(np.float32) / 3000)
    dtype = {"I": "<i4", "I;16": "<u2", "I;16B": ">u2"}[mode]
    return Image.fromarray(values.round().astype(dtype))


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I", "F"])
def test_high_depth_images_are_stretched_to_0_255(mode):
    image = high_depth(mode)
    assert image.mode == mode
    assert close_to(to_mnist(image), REFERENCE, 2)


def test_a_palette_image_with_alpha_gives_the_same_digit():
    image = seven(ink=(1, 255), paper=(0, 0), mode="PA")
    image.putpalette([255, 255, 255, 0, 0, 0])
    assert close_to(to_mnist(image), REFERENCE, 2)


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
    data = file.getvalue()
    damage = draw(st.sampled_from(["none", "none", "truncated", "flipped", "resized"]))
    at = int(draw(st.floats(0, 1, exclude_max=True)) * len(data))
    if damage == "truncated":
        data = data[:at]
    elif damage == "flipped":
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    elif damage == "resized" and format == "PNG":
        width, height = draw(st.integers(1, 2**31 - 1)), draw(st.integers(1, 2**31 - 1))
        data = png_claiming(data, width, height)
    return data


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


# ---------------------------------------------------------------- the predict command


def predict_measured(root: Path, *args: str, **env: str) -> tuple[int, str, str, int]:
    """Run `mnist-pipeline predict <args>`: its exit code, stdout, stderr and peak
    resident memory in MiB."""
    result, peak_mib = run_measured(
        [COMMAND, "predict", *args],
        cwd=root,
        env=project_env(root, **env),
        capture_output=True,
        text=True,
    )
    return result.returncode, result.stdout, result.stderr, peak_mib


def hostile_files(folder: Path) -> dict[str, Path]:
    """The issue's hostile images and other broken or odd files, by name, in the order
    given to predict: first those that take gigabytes if decoded, last the bomb (which
    stopped the run)."""
    folder.mkdir()
    makers = {
        "huge.png": lambda path: path.write_bytes(bilevel_png(13000)),  # 169 MP: ~4.5 GB
        "large.png": lambda path: path.write_bytes(bilevel_png(7000)),  # 49 MP: shrunk
        "seven.eps": lambda path: seven().save(path),
        "transparent.png": lambda path: seven((60, 80), (0, 0, 0, 255), 0, "RGBA").save(path),
        "deep.png": lambda path: high_depth("I;16").save(path),
        "dots.png": lambda path: two_dots().save(path),
        "one-pixel.png": lambda path: Image.new("L", (1, 1)).save(path),
        "truncated.png": lambda path: path.write_bytes(bilevel_png(500)[:300]),
        "text.png": lambda path: path.write_text("hello\n"),
        "empty.jpg": lambda path: path.write_bytes(b""),
        "a-directory.png": Path.mkdir,
        "missing.png": lambda path: None,
        "bomb.png": lambda path: path.write_bytes(bomb_png()),
    }
    for name, make in makers.items():
        make(folder / name)
    return {name: folder / name for name in makers}


def test_predict_answers_every_hostile_file_in_one_line_in_bounded_memory(
    trained_project, tmp_path
):
    good = saved(seven((120, 160)), tmp_path / "good.png")
    hostile = hostile_files(tmp_path / "hostile")
    gs_folder, gs_marker = fake_ghostscript(tmp_path / "bin")
    path = f"{gs_folder}{os.pathsep}{project_env(trained_project)['PATH']}"

    code, out, err, baseline_mib = predict_measured(trained_project, "--json", str(good), PATH=path)
    assert code == 0, err
    code, out, err, peak_mib = predict_measured(
        trained_project,
        "--json",
        *map(str, hostile.values()),
        str(good),
        PATH=path,
    )

    assert code == 1 and "Traceback" not in err, err
    answers = {Path(answer["input"]).name: answer for answer in json.loads(out)}
    assert sorted(answers) == sorted([*hostile, "good.png"])
    for answer in answers.values():
        if "error" in answer:
            assert_one_line(answer["error"])
        else:
            assert 0 <= answer["digit"] <= 9 and np.isfinite(answer["probabilities"]).all()
    assert "digit" in answers["good.png"] and "digit" in answers["large.png"]
    assert "digit" in answers["transparent.png"] and "digit" in answers["deep.png"]
    assert answers["huge.png"]["error"].startswith("image too large: 13000x13000 ")
    assert answers["bomb.png"]["error"].startswith("image too large: 20000x20000 ")
    assert answers["seven.eps"]["error"].startswith("not a readable image: not a PNG, JPEG")
    assert not gs_marker.exists()
    # Measured: +18 MiB over the run on one small image (the images are read before
    # TensorFlow loads); without the limit and shrinking, +3.3 GiB for huge.png alone.
    assert peak_mib - baseline_mib < 300, (baseline_mib, peak_mib)
