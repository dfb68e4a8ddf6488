"""Load on `mnist-pipeline serve`: latency, throughput, memory, and the drawing page.

    python bench/serve.py [--requests 10000] [--clients 16] [--json FILE]

Run from the project root after `dvc repro` (it serves models/saved_model). It starts
the server on a free port on 127.0.0.1, as a user would, then measures:

- latency: one client, one digit a request, on one keep-alive connection (p50, p99);
- throughput: --clients clients at once, each on its own keep-alive connection, one digit
  a request, --requests requests in all: predictions a second and failed requests;
- memory: the server's resident memory after a warm-up and after the --requests;
- the page: in headless Chromium, strokes drawn on the page, from each stroke's end to
  its answer on screen (the page's own data-stroke-to-answer-ms).

The clients run in this process, on the same 2 cores as the server: the figures are
what the server gives while sharing the machine with its load. Prints a table and writes
JSON to bench/results/serve.json (or --json).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root

from tests.project import serving

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"p50_ms": 20.0, "predictions_per_s": 300.0}
PAGE_STROKES = 30


def rss_mib(pid: int) -> float:
    """The process's resident memory, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


class Client:
    """One keep-alive connection sending predict requests."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.connection = http.client.HTTPConnection(*address, timeout=60)

    def predict(self, body: bytes) -> bool:
        self.connection.request(
            "POST", "/v1/models/mnist:predict", body, {"Content-Type": "application/json"}
        )
        response = self.connection.getresponse()
        answer = response.read()
        return response.status == 200 and answer.startswith(b'{"predictions"')


def latency(address: tuple[str, int], body: bytes, count: int) -> dict:
    client = Client(address)
    for _ in range(50):  # warm-up
        client.predict(body)
    times, failed = [], 0
    for _ in range(count):
        start = time.perf_counter()
        failed += not client.predict(body)
        times.append((time.perf_counter() - start) * 1000)
    return {
        "requests": count,
        "p50_ms": round(float(np.percentile(times, 50)), 2),
        "p99_ms": round(float(np.percentile(times, 99)), 2),
        "failed": failed,
    }


def throughput(address: tuple[str, int], bodies: list[bytes], clients: int, total: int) -> dict:
    per_client = total // clients
    failures = [0] * clients
    ready = threading.Barrier(clients + 1)

    def run(number: int) -> None:
        client = Client(address)
        client.predict(bodies[number % len(bodies)])  # connected before the clock starts
        ready.wait()
        for request in range(per_client):
            try:
                failures[number] += not client.predict(bodies[(number + request) % len(bodies)])
            except OSError:
                failures[number] += 1
                client = Client(address)

    with ThreadPoolExecutor(clients) as pool:
        running = [pool.submit(run, number) for number in range(clients)]
        ready.wait()
        start = time.perf_counter()
        for future in running:
            future.result()
        seconds = time.perf_counter() - start
    return {
        "clients": clients,
        "requests": per_client * clients,
        "seconds": round(seconds, 2),
        "predictions_per_s": round(per_client * clients / seconds, 1),
        "failed": sum(failures),
    }


def page_timing(url: str, strokes: int) -> dict | None:
    """Stroke-end-to-answer times on the drawing page, or None without Chromium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return None
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url + "/")
        box = page.locator("#pad").bounding_box()
        for stroke in range(1, strokes + 1):
            if stroke % 3 == 1:
                page.click("#clear")
            x = box["x"] + box["width"] * (0.3 + 0.2 * (stroke % 3))
            page.mouse.move(x, box["y"] + box["height"] * 0.2)
            page.mouse.down()
            page.mouse.move(x, box["y"] + box["height"] * 0.8, steps=8)
            page.mouse.up()
            page.wait_for_selector(f"body[data-answered='{stroke}']", timeout=30_000)
            times.append(float(page.get_attribute("body", "data-stroke-to-answer-ms")))
        browser.close()
    warm = times[1:]  # the first answer also loads the page's code paths
    return {
        "strokes": len(warm),
        "median_ms": round(statistics.median(warm), 1),
        "max_ms": round(max(warm), 1),
        "browser": subprocess.run(
            [chromium, "--version"], capture_output=True, text=True
        ).stdout.strip(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "serve.json")
    args = parser.parse_args()

    test_images = np.load(ROOT / "data" / "processed" / "test_images.npy")
    bodies = [
        json.dumps({"instances": test_images[i : i + 1].tolist()}).encode() for i in range(100)
    ]
    with serving(ROOT) as server:
        address = (urlsplit(server.url).hostname, urlsplit(server.url).port)
        single = latency(address, bodies[0], 1000)
        memory = [rss_mib(server.process.pid)]
        loads = []
        for _ in range(2):
            loads.append(throughput(address, bodies, args.clients, args.requests))
            memory.append(rss_mib(server.process.pid))
        page = page_timing(server.url, PAGE_STROKES)
    with serving(ROOT, "--max-batch", "1") as server:  # batching off, for comparison
        address = (urlsplit(server.url).hostname, urlsplit(server.url).port)
        unbatched = throughput(address, bodies, args.clients, args.requests)

    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "latency_one_digit": single,
        "load": loads,
        "load_without_batching": unbatched,
        "server_rss_mib": {
            f"after_{1050 + run * args.requests}_requests": round(mib, 1)
            for run, mib in enumerate(memory)
        },
        "page_stroke_to_answer": page,
        "targets": TARGETS,
    }
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    best = max(run["predictions_per_s"] for run in loads)
    met = single["p50_ms"] <= TARGETS["p50_ms"] and best >= TARGETS["predictions_per_s"]
    failed = single["failed"] + sum(run["failed"] for run in loads)
    print(
        f"targets {'met' if met and not failed else 'MISSED'}: p50 {single['p50_ms']} ms, "
        f"{best} predictions/s, {failed} failed"
    )


if __name__ == "__main__":
    main()
