"""Images made for the tests of digits.py and the predict command: PNG files written by
hand (with any header, a decompression bomb among them), a 7 drawn in lines in any mode,
digits drawn in a font, degenerate images, and a `gs` that tells whether it was run."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
needs_font = pytest.mark.skipif(
    not FONT.is_file(), reason="needs DejaVu Sans (Debian's fonts-dejavu-core)"
)


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


def high_depth(mode: str) -> Image.Image:
    """The 7 with dark ink 1000 and paper 3000 (or their floats), in a 16/32-bit mode."""
    values = 1000 + np.asarray(seven(), dtype=np.float64) * (2000 / 255)
    if mode == "F":
        return Image.fromarray(values.astype(np.float32) / 3000)
    dtype = {"I": "<i4", "I;16": "<u2", "I;16B": ">u2"}[mode]
    return Image.fromarray(values.round().astype(dtype))


def drawn_digit(
    digit: int, size: tuple[int, int], at: tuple[int, int], font_size: int
) -> Image.Image:
    """A black digit on white, its text box's top-left corner at `at`."""
    image = Image.new("L", size, 255)
    ImageDraw.Draw(image).text(
        at, str(digit), fill=0, font=ImageFont.truetype(str(FONT), font_size)
    )
    return image


def close_to(image: np.ndarray, reference: np.ndarray, tolerance: float) -> bool:
    return np.abs(image.astype(int) - reference.astype(int)).mean() < tolerance
