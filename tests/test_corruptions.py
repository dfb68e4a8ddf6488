"""The robustness suite's data (mnist_pipeline/corruptions.py, renderings.py): every set
keeps the shape and changes the digits, byte for byte the same for a seed in a fresh
process and different for another; each corruption does what its docstring says; a
smaller rendered set is the whole one's digits, spread over the fonts and layouts; the
example picture has one cell per set. Built once for 200 real test images (MNIST_MIRROR)."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage import feature

from mnist_pipeline import corruptions, figures, renderings
from mnist_pipeline.corruptions import (
    CLEAN,
    CORRUPTIONS,
    MNIST_C,
    SUITE,
    build_suite,
    corrupt,
    save_examples,
    set_generator,
)
from mnist_pipeline.mnist import TEST_IMAGES, TEST_LABELS, parse_idx

SEED = 7
COUNT = 200  # test images in the suite built here
FRESH_COUNT = 50  # ... and in the fresh process's
RANDOM = {
    *("shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "rotate"),
    *("translate", "fog", "spatter", "dotted_line", "zigzag", "rotated", "rendered_rotated"),
}
ROOT = Path(__file__).resolve().parent.parent

FRESH = textwrap.dedent(
    """
    import hashlib, sys
    import numpy as np
    from mnist_pipeline.corruptions import build_suite
    images, labels = np.load(sys.argv[1]), np.load(sys.argv[2])
    for name, (x, y) in build_suite(images, labels, int(sys.argv[3])).items():
        print(name, hashlib.sha256(x.tobytes()).hexdigest(), hashlib.sha256(y.tobytes()).hexdigest())
    """
)


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(array.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def test_set(mnist_mirror) -> tuple[np.ndarray, np.ndarray]:
    """The first COUNT test images and labels."""
    images = parse_idx(
        gzip.decompress((mnist_mirror / "t10k-images-idx3-ubyte.gz").read_bytes()), TEST_IMAGES
    )
    labels = parse_idx(
        gzip.decompress((mnist_mirror / "t10k-labels-idx1-ubyte.gz").read_bytes()), TEST_LABELS
    )
    return images[:COUNT].copy(), labels[:COUNT].copy()


@pytest.fixture(scope="module")
def built(test_set, tmp_path_factory):
    """(suite, fresh): the suite for the test images with SEED, built here, and {name:
    (images' sha256, labels' sha256)} of the one a fresh process built for the first
    FRESH_COUNT of them, at the same time (on the other core)."""
    images, labels = test_set
    folder = tmp_path_factory.mktemp("fresh")
    np.save(folder / "images.npy", images[:FRESH_COUNT])
    np.save(folder / "labels.npy", labels[:FRESH_COUNT])
    command = [sys.executable, "-c", FRESH, str(folder / "images.npy")]
    command += [str(folder / "labels.npy"), str(SEED)]
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as fresh:
        suite = build_suite(images, labels, SEED)
        out, err = fresh.communicate(timeout=120)
    assert fresh.returncode == 0, err
    hashes = {name: (x, y) for name, x, y in (line.split() for line in out.splitlines())}
    return suite, hashes


@pytest.fixture(scope="module")
def suite(built) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return built[0]


def test_the_suite_is_every_set_in_order(suite):
    assert list(suite) == list(SUITE)
    assert len(MNIST_C) == 15 and SUITE[:15] == MNIST_C
    assert SUITE[15:19] == ("thin", "bold", "low_resolution", "rotated")
    assert SUITE[19:] == tuple(renderings.SETS) and renderings.SETS.keys() >= {"rendered"}
    assert CLEAN not in SUITE and set(CORRUPTIONS) == set(SUITE[:19])


def test_every_set_keeps_shape_and_type_and_changes_the_digits(suite, test_set):
    images, labels = test_set
    rendered, _ = suite["rendered"]
    for name, (x, y) in suite.items():
        assert x.dtype == np.uint8 and y.dtype == np.uint8, name
        assert x.ndim == 3 and x.shape[1:] == (28, 28) and y.shape == (len(x),), name
        if name in CORRUPTIONS:
            assert len(x) == len(images) and np.array_equal(y, labels), name
            changed = (x != images).any(axis=(1, 2)).mean()
        else:
            assert len(x) == len(rendered), name
            changed = (x != rendered).any(axis=(1, 2)).mean() if name != "rendered" else 1
        assert changed >= 0.9, (name, changed)


def test_each_set_is_the_same_bytes_in_a_fresh_process(built, test_set):
    suite, fresh = built
    images, labels = test_set
    assert list(fresh) == list(SUITE)
    for name in SUITE:
        if name in CORRUPTIONS:  # the fresh process had the first FRESH_COUNT images
            x = corrupt(name, images[:FRESH_COUNT], set_generator(name, SEED))
            y = labels[:FRESH_COUNT]
        else:  # the rendered sets do not depend on the test images
            x, y = suite[name]
        assert fresh[name] == (sha256(x), sha256(y)), name


def test_a_set_depends_on_its_own_generator_alone(suite, test_set):
    images, _ = test_set
    for name in ("zigzag", "rotated"):
        assert np.array_equal(corrupt(name, images, set_generator(name, SEED)), suite[name][0])


def grid_index(chosen: set[tuple[int, int, int]]) -> list[int]:
    """Where the (font, layout, digit) indices `chosen` are in a whole rendered set."""
    return [
        (font * len(renderings.LAYOUTS) + layout) * 10 + digit
        for font, layout, digit in sorted(chosen)
    ]


def test_the_random_sets_differ_for_another_seed(suite, test_set):
    images, _ = test_set
    for name in RANDOM:
        rng = set_generator(name, SEED + 1)
        if name in CORRUPTIONS:
            other, same_digits = corrupt(name, images, rng), suite[name][0]
        else:  # 100 digits of the set (the very digits of the whole set: see below) differ
            other, _ = renderings.rendered_set(name, rng, 100)
            same_digits = suite[name][0][grid_index(renderings.chosen_digits(100))]
        assert not np.array_equal(other, same_digits), name
    for name in set(CORRUPTIONS) - RANDOM:  # no randomness: the same for any seed
        assert np.array_equal(corrupt(name, images, set_generator(name, 0)), suite[name][0])


def test_corrupt_refuses_unknown_names_and_wrong_arrays(test_set):
    images, _ = test_set
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown corruption 'rendered'"):
        corrupt("rendered", images, rng)
    with pytest.raises(ValueError, match="uint8"):
        corrupt("thin", images.astype(np.float32), rng)
    with pytest.raises(ValueError, match="shape"):
        corrupt("thin", images[..., None], rng)


# ---------------------------------------------------------------- what each one does


def ink_centre(x: np.ndarray) -> np.ndarray:
    """(N, 2): each image's centre of mass (row, column)."""
    grid = np.arange(28)
    total = x.sum(axis=(1, 2)).astype(np.float64)
    return np.stack([x.sum(axis=2) @ grid, x.sum(axis=1) @ grid], axis=1) / total[:, None]


def best_angle(clean: np.ndarray, turned: np.ndarray, degrees: np.ndarray) -> float:
    """The rotation of `clean` among `degrees` that best matches `turned` (correlation)."""
    scores = [
        np.sum(ndimage.rotate(clean.astype(float), angle, reshape=False, order=1) * turned)
        for angle in degrees
    ]
    return float(degrees[int(np.argmax(scores))])


def test_shot_noise_leaves_the_background_and_quantises_the_ink(suite, test_set):
    images, _ = test_set
    x = suite["shot_noise"][0]
    assert (x[images == 0] == 0).all()
    assert set(np.unique(x)) <= {0, 85, 170, 255}  # Poisson(3p) / 3


def test_impulse_noise_sets_about_17_percent_of_pixels_black_or_white(suite, test_set):
    images, _ = test_set
    x = suite["impulse_noise"][0]
    assert 0.07 < np.mean(x[images == 0] == 255) < 0.1  # half of 17% turned white
    assert 0.07 < np.mean(x[images == 255] == 0) < 0.1  # half of 17% turned black


def test_brightness_raises_the_background_to_gray(suite, test_set):
    images, _ = test_set
    x = suite["brightness"][0]
    assert (x[images == 0] == 128).all() and (x[images >= 128] == 255).all()


def test_translate_moves_the_centre_of_mass_3_pixels_each_way(suite, test_set):
    images, _ = test_set
    moved = np.abs(ink_centre(suite["translate"][0]) - ink_centre(images))
    assert np.median(moved, axis=0) == pytest.approx([3, 3], abs=0.3)
    assert (moved > 2).all(axis=1).mean() > 0.9


def test_scale_shrinks_the_digit_to_0_7_about_the_centre(suite, test_set):
    images, _ = test_set

    def height(x):
        rows = (x > 64).any(axis=2)
        return 27 - rows[:, ::-1].argmax(axis=1) - rows.argmax(axis=1) + 1

    ratio = np.median(height(suite["scale"][0]) / height(images))
    assert ratio == pytest.approx(0.7, abs=0.07)


def test_rotate_turns_0_4_radians_and_rotated_at_most_15_degrees(suite, test_set):
    images, _ = test_set
    degrees = np.arange(-30, 31, 1.0)
    angles = {
        name: [best_angle(images[i], suite[name][0][i], degrees) for i in range(40)]
        for name in ("rotate", "rotated")
    }
    paper = np.rad2deg(0.4)  # 22.9
    assert np.mean(np.abs(np.abs(angles["rotate"]) - paper) <= 2) > 0.85, angles["rotate"]
    assert 0 < np.mean(np.array(angles["rotate"]) > 0) < 1  # both ways
    drawn = np.abs(angles["rotated"])
    assert drawn.max() <= 16, angles["rotated"]
    assert np.mean(drawn >= 5) > 0.4, angles["rotated"]  # spread over the range, not ~0


def test_stripe_inverts_the_quarters_at_either_side(suite, test_set):
    images, _ = test_set
    x = suite["stripe"][0]
    assert np.array_equal(x[:, :, :7], 255 - images[:, :, :7])
    assert np.array_equal(x[:, :, 21:], 255 - images[:, :, 21:])
    assert np.array_equal(x[:, :, 7:21], images[:, :, 7:21])


def test_lines_and_zigzags_only_add_ink(suite, test_set):
    images, _ = test_set
    for name in ("dotted_line", "zigzag"):
        x = suite[name][0]
        assert (x >= images).all(), name
        added = ((x > images) & (images == 0)).sum(axis=(1, 2))
        assert np.median(added) >= 15, (name, np.median(added))
    dotted = suite["dotted_line"][0].astype(int) - images
    assert (dotted[:, :, [0, 1, 4, 5, 27]] == 0).all()  # the gaps between the dashes


def test_fog_and_spatter_cover_the_background_but_keep_the_digit_brighter(suite, test_set):
    images, _ = test_set
    fog = suite["fog"][0].astype(float)
    ink, paper = images > 128, images == 0
    assert np.median(fog[paper]) > 20  # a haze over the black
    for image, mask, background in zip(fog, ink, paper, strict=True):
        assert image[mask].mean() > image[background].mean() + 30
    spatter = suite["spatter"][0]
    mud = paper & (spatter > 0)  # gray 63 where the mask is 1, down to 0.8 of it
    assert mud.any(axis=(1, 2)).mean() > 0.9
    assert spatter[mud].min() >= 50 and spatter[mud].max() <= 63


def test_canny_edges_are_outlines_only(suite, test_set):
    images, _ = test_set
    edges = suite["canny_edges"][0]
    assert set(np.unique(edges)) == {0, 255}
    assert (edges == 255).any(axis=(1, 2)).all()
    core = ndimage.grey_erosion(images, size=(1, 3, 3)) > 200  # inside thick strokes
    assert (edges[core] == 0).mean() > 0.95  # hollow
    for i in range(5):  # as scikit-image's canny on the image alone
        assert np.array_equal(edges[i] == 255, feature.canny(images[i] / 255, sigma=1))


def test_thin_has_less_ink_and_bold_more(suite, test_set):
    images, _ = test_set
    clean = images.sum(axis=(1, 2), dtype=np.int64)
    thin = suite["thin"][0].sum(axis=(1, 2), dtype=np.int64)
    bold = suite["bold"][0].sum(axis=(1, 2), dtype=np.int64)
    assert (thin < clean).all() and (bold > clean).all()
    assert np.median(thin / clean) < 0.8 and np.median(bold / clean) > 1.3
    assert (suite["thin"][0].max(axis=(1, 2)) == images.max(axis=(1, 2))).all()  # dark ink


def test_low_resolution_is_14_by_14_blocks(suite, test_set):
    images, _ = test_set
    x = suite["low_resolution"][0]
    for image in x:
        assert len(np.unique(image, axis=0)) <= 14 and np.unique(image, axis=1).shape[1] <= 14
    rows = [len(np.unique(clean, axis=0)) for clean in images]  # the clean ones have more
    assert np.mean(np.array(rows) > 14) > 0.9
    # Each block repeats one coarse pixel: rows 2k and 2k+1 are the same.
    assert np.array_equal(x[:, 0::2], x[:, 1::2]) and np.array_equal(x[:, :, 0::2], x[:, :, 1::2])


def test_the_rendered_sets_are_every_digit_in_every_font_and_layout(suite):
    size = len(renderings.FONTS) * len(renderings.LAYOUTS) * 10
    assert 1000 <= size <= 3000
    for name in renderings.SETS:
        images, labels = suite[name]
        assert len(images) == size, name
        assert (np.bincount(labels, minlength=10) == size // 10).all(), name
        assert np.array_equal(labels, np.tile(np.arange(10), size // 10)), name
        assert (images.max(axis=(1, 2)) > 128).all(), name  # no digit lost
    assert all((renderings.FONT_FOLDER / font).is_file() for font in renderings.FONTS)


def test_a_smaller_rendered_set_is_the_whole_ones_digits_spread_over_fonts_and_layouts(
    suite, test_set
):
    fonts, layouts = len(renderings.FONTS), len(renderings.LAYOUTS)
    pairs = renderings.spread_pairs()
    assert sorted(pairs) == [(f, g) for f in range(fonts) for g in range(layouts)]  # each once
    assert {f for f, _ in pairs[:fonts]} == set(range(fonts))  # the first 19: every font
    assert {g for _, g in pairs[:layouts]} == set(range(layouts))  # the first 8: every layout
    for fonts_, layouts_ in ((4, 6), (6, 4), (5, 5)):  # counts that share a factor too
        assert sorted(renderings.spread_pairs(fonts_, layouts_)) == sorted(
            (f, g) for f in range(fonts_) for g in range(layouts_)
        )
    assert renderings.chosen_digits() == renderings.chosen_digits(10_000)
    assert len(renderings.chosen_digits()) == renderings.GRID_SIZE == len(suite["rendered"][0])
    chosen = renderings.chosen_digits(105)  # 10 whole pairs and digits 0-4 of an 11th
    digits = np.bincount([digit for *_, digit in chosen], minlength=10)
    assert len(chosen) == 105 and list(digits) == [11] * 5 + [10] * 5
    assert len({font for font, _, _ in chosen}) == 11 and len({g for _, g, _ in chosen}) == 8
    at = grid_index(chosen)
    for name in renderings.SETS:
        images, labels = renderings.rendered_set(name, set_generator(name, SEED), 105)
        assert np.array_equal(images, suite[name][0][at]), name  # the same bytes
        assert np.array_equal(labels, suite[name][1][at]), name
    images, labels = test_set
    small = build_suite(images[:2], labels[:2], SEED, rendered=3)  # as the stage builds it
    assert [len(y) for _, y in small.values()] == [2] * 19 + [3] * 6


def test_rendered_variants_do_what_they_say(suite):
    plain = suite["rendered"][0].astype(np.int64)
    ink = plain.sum(axis=(1, 2))
    assert np.median(suite["rendered_thin"][0].sum(axis=(1, 2)) / ink) < 0.85
    assert np.median(suite["rendered_bold"][0].sum(axis=(1, 2)) / ink) > 1.1
    levels = [len(np.unique(image)) for image in (plain, suite["rendered_blurred"][0])]
    assert levels[1] >= levels[0]  # smooth gray edges, not crisp ones
    edges = [
        np.abs(np.diff(suite[name][0].astype(int), axis=2)).mean()
        for name in ("rendered", "rendered_blurred")
    ]
    assert edges[1] < edges[0] * 0.8


def test_save_examples_draws_one_captioned_example_per_set(suite, tmp_path):
    path = tmp_path / "examples.png"
    save_examples(suite, path)
    slots = corruptions._caption_slots(list(suite), 8)
    assert [name for name in slots if name] == list(SUITE)
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        cell = 28 * figures.ZOOM + 2 * figures.MARGIN
        assert picture.width == 8 * cell
        rows = -(-len(slots) // 8)
        assert picture.height == rows * (
            28 * figures.ZOOM + figures.CAPTION_HEIGHT + figures.MARGIN
        )
    # A blank either side of the one caption wider than two cells' room.
    at = slots.index("rendered_low_resolution")
    assert slots[at - 1] is None and slots[at + 1] is None and at % 8 not in (0, 7)
