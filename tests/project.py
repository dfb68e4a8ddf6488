"""Tooling for whole copies of the project, shared by the tests and the benchmark (bench/):
copy its source into a fresh git repository, change params.yaml there, and serve its
model with `mnist-pipeline serve`."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from dvc.utils.serialize import modify_yaml

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "mnist-dvc-pipeline",
    "GIT_AUTHOR_EMAIL": "tools@localhost",
    "GIT_COMMITTER_NAME": "mnist-dvc-pipeline",
    "GIT_COMMITTER_EMAIL": "tools@localhost",
}


def copy_project(source: Path, destination: Path, untracked: bool = False) -> Path:
    """Copy the files git tracks in `source` (with `untracked`, also those it would track)
    to `destination`, as a new git repository with one commit. Data, models and caches
    stay behind."""
    extra = ["--others", "--exclude-standard"] if untracked else []
    listing = subprocess.run(
        ["git", "ls-files", "--cached", *extra, "-z"], cwd=source, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listing.split("\0")):
        if (source / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, destination / name)
    env = dict(os.environ, **GIT_IDENTITY)
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "copy"]):
        subprocess.run(["git", *command], cwd=destination, env=env, check=True)
    return destination


def set_params(root: Path, changes: dict) -> None:
    """Update params.yaml in the project at `root`, e.g. {"train": {"epochs": 1}, "seed": 7},
    as `dvc exp run -S` does: DVC's own round-trip YAML, comments kept."""
    with modify_yaml(root / "params.yaml") as params:
        for key, value in changes.items():
            if isinstance(value, dict):
                params[key].update(value)
            else:
                params[key] = value


COMMAND = str(Path(sys.executable).parent / "mnist-pipeline")  # the installed console script
# What `mnist-pipeline serve` prints once it listens:
# `serving models/saved_model/1 as 'mnist' at http://HOST:PORT/v1/models/mnist; ...`
SERVING_LINE = re.compile(r"^serving .* at (http://\S+?)/v1/models/")


@dataclasses.dataclass
class Served:
    """A running `mnist-pipeline serve`: its base URL (http://HOST:PORT), its process, and
    every line it has printed so far (stdout and stderr, the serving line among them)."""

    url: str
    process: subprocess.Popen
    output: list[str]


@contextlib.contextmanager
def serving(
    root: Path, *options: str, env: dict[str, str] | None = None, command: tuple[str, ...] = ()
) -> Iterator[Served]:
    """`mnist-pipeline serve --port 0 OPTIONS` (or `command` in its place: another
    version's) run in the project at `root` (with `env`;
    None: this process's environment), on a free port: its URL, read from the line it
    prints once it listens, and what it prints, collected as it comes (so it never
    blocks on a full pipe). Stopped at the end of the block. A server that exits before
    that line raises RuntimeError, with all it printed."""
    process = subprocess.Popen(
        [*(command or (COMMAND,)), "serve", "--port", "0", *options],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    collector = threading.Thread(target=output.extend, args=(process.stdout,), daemon=True)
    try:
        for line in process.stdout:
            output.append(line)
            listening = SERVING_LINE.match(line)
            if listening:
                break
        else:
            process.wait()
            raise RuntimeError(
                f"mnist-pipeline serve exited ({process.returncode}) before serving:\n"
                + "".join(output)
            )
        collector.start()
        yield Served(listening.group(1), process, output)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if collector.is_alive():
            collector.join(timeout=10)
        process.stdout.close()


def rss_mib(pid: int) -> float:
    """The resident memory of process `pid` and of every process it started (the server's
    drawing readers), in MiB, from /proc."""
    total, pids = 0, [pid]
    while pids:
        current = pids.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            for task in Path(f"/proc/{current}/task").iterdir():
                pids += map(int, (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):  # it ended meanwhile
            continue
        total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))
    return total / 1024


def drawing_png(width: int, height: int, mode: str = "L", ink: bool = True) -> bytes:
    """A PNG of a black canvas (tiny when compressed, `width` x `height` when decoded),
    with a white bar down its middle when `ink`: a digit 1."""
    from PIL import Image

    image = Image.new(mode, (width, height))
    if ink:
        bar = (width // 2 - width // 40, height // 8, width // 2 + width // 40, height * 7 // 8)
        image.paste((255,) * len(mode), bar)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def scan_bomb_jpeg(side: int = 7000, extra_scans: int = 200) -> bytes:
    """A progressive JPEG, `side` pixels a side, whose last scan is repeated
    `extra_scans` times: each repeat costs a pass over every pixel to decode (200 extra
    scans of 7000x7000: about 6 s of CPU on the 2-core machine, from a 207 KB file)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (side, side), 255).save(out, "JPEG", progressive=True, quality=50)
    data = out.getvalue()
    last_scan, end = data.rindex(b"\xff\xda"), data.rindex(b"\xff\xd9")
    return data[:end] + data[last_scan:end] * extra_scans + data[end:]


def post(url: str, body: bytes, content_type: str, timeout: float = 60) -> tuple[int, dict, float]:
    """(status, JSON answer, seconds taken) of one POST to the server, on its own
    connection."""
    request = urllib.request.Request(url, body, {"Content-Type": content_type})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read()), time.perf_counter() - start
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read()), time.perf_counter() - start
