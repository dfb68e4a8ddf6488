"""What each step of `mnist_pipeline.digits.to_mnist` does for the model's accuracy: the
digits of bench/rendered_digits.py (every variant: as rendered, thin and bold strokes,
blurred, low resolution, rotated) and MNIST's own test digits made into image files
(inverted to dark on light, upscaled to 100x100, saved as PNG), each read by `read_image`
and made MNIST-style by `to_mnist` with the steps added one at a time, then with all but
one; `--before REV` adds a row for `to_mnist` as it was at git revision REV. Also
MNIST's own stroke widths, measured as the stroke step measures them, beside the range
the step brings strokes into (digits.STROKE_WIDTHS).

    python bench/to_mnist_steps.py [--model models/model.keras] [--before REV]
                                   [--fraction 1.0]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this project's package

from mnist_pipeline import digits  # noqa: E402

MNIST_SIDE = 100  # the MNIST test digits' files: 100x100 pixels
MNIST_SET = "MNIST test, 100x100 PNG"
SHORT = {  # column headings
    "as rendered": "plain",
    "thin strokes": "thin",
    "bold strokes": "bold",
    "blurred": "blur",
    "low resolution": "low-res",
    "rotated 8 degrees": "rot8",
    "rotated -8 degrees": "rot-8",
    "rotated 15 degrees": "rot15",
    "rotated -15 degrees": "rot-15",
    MNIST_SET: "MNIST",
}


def combinations() -> dict[str, tuple[str, ...]]:
    """{name: steps}: none, each step added in turn, then all but one."""
    chosen = {"no step": ()}
    for count in range(1, len(digits.STEPS) + 1):
        steps = digits.STEPS[:count]
        chosen["all steps" if count == len(digits.STEPS) else f"+ {steps[-1]}"] = steps
    for left_out in digits.STEPS[:-1]:  # all but the last: the row before "all steps"
        chosen[f"all but {left_out}"] = tuple(s for s in digits.STEPS if s != left_out)
    return chosen


def rendered_digits(folder: Path) -> list[tuple[str, Path, int]]:
    """bench/rendered_digits.py's digits in every variant, as PNGs in `folder`."""
    spec = importlib.util.spec_from_file_location(
        "rendered_digits", ROOT / "bench/rendered_digits.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.render_all(folder, list(module.VARIANTS))


def mnist_files(folder: Path) -> list[tuple[str, Path, int]]:
    """MNIST's test digits, dark on light, upscaled to MNIST_SIDE pixels, as PNGs."""
    images = np.load(ROOT / "data/processed/test_images.npy").reshape(-1, 28, 28)
    labels = np.load(ROOT / "data/processed/test_labels.npy")
    made = []
    for number, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = folder / f"mnist-{number}.png"
        upscaled = Image.fromarray(255 - image).resize((MNIST_SIDE,) * 2, Image.Resampling.BILINEAR)
        upscaled.save(path)
        made.append((MNIST_SET, path, int(label)))
    return made


def to_mnist_before(revision: str):
    """`to_mnist` of mnist_pipeline/digits.py at git `revision`."""
    source = subprocess.run(
        ["git", "show", f"{revision}:mnist_pipeline/digits.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "digits_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("digits_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.to_mnist


def accuracy(model, made, normalise) -> tuple[dict[str, float], float]:
    """({set: accuracy}, milliseconds of `normalise` per image); an image it refuses counts
    as wrong."""
    images, seconds = [], 0.0
    for _, path, _ in made:
        image = digits.read_image(path)
        start = time.perf_counter()
        try:
            images.append(normalise(image))
        except ValueError:
            images.append(np.zeros((28, 28), np.uint8))
        seconds += time.perf_counter() - start
    predicted = model.predict(np.stack(images)[..., None], verbose=0, batch_size=1024).argmax(1)
    right = predicted == np.array([digit for _, _, digit in made])
    sets = np.array([name for name, _, _ in made])
    result = {name: float(right[sets == name].mean()) for name in SHORT if (sets == name).any()}
    harder = (sets != "as rendered") & (sets != MNIST_SET)
    result["harder"] = float(right[harder].mean())
    return result, 1000 * seconds / len(made)


def mnist_stroke_widths() -> np.ndarray:
    """The stroke width of each MNIST training digit, as the stroke step measures it."""
    images = np.load(ROOT / "data/processed/train_images.npy").reshape(-1, 28, 28)
    return np.array([digits.stroke_width_of(Image.fromarray(image)) for image in images])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/model.keras"))
    parser.add_argument("--before", metavar="REV", help="also measure to_mnist at this revision")
    parser.add_argument(
        "--fraction", type=float, default=1.0, help="measure on this random share of the images"
    )
    args = parser.parse_args()
    from mnist_pipeline.model import load_model

    widths = np.percentile(mnist_stroke_widths(), [10, 25, 50, 75, 90])
    print(
        "MNIST's stroke widths (training set, pixels of the 20x20 box), 10/25/50/75/90th "
        f"percentiles: {' '.join(f'{w:.2f}' for w in widths)}; "
        f"the stroke step's range: {digits.STROKE_WIDTHS[0]}-{digits.STROKE_WIDTHS[1]}"
    )
    model = load_model(args.model)
    rows = {}
    if args.before:
        rows[f"before ({args.before})"] = to_mnist_before(args.before)
    for name, steps in combinations().items():
        rows[name] = lambda image, steps=steps: digits.to_mnist(image, steps)
    with tempfile.TemporaryDirectory() as tmp:
        made = rendered_digits(Path(tmp)) + mnist_files(Path(tmp))
        keep = np.random.default_rng(0).random(len(made)) < args.fraction
        made = [item for item, kept in zip(made, keep, strict=True) if kept]
        counts = {name: sum(item[0] == name for item in made) for name in SHORT}
        print(
            f"{args.model}; images: "
            + ", ".join(f"{SHORT[name]} {count}" for name, count in counts.items())
        )
        print("accuracy per set; harder: all rendered variants but plain; ms: to_mnist per image")
        columns = [SHORT[name] for name in counts] + ["harder", "ms"]
        print(f"{'steps':24} " + " ".join(f"{column:>7}" for column in columns), flush=True)
        for name, normalise in rows.items():
            result, milliseconds = accuracy(model, made, normalise)
            cells = [f"{value:7.4f}" for value in result.values()] + [f"{milliseconds:7.2f}"]
            print(f"{name:24} " + " ".join(cells), flush=True)


if __name__ == "__main__":
    main()
