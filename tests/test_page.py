"""The drawing page `mnist-pipeline serve` serves at /: in headless Chromium (Debian's,
driven by Playwright), a 1, a 0 and a 7 drawn as strokes with real pointer events (a
mouse, and a finger) are read right; everything the page loads comes from the server."""

from __future__ import annotations

import itertools
import math
import shutil
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.slow  # the trained project: a small pipeline run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Strokes in the pad's own coordinates (0-1 across, 0-1 down).
ONE = [[(0.52, 0.18), (0.5, 0.5), (0.48, 0.82)]]
ZERO = [
    [
        (
            0.5 + 0.2 * math.sin(2 * math.pi * step / 24),
            0.5 - 0.3 * math.cos(2 * math.pi * step / 24),
        )
        for step in range(25)
    ]
]
SEVEN = [[(0.3, 0.22), (0.7, 0.22), (0.42, 0.82)]]


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if CHROMIUM is None:
        pytest.skip("needs Chromium (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, model_server) -> Iterator:
    """The page, freshly opened, with every URL it requests recorded on page.requested."""
    context = browser.new_context(has_touch=True)
    opened = context.new_page()
    opened.requested = []
    opened.on("request", lambda request: opened.requested.append(request.url))
    opened.goto(model_server.url + "/")
    yield opened
    context.close()


def pad_point(page, x: float, y: float) -> tuple[float, float]:
    box = page.locator("#pad").bounding_box()
    return box["x"] + x * box["width"], box["y"] + y * box["height"]


def draw_with_mouse(page, strokes: list[list[tuple[float, float]]]) -> None:
    for stroke in strokes:
        page.mouse.move(*pad_point(page, *stroke[0]))
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(*pad_point(page, x, y), steps=4)
        page.mouse.up()


def draw_with_finger(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Touch events through Chrome's DevTools protocol: the browser makes them pointer
    events of type 'touch', as a finger on a phone would."""
    devtools = page.context.new_cdp_session(page)
    for stroke in strokes:
        points = [pad_point(page, *point) for point in stroke]
        steps = [
            (ax + (bx - ax) * t / 4, ay + (by - ay) * t / 4)
            for (ax, ay), (bx, by) in itertools.pairwise(points)
            for t in range(1, 5)
        ]
        for kind, (x, y) in [("touchStart", points[0]), *[("touchMove", p) for p in steps]]:
            devtools.send(
                "Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y}]}
            )
        devtools.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    devtools.detach()


def answer_after(page, strokes: int) -> str:
    """The digit shown once the answer to the drawing after `strokes` strokes is on screen."""
    page.wait_for_selector(f"body[data-answered='{strokes}']", timeout=30_000)
    return page.text_content("#digit")


def test_a_drawn_one_zero_and_seven_are_read_right(page, model_server):
    drawn = 0
    for expected, strokes in [("1", ONE), ("0", ZERO), ("7", SEVEN)]:
        page.click("#clear")
        assert page.text_content("#digit") == "?"
        draw_with_mouse(page, strokes)
        drawn += len(strokes)
        assert answer_after(page, drawn) == expected
        shown = [
            float(v.removesuffix("%")) for v in page.locator(".bars .value").all_text_contents()
        ]
        assert len(shown) == 10 and max(shown) == shown[int(expected)] and 99 <= sum(shown) <= 101
        assert float(page.get_attribute("body", "data-stroke-to-answer-ms")) > 0
    server = urlsplit(model_server.url).netloc
    assert page.requested and {urlsplit(url).netloc for url in page.requested} == {server}


def test_a_one_drawn_with_a_finger_is_read_right(page):
    draw_with_finger(page, ONE)
    assert answer_after(page, 1) == "1"


def test_the_page_loads_nothing_from_elsewhere(model_server):
    """Its files name no other host, and the server's Content-Security-Policy forbids it."""
    from mnist_pipeline.serve import PAGE_DIR

    for path in PAGE_DIR.iterdir():
        assert "://" not in path.read_text(), path.name
    with urllib.request.urlopen(model_server.url + "/") as response:
        policy = response.headers["Content-Security-Policy"]
    assert policy.startswith("default-src 'self';")
