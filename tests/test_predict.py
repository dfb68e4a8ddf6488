"""The predict command: test-set indices and image files of any size, in text or JSON,
with a one-line error for each input that cannot be read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from mnist_pipeline.digits import to_mnist

from .helpers import project_env, run_command

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
needs_font = pytest.mark.skipif(
    not FONT.is_file(), reason="needs DejaVu Sans (Debian's fonts-dejavu-core)"
)


def predict(root: Path, *args: str) -> subprocess.CompletedProcess:
    return run_command(root, "predict", *args)


def drawn_digit(
    digit: int, size: tuple[int, int], at: tuple[int, int], font_size: int
) -> Image.Image:
    """A black digit on white, its text box's top-left corner at `at`."""
    image = Image.new("L", size, 255)
    ImageDraw.Draw(image).text(
        at, str(digit), fill=0, font=ImageFont.truetype(str(FONT), font_size)
    )
    return image


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


def test_predict_index_0_is_the_seed_example_7(trained_project):
    result = predict(trained_project, "--index", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("test[0]: 7 (")


@needs_font
def test_predict_reads_image_files_and_reports_a_bad_one_without_losing_the_others(
    trained_project, tmp_path
):
    paths = []
    for digit in (0, 3, 7):
        path = tmp_path / f"digit{digit}.png"
        drawn_digit(digit, (120, 100), (30, 5), 80).convert("RGB").save(path)
        paths.append(path)
    jpeg = tmp_path / "digit1.jpg"
    drawn_digit(1, (64, 64), (20, 2), 50).save(jpeg, quality=90)
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    missing = tmp_path / "missing.png"

    args = [str(p) for p in (*paths, jpeg, not_an_image, missing)]
    result = predict(trained_project, "--json", "--index", "0", *args)
    assert result.returncode == 1  # some inputs failed
    answers = {Path(r["input"]).name: r for r in json.loads(result.stdout)}
    assert answers["test[0]"]["digit"] == 7
    for path in (*paths, jpeg):
        answer = answers[path.name]
        assert 0 <= answer["digit"] <= 9 and 0 < answer["probability"] <= 1
        assert sum(answer["probabilities"]) == pytest.approx(1, abs=1e-4)
    assert answers["notes.png"]["error"].startswith("not a readable image")
    assert answers["missing.png"]["error"] == "no such file"

    text = predict(trained_project, str(paths[0]), str(missing))
    assert text.stdout.startswith(f"{paths[0]}: ") and text.stdout.count("\n") == 1
    assert f"{missing}: error: no such file" in text.stderr and "Traceback" not in text.stderr


def test_predict_without_a_model_is_one_line(tmp_path):
    result = predict(tmp_path, "--model", "nowhere.keras", str(tmp_path / "x.png"))
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1]
        == "mnist-pipeline predict: error: nowhere.keras: missing; run the train stage (dvc repro)"
    )


@pytest.mark.slow
@needs_font
def test_rendered_font_digits_are_read_far_above_chance_by_a_small_model(trained_project):
    """bench/rendered_digits.py end to end: 0-9 in Debian's fonts at several sizes and
    places, in one of its harder variants (rotated), through predict's
    normalisation. The README quotes it for the full model; this small one (2,000
    images, 2 epochs) still reads printed digits far above 10%."""
    script = Path(__file__).resolve().parent.parent / "bench" / "rendered_digits.py"
    result = subprocess.run(
        [
            *(sys.executable, str(script), "--model", str(trained_project / "models/model.keras")),
            *("--variants", "rotated 15 degrees"),
        ],
        cwd=trained_project,
        env=project_env(trained_project),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    fonts = int(lines[0].split(": ")[-1].removesuffix(" fonts"))
    for variant, line in zip(["rotated 15 degrees"], lines[1:2], strict=True):
        words = line.split()
        assert words[:-4] == variant.split(), line
        assert int(words[-4]) >= 3 * 10 * fonts, line  # each font: 3 or more sizes, 10 digits
        assert float(words[-1]) >= 0.3, line
